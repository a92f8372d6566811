"""Evaluate the separator on the test set (uSDR by default, cSDR with eval.sdr_type=museval).

    python evaluate.py                          # uSDR, mean over tracks
    python evaluate.py eval.sdr_type=museval    # cSDR, median over 1 s frames then tracks
    python evaluate.py eval.baseline=mixture    # the "mixture as estimate" baseline
    python evaluate.py dset=toy src_mod=bsrnn-tiny
    python evaluate.py src_mod=simo-bsrnn        # the four stems of one multi-target model

Checkpoints: <out_dir>/<src_mod.name>/<target>.ckpt (separator.ckpt for a multi-target preset).
Results: <out_dir>/<model>/test_results_<type>.csv (per track, resumable) and
<out_dir>/test_results_<type>.csv (summary).
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from bsrnn.cli import plain, register_schemas, run_entry

log = logging.getLogger("evaluate")
register_schemas()


def run(cfg: DictConfig):
    from bsrnn.chunking import ChunkSettings
    from bsrnn.data import DataSettings, prepare_toy_dataset
    from bsrnn.evaluation import EvalSettings, run_evaluation

    data = DataSettings.from_mapping(plain(cfg.dset))
    if data.toy is not None:  # the stand-in dataset: generated when missing
        prepare_toy_dataset(data.data_dir, data.toy, data.sample_rate, progress=True)
    eval_cfg = plain(cfg.eval)
    return run_evaluation(
        data=data,
        settings=EvalSettings.from_mapping(eval_cfg),
        chunking=ChunkSettings.from_mapping(eval_cfg),
        out_dir=str(cfg.out_dir),
        model_name=str(cfg.src_mod.name),
        targets=list(cfg.targets),
        model_options=plain(cfg.src_mod),
        seed=cfg.get("seed"),
    )


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    run_entry("evaluate.py", lambda: run(cfg))


if __name__ == "__main__":
    main()
