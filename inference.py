"""Separate an audio file into the targets' stems.

    python inference.py +file_path=path/to/my/file.wav +rec_dir=dir/to/record/estimates
    python inference.py +file_path=song.flac +rec_dir=out offset=30 max_len=10 targets=[vocals,bass]
    python inference.py +file_path=song.wav +rec_dir=out src_mod=simo-bsrnn eval.precision=bf16
    python inference.py +file_path=song.wav +rec_dir=out model_dir=models/bs-roformer

Writes <rec_dir>/<target>.wav at the file's sample rate, channel count and length.
Checkpoints: <out_dir>/<src_mod.name>/<target>.ckpt (separator.ckpt for a multi-target preset),
or every checkpoint in ``model_dir`` (self-describing: no preset needed).
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from bsrnn.cli import register_schemas, run_entry, settings_from_config

log = logging.getLogger("inference")
register_schemas()


def run(cfg: DictConfig) -> dict:
    import torch

    from bsrnn.errors import ConfigError
    from bsrnn.model_folder import load_separator
    from bsrnn.runtime import set_num_threads
    from bsrnn.stems import file_range, separate_file

    settings = settings_from_config(cfg)
    from bsrnn.runtime import apply_matmul_precision

    apply_matmul_precision(cfg.trainer.get("matmul_precision", "highest"))  # as training does
    file_path, rec_dir = settings.extra.get("file_path"), settings.extra.get("rec_dir")
    for key, value in (("file_path", file_path), ("rec_dir", rec_dir)):
        if value is None:
            raise ConfigError(
                f"missing +{key}=...: usage: python inference.py "
                "+file_path=path/to/my/file.wav +rec_dir=dir/to/record/estimates"
            )
    file_range(str(file_path), settings.offset, settings.max_len)  # check it before loading
    ev = settings.eval
    set_num_threads(ev.num_threads)
    torch.manual_seed(settings.seed)
    options = dict(chunking=settings.chunking, **ev.separator_options())
    if settings.model_dir is not None:
        separator = load_separator(settings.model_dir, settings.stems(), **options)
    else:
        separator = load_separator(
            f"{settings.out_dir}/{settings.model_name}",
            settings.stems(),
            preset=settings.preset,
            allow_random=ev.allow_random_weights,
            **options,
        )
    written = separate_file(
        separator,
        str(file_path),
        str(rec_dir),
        offset=settings.offset,
        max_len=settings.max_len,
        progress=ev.progress,
    )
    for target, path in written.items():
        log.info("%s -> %s", target, path)
    return written


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    run_entry("inference.py", lambda: run(cfg))


if __name__ == "__main__":
    main()
