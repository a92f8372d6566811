"""Prepare a dataset for training: compute the source-activity index of every source
(``<data_dir>/sad/<source>_{train,valid}.csv``, used by ``dset=musdb18hq_sad``).

    python prep_dataset.py                      # MUSDB18-HQ in data/musdb18hq/
    python prep_dataset.py dset=toy             # generate the synthetic stand-in in data/toy/
                                                # (if missing), then index it
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from bsrnn.data import DatasetError

log = logging.getLogger(__name__)


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    datamodule = hydra.utils.instantiate(cfg.dset, target=cfg.src_mod.target, fast_tr=False)
    try:
        paths = datamodule.prepare_dataset(progress=True)
    except DatasetError as err:
        raise SystemExit(f"error: {err}") from None
    for name, path in paths.items():
        log.info("activity index %s: %s", name, path)


if __name__ == "__main__":
    main()
