"""Self-describing checkpoints, read safely; other formats through the architectures' readers.

A checkpoint names its format, its architecture and its config; :func:`load_model` dispatches
on that tag:

* ``bsrnn/2`` (written now): a standalone file ``{"format", "arch", "config", "state_dict"}``
  (:func:`save_model`), or a Lightning checkpoint of our training whose ``model`` entry holds
  ``{"format", "arch", "config"}`` and whose ``state_dict`` keys start with ``net.``;
* any foreign format a registered architecture reads (its
  :class:`~bsrnn.models.foreign.ForeignFormat` list in the registry): for BSRNN, our first
  format ``bsrnn/1`` and the reference implementation's checkpoints
  (:mod:`bsrnn.models.bsrnn_checkpoints`). This module knows no architecture.

A checkpoint is a pickle. Files are read with ``torch.load(weights_only=True)``, allowing only
the few OmegaConf and standard-library types such files hold, so a file from the internet
cannot run code.
"""

from __future__ import annotations

import collections
import logging
import os
import pickle
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from bsrnn.containers import to_plain
from bsrnn.errors import CheckpointError, ConfigError
from bsrnn.files import atomic_path
from bsrnn.models import SeparationModel, arch_name, build_model, foreign_formats
from bsrnn.models.foreign import load_state_strict, state_dict_of

log = logging.getLogger(__name__)

FORMAT = "bsrnn/2"


def _empty_dict(*_factory: Any) -> dict:
    """Stands in for ``collections.defaultdict(factory)`` while unpickling: OmegaConf pickles its
    resolver cache as one, and torch's safe unpickler cannot fill a defaultdict."""
    return {}


def _safe_globals() -> list[Any]:
    """The non-tensor types that reference checkpoints pickle (OmegaConf configs; the type
    markers ``dict``/``list``/``int`` that their metadata names)."""
    from omegaconf import DictConfig, ListConfig, base, nodes

    return [
        (_empty_dict, "collections.defaultdict"),
        collections.OrderedDict,
        dict,
        list,
        int,
        typing.Any,
        DictConfig,
        ListConfig,
        base.ContainerMetadata,
        base.Metadata,
        nodes.AnyNode,
        nodes.StringNode,
        nodes.IntegerNode,
        nodes.FloatNode,
        nodes.BooleanNode,
        nodes.BytesNode,
        nodes.PathNode,
        nodes.EnumNode,
    ]


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint file safely (``weights_only=True`` with a short allow-list)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if found is None:
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint") from err
        raise CheckpointError(
            f"{path} holds objects that are not allowed in a checkpoint ({found.group(1)}); "
            "only tensors, plain containers and OmegaConf configs are loaded"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {err}") from err
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{path} is not a model checkpoint: it holds a {type(ckpt).__name__}")
    return dict(ckpt)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
def model_record(model: SeparationModel) -> dict[str, Any]:
    """What rebuilds ``model`` without any config file: ``{"format", "arch", "config"}``."""
    return {"format": FORMAT, "arch": arch_name(model), "config": model.config.to_dict()}


def save_model(model: SeparationModel, path: str | os.PathLike) -> Path:
    """Write ``model`` to ``path`` as a standalone checkpoint (atomically)."""
    path = Path(path)
    payload = {
        **model_record(model),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


# --------------------------------------------------------------------------------------------
# Reading: dispatch on the format tag
# --------------------------------------------------------------------------------------------
def checkpoint_format(ckpt: Mapping[str, Any]) -> str:
    """``bsrnn/2`` (ours), or the name of the registered foreign format the file is
    (CheckpointError for anything else)."""
    record = ckpt.get("model")
    if isinstance(record, Mapping) and record.get("format") == FORMAT:
        return FORMAT
    if ckpt.get("format") == FORMAT:
        return FORMAT
    for foreign in foreign_formats():
        if foreign.detect(ckpt):
            return foreign.name
    raise CheckpointError(
        "not a model checkpoint of this project or of a format its architectures read "
        f"({', '.join(f.name for f in foreign_formats())}): no 'model'/'format' record "
        f"(top-level keys: {', '.join(map(str, list(ckpt)[:10])) or 'none'})"
    )


def _load_ours(ckpt: Mapping[str, Any], path: Any) -> SeparationModel:
    record = ckpt["model"] if isinstance(ckpt.get("model"), Mapping) else ckpt
    config = to_plain(record.get("config"))
    if not isinstance(config, Mapping):
        raise CheckpointError(f"{path}: its model record has no 'config' mapping")
    try:
        model = build_model({**config, "arch": record.get("arch")})
    except ConfigError as err:
        raise CheckpointError(f"{path}: cannot rebuild the network from its config: {err}") from err
    load_state_strict(model, state_dict_of(ckpt, path), path)
    return model


def load_model(path: str | os.PathLike, map_location: Any = "cpu") -> SeparationModel:
    """Rebuild a network (in eval mode) from any checkpoint this project or one of its
    architectures' foreign formats knows."""
    ckpt = read_checkpoint(path, map_location=map_location)
    try:
        kind = checkpoint_format(ckpt)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    if kind == FORMAT:
        return _load_ours(ckpt, path).eval()
    loader = next(f.load for f in foreign_formats() if f.name == kind)
    return loader(ckpt, path).eval()
