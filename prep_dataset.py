"""Prepare a dataset for training: compute the source-activity index of every source
(``<data_dir>/sad/<source>_{train,valid}.csv``, used by ``dset=musdb18hq_sad``, the default).

    python prep_dataset.py                      # MUSDB18-HQ in data/musdb18hq/
    python prep_dataset.py dset=toy             # generate the synthetic stand-in in data/toy/
                                                # (if missing), then index it
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from bsrnn.cli import register_schemas, run_entry, settings_from_config

log = logging.getLogger("prep_dataset")
register_schemas()


def run(cfg: DictConfig) -> dict:
    from bsrnn.data import prepare_dataset

    paths = prepare_dataset(settings_from_config(cfg).data, progress=True)
    for name, path in paths.items():
        log.info("activity index %s: %s", name, path)
    return paths


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    run_entry("prep_dataset.py", lambda: run(cfg))


if __name__ == "__main__":
    main()
