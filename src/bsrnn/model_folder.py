"""Model folders: the checkpoints a trained (or imported) model leaves, loaded as networks or
as a ready :class:`~bsrnn.separator.Separator`.

Two layouts, one loader (:func:`load_separator`, networks alone: :func:`load_models`):

- a folder of self-describing checkpoints (``*.ckpt`` but training's ``*-last.ckpt``; each
  names its architecture, options and targets, :func:`bsrnn.checkpoints.load_model`): no
  preset needed (``inference.py model_dir=X``, ``evaluate.py model_dir=X``,
  ``bsrnn-separate -m X``);
- a preset's folder (``preset``: the ``src_mod`` options, :mod:`bsrnn.paths`): one
  ``separator.ckpt`` for a multi-target preset, else ``<target>.ckpt`` per target; a missing
  one may be replaced by random weights for pipeline checks (``allow_random``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bsrnn.checkpoints import load_model
from bsrnn.errors import CheckpointError, ConfigError
from bsrnn.models import SeparationModel, build_model, model_config
from bsrnn.paths import checkpoint_path
from bsrnn.separator import Separator

log = logging.getLogger(__name__)

#: The usual order of the MUSDB18 stems (a model folder's targets are listed in it).
STEM_ORDER = ("vocals", "bass", "drums", "other")

#: The checkpoint each network came from, by the tuple of its targets.
Checkpoints = dict[tuple[str, ...], Path]


def model_dir_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """The checkpoints of a model folder: ``*.ckpt`` except training's ``*-last.ckpt``,
    sorted by name (a CheckpointError naming the folder when it is missing or has none)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"model folder not found: {folder}")
    paths = sorted(
        p for p in folder.glob("*.ckpt") if p.is_file() and not p.name.endswith("-last.ckpt")
    )
    if not paths:
        raise CheckpointError(
            f"no checkpoint in {folder}: expected <target>.ckpt or separator.ckpt files "
            "(training's *-last.ckpt files are not used)"
        )
    return paths


def folder_targets(models: Sequence[SeparationModel]) -> list[str]:
    """Every target of ``models``, each once: the MUSDB18 stems first in their usual order,
    then the others in model order."""
    seen = list(dict.fromkeys(t for m in models for t in m.targets))
    known = [t for t in STEM_ORDER if t in seen]
    return known + [t for t in seen if t not in known]


def load_models(
    folder: str | os.PathLike,
    targets: Sequence[str] | None = None,
    *,
    preset: Mapping[str, Any] | None = None,
    allow_random: bool = False,
) -> tuple[list[SeparationModel], list[str], Checkpoints]:
    """The networks of a model folder: ``(models, targets, checkpoints)``.

    Without ``preset``: every self-describing checkpoint of ``folder``; ``targets`` None: every
    stem they provide (MUSDB18's first, :func:`folder_targets`); a stem no checkpoint provides
    is a CheckpointError listing what the folder has (when two provide one, the first file by
    name wins). With ``preset`` (the ``src_mod`` options): the preset's layout for ``targets``
    (required); a missing checkpoint is a CheckpointError naming the path, unless
    ``allow_random`` (then the network is built from ``preset`` with random weights and a
    warning).
    """
    if preset is not None:
        return _load_preset_models(folder, targets, preset, allow_random)
    folder = Path(folder)
    paths = model_dir_checkpoints(folder)
    models, checkpoints = [], {}
    for path in paths:
        model = load_model(path, map_location="cpu")
        log.info("loaded %s (targets %s)", path, ", ".join(model.targets))
        models.append(model)
        checkpoints.setdefault(tuple(model.targets), path)
    available = folder_targets(models)
    wanted = available if targets is None else list(targets)
    missing = [t for t in wanted if t not in available]
    if missing or not wanted:
        raise CheckpointError(
            f"{folder} has no model for {', '.join(missing) or '(no target asked)'}: its "
            f"checkpoints ({', '.join(p.name for p in paths)}) provide "
            f"{', '.join(available)}"
        )
    return models, wanted, checkpoints


def _load_preset_models(
    folder: str | os.PathLike,
    targets: Sequence[str] | None,
    preset: Mapping[str, Any],
    allow_random: bool,
) -> tuple[list[SeparationModel], list[str], Checkpoints]:
    targets = list(targets or [])
    if not targets:
        raise ConfigError("no targets to separate")
    options = dict(preset)
    preset_targets = list(model_config(options)[1].targets) if options else None
    groups = (
        [list(preset_targets)]
        if preset_targets and len(preset_targets) > 1
        else [[t] for t in targets]
    )
    models, checkpoints = [], {}
    for group in groups:
        path = checkpoint_path(folder, group)
        if path.is_file():
            model = load_model(path, map_location="cpu")
            if list(model.targets) != group and len(group) == 1:
                raise CheckpointError(
                    f"{path} holds a model for target(s) {model.targets}, not {group}"
                )
            log.info("loaded %s (targets %s)", path, ", ".join(model.targets))
            checkpoints[tuple(model.targets)] = path
        elif allow_random:
            log.warning(
                "no checkpoint at %s: using a model with RANDOM weights (allow_random)", path
            )
            model = build_model({**options, "target": None, "targets": group})
        else:
            raise CheckpointError(
                f"checkpoint not found: {path} (train the model first, or place the "
                "published checkpoint there; allow random weights only for pipeline checks)"
            )
        models.append(model)
    return models, targets, checkpoints


def load_separator(
    folder: str | os.PathLike,
    targets: Sequence[str] | None = None,
    *,
    preset: Mapping[str, Any] | None = None,
    allow_random: bool = False,
    **separator_options: Any,
) -> Separator:
    """A :class:`~bsrnn.separator.Separator` over the networks of ``folder`` (see
    :func:`load_models` for ``targets``, ``preset`` and ``allow_random``); its
    ``checkpoints`` name the files of the networks it uses. ``separator_options`` go to the
    Separator (chunking, device, precision, TTA, Wiener filter)."""
    models, wanted, checkpoints = load_models(
        folder, targets, preset=preset, allow_random=allow_random
    )
    separator = Separator(models, targets=wanted, **separator_options)
    used = {tuple(m.targets) for m in separator.models}
    separator.checkpoints = {key: path for key, path in checkpoints.items() if key in used}
    return separator
