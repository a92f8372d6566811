"""Prepare a dataset for training: compute the source-activity index of every source
(``<data_dir>/sad/<source>_{train,valid}.csv``, used by ``dset=musdb18hq_sad``, the default).

    python prep_dataset.py                      # MUSDB18-HQ in data/musdb18hq/
    python prep_dataset.py dset=toy             # generate the synthetic stand-in in data/toy/
                                                # (if missing), then index it
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig, OmegaConf

from bsrnn.data import DataSettings, prepare_dataset
from bsrnn.errors import BsrnnError

log = logging.getLogger(__name__)


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    try:
        settings = DataSettings.from_mapping(OmegaConf.to_container(cfg.dset, resolve=True))
        paths = prepare_dataset(settings, progress=True)
    except BsrnnError as err:
        raise SystemExit(f"error: {err}") from None
    for name, path in paths.items():
        log.info("activity index %s: %s", name, path)


if __name__ == "__main__":
    main()
