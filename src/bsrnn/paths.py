"""Where a model's files live: the one rule for checkpoint and run paths.

A model named ``name`` (the ``src_mod`` preset's ``name``) that produces ``targets`` keeps its
best checkpoint at ``<out_dir>/<name>/<stem>.ckpt`` and the last one at
``<out_dir>/<name>/<stem>-last.ckpt``, where ``stem`` is the target of a single-target model
and ``separator`` for a model of several targets (SIMO). Debug runs (``fast_tr``) go to a
``fast_tr/`` sub-folder, so they never replace a trained model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from bsrnn.errors import ConfigError

MULTI_TARGET_STEM = "separator"


def checkpoint_stem(targets: Sequence[str]) -> str:
    """``vocals`` for a vocals model; ``separator`` for a model of several targets."""
    targets = list(targets)
    if not targets:
        raise ConfigError("a model needs at least one target")
    return targets[0] if len(targets) == 1 else MULTI_TARGET_STEM


def model_dir(out_dir: str | os.PathLike, name: str, fast_tr: bool = False) -> Path:
    """``<out_dir>/<name>`` (``/fast_tr`` for debug runs)."""
    folder = Path(out_dir) / str(name)
    return folder / "fast_tr" if fast_tr else folder


def checkpoint_path(folder: str | os.PathLike, targets: Sequence[str]) -> Path:
    """The best checkpoint of a model of ``targets`` in ``folder``."""
    return Path(folder) / f"{checkpoint_stem(targets)}.ckpt"


def last_checkpoint_path(folder: str | os.PathLike, targets: Sequence[str]) -> Path:
    """The last checkpoint (what ``ckpt_path=last`` resumes from) beside the best one."""
    return Path(folder) / f"{checkpoint_stem(targets)}-last.ckpt"


def run_root_dir(folder: str | os.PathLike, best_path: str | os.PathLike) -> Path:
    """The run's own Lightning folder ``<folder>/<stem>.lightning/`` (``stem``: the best
    checkpoint's): Lightning's ``default_root_dir``, where SLURM auto-requeue writes and finds
    ``hpc_ckpt_<N>.ckpt``. One per model and target set, so array tasks never share it."""
    return Path(folder) / f"{Path(best_path).stem}.lightning"


def resolve_resume_path(ckpt_path: str | None, last_path: Path) -> Path | None:
    """Which checkpoint to resume from.

    ``None`` -> start fresh; ``"last"`` -> ``last_path`` (must exist); ``"auto"`` ->
    ``last_path`` when it exists, else start fresh; anything else is a path that must exist.
    """
    if ckpt_path is None or str(ckpt_path) == "":
        return None
    if str(ckpt_path) == "auto":
        return last_path if last_path.is_file() else None
    path = last_path if str(ckpt_path) == "last" else Path(ckpt_path)
    if not path.is_file():
        raise ConfigError(
            f"ckpt_path={ckpt_path}: checkpoint not found at {path} (expected a training "
            "checkpoint such as outputs/<model>/<target>.ckpt or <target>-last.ckpt, a "
            "checkpoint of the reference implementation, 'last', 'auto' or null)"
        )
    return path
