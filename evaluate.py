"""Evaluate the separator on the test set (uSDR by default, cSDR with eval.sdr_type=museval).

    python evaluate.py                          # uSDR, mean over tracks
    python evaluate.py eval.sdr_type=museval    # cSDR, median over 1 s frames then tracks
    python evaluate.py eval.baseline=mixture    # the "mixture as estimate" baseline
    python evaluate.py dset=toy src_mod=bsrnn-tiny

Checkpoints: <out_dir>/<src_mod.name>/<target>.ckpt. Results: <out_dir>/<model>/
test_results_<type>.csv (per track, resumable) and <out_dir>/test_results_<type>.csv (summary).
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("evaluate")


def data_dir_of(cfg: DictConfig) -> str:
    """The dataset folder: the dset config's ``data_dir`` if it has one, else the top-level key."""
    dset = cfg.get("dset")
    if dset is not None and dset.get("data_dir") is not None:
        return str(dset.data_dir)
    return str(cfg.data_dir)


def prepare_stand_in(cfg: DictConfig, data_dir: str) -> None:
    """With ``dset=toy``, generate the synthetic stand-in dataset if it is not there yet."""
    toy = cfg.dset.get("toy") if cfg.get("dset") is not None else None
    if toy is None:
        return
    from bsrnn.data.toy import ToyParams, prepare_toy_dataset

    params = ToyParams(**OmegaConf.to_container(toy, resolve=True))
    prepare_toy_dataset(data_dir, params, int(cfg.sample_rate), progress=True)


def run(cfg: DictConfig):
    from bsrnn.evaluation import ScoreSettings, run_evaluation

    ev = cfg.eval
    data_dir = data_dir_of(cfg)
    prepare_stand_in(cfg, data_dir)
    settings = ScoreSettings(
        sdr_type=str(ev.sdr_type),
        sdr_win=float(ev.sdr_win),
        sdr_hop=float(ev.sdr_hop),
        backend=str(ev.get("museval_backend", "fast")),
    )
    model_config = OmegaConf.to_container(cfg.src_mod, resolve=True)
    return run_evaluation(
        data_dir=data_dir,
        out_dir=str(cfg.out_dir),
        model_name=str(cfg.src_mod.name),
        targets=list(cfg.targets),
        settings=settings,
        model_config=model_config,
        segment_len=ev.segment_len,
        overlap=float(ev.overlap),
        hop_size=ev.hop_size,
        device=ev.get("device", "auto"),
        batch_chunks=ev.get("batch_chunks"),
        subset=str(ev.get("subset", "test")),
        rec_dir=ev.get("rec_dir"),
        num_workers=int(ev.get("num_workers", 0)),
        resume=bool(ev.get("resume", True)),
        verbose_per_track=bool(ev.get("verbose_per_track", True)),
        progress=bool(ev.get("progress", True)),
        baseline=ev.get("baseline"),
        allow_random=bool(ev.get("allow_random_weights", False)),
        seed=cfg.get("seed"),
    )


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    from bsrnn.audio import AudioError
    from bsrnn.checkpoints import CheckpointError
    from bsrnn.data.tracks import DatasetError

    try:
        run(cfg)
    except (CheckpointError, DatasetError, AudioError, ImportError, ValueError) as err:
        log.debug("evaluation failed", exc_info=True)
        log.error("evaluation failed: %s", err)
        sys.exit(1)


if __name__ == "__main__":
    main()
