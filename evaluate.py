"""Evaluate the separator on the test set (uSDR by default, cSDR with eval.sdr_type=museval).

    python evaluate.py                          # uSDR, mean over tracks
    python evaluate.py eval.sdr_type=museval    # cSDR, median over 1 s frames then tracks
    python evaluate.py eval.baseline=mixture    # the "mixture as estimate" baseline
    python evaluate.py dset=toy src_mod=bsrnn-tiny
    python evaluate.py src_mod=simo-bsrnn        # the four stems of one multi-target model
    python evaluate.py model_dir=models/bs-roformer   # a folder of self-describing checkpoints

Checkpoints: <out_dir>/<src_mod.name>/<target>.ckpt (separator.ckpt for a multi-target preset),
or every checkpoint in ``model_dir`` (no preset needed: they name their architecture, options
and targets). Results: <out_dir>/<model>/test_results_<type>.csv (per track, resumable) and
<out_dir>/test_results_<type>.csv (summary).
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from bsrnn.cli import register_schemas, run_entry, settings_from_config

log = logging.getLogger("evaluate")
register_schemas()


def run(cfg: DictConfig):
    from bsrnn.data import prepare_toy_dataset
    from bsrnn.evaluation import run_evaluation

    settings = settings_from_config(cfg)
    from bsrnn.runtime import apply_matmul_precision

    apply_matmul_precision(cfg.trainer.get("matmul_precision", "highest"))  # as training does
    data = settings.data
    if data.toy is not None:  # the stand-in dataset: generated when missing
        prepare_toy_dataset(data.data_dir, data.toy, data.sample_rate, progress=True)
    return run_evaluation(
        data=data,
        settings=settings.eval,
        chunking=settings.chunking,
        out_dir=settings.out_dir,
        model_name=settings.model_name,
        targets=settings.stems(),
        model_options=settings.preset,
        seed=settings.seed,
        model_dir=settings.model_dir,
    )


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    run_entry("evaluate.py", lambda: run(cfg))


if __name__ == "__main__":
    main()
