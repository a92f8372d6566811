"""Separate an audio file into the targets' stems.

    python inference.py +file_path=path/to/my/file.wav +rec_dir=dir/to/record/estimates
    python inference.py +file_path=song.flac +rec_dir=out offset=30 max_len=10 targets=[vocals,bass]

Writes <rec_dir>/<target>.wav at the file's sample rate, channel count and length.
Checkpoints: <out_dir>/<src_mod.name>/<target>.ckpt.
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("inference")


def run(cfg: DictConfig) -> dict:
    import torch

    from bsrnn.separator import Separator, file_range, separate_file

    for key in ("file_path", "rec_dir"):
        if cfg.get(key) is None:
            raise ValueError(
                f"missing +{key}=...: usage: python inference.py "
                "+file_path=path/to/my/file.wav +rec_dir=dir/to/record/estimates"
            )
    offset = float(cfg.get("offset") or 0.0)
    max_len = None if cfg.get("max_len") is None else float(cfg.max_len)
    file_range(str(cfg.file_path), offset, max_len)  # check the input before loading models
    ev = cfg.eval
    if cfg.get("seed") is not None:
        torch.manual_seed(int(cfg.seed))
    separator = Separator.from_dir(
        f"{cfg.out_dir}/{cfg.src_mod.name}",
        list(cfg.targets),
        allow_random=bool(ev.get("allow_random_weights", False)),
        model_config=OmegaConf.to_container(cfg.src_mod, resolve=True),
        segment_len=ev.segment_len,
        overlap=float(ev.overlap),
        hop_size=ev.hop_size,
        device=ev.get("device", "auto"),
        batch_chunks=ev.get("batch_chunks"),
    )
    written = separate_file(
        separator,
        str(cfg.file_path),
        str(cfg.rec_dir),
        offset=offset,
        max_len=max_len,
        progress=bool(ev.get("progress", True)),
    )
    for target, path in written.items():
        log.info("%s -> %s", target, path)
    return written


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    from bsrnn.audio import AudioError
    from bsrnn.checkpoints import CheckpointError

    try:
        run(cfg)
    except (CheckpointError, AudioError, ValueError) as err:
        log.debug("inference failed", exc_info=True)
        log.error("inference failed: %s", err)
        sys.exit(1)


if __name__ == "__main__":
    main()
