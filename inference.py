"""Separate an audio file into the targets' stems.

    python inference.py +file_path=path/to/my/file.wav +rec_dir=dir/to/record/estimates
    python inference.py +file_path=song.flac +rec_dir=out offset=30 max_len=10 targets=[vocals,bass]
    python inference.py +file_path=song.wav +rec_dir=out src_mod=simo-bsrnn eval.precision=bf16

Writes <rec_dir>/<target>.wav at the file's sample rate, channel count and length.
Checkpoints: <out_dir>/<src_mod.name>/<target>.ckpt (separator.ckpt for a multi-target preset).
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from bsrnn.cli import plain, register_schemas, run_entry

log = logging.getLogger("inference")
register_schemas()


def run(cfg: DictConfig) -> dict:
    import torch

    from bsrnn.chunking import ChunkSettings
    from bsrnn.errors import ConfigError
    from bsrnn.evaluation import EvalSettings
    from bsrnn.runtime import set_num_threads
    from bsrnn.separator import Separator, file_range, separate_file

    for key in ("file_path", "rec_dir"):
        if cfg.get(key) is None:
            raise ConfigError(
                f"missing +{key}=...: usage: python inference.py "
                "+file_path=path/to/my/file.wav +rec_dir=dir/to/record/estimates"
            )
    offset = float(cfg.get("offset") or 0.0)
    max_len = None if cfg.get("max_len") is None else float(cfg.max_len)
    file_range(str(cfg.file_path), offset, max_len)  # check the input before loading models
    eval_cfg = plain(cfg.eval)
    settings = EvalSettings.from_mapping(eval_cfg)
    set_num_threads(settings.num_threads)
    if cfg.get("seed") is not None:
        torch.manual_seed(int(cfg.seed))
    separator = Separator.from_dir(
        f"{cfg.out_dir}/{cfg.src_mod.name}",
        list(cfg.targets),
        model_options=plain(cfg.src_mod),
        allow_random=settings.allow_random_weights,
        chunking=ChunkSettings.from_mapping(eval_cfg),
        device=settings.device,
        precision=settings.precision,
    )
    written = separate_file(
        separator,
        str(cfg.file_path),
        str(cfg.rec_dir),
        offset=offset,
        max_len=max_len,
        progress=settings.progress,
    )
    for target, path in written.items():
        log.info("%s -> %s", target, path)
    return written


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    run_entry("inference.py", lambda: run(cfg))


if __name__ == "__main__":
    main()
