"""What an architecture's readers of foreign checkpoint formats (the reference's ``.ckpt``,
MSST's state_dicts, ...) share with :mod:`bsrnn.checkpoints`.

An architecture lists its formats in the registry (:class:`ForeignFormat`: a name, a test on
the unpickled file, and a loader). :func:`bsrnn.checkpoints.load_model` tries them when a file
is not one of ours, so ``checkpoints.py`` knows no architecture. Only torch is needed here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from bsrnn.errors import CheckpointError
from bsrnn.models.base import SeparationModel


@dataclass(frozen=True)
class ForeignFormat:
    """A checkpoint format an architecture reads: ``detect(ckpt)`` says whether an unpickled
    file (a mapping) is one; ``load(ckpt, path)`` rebuilds the network with its weights (a
    :class:`~bsrnn.errors.CheckpointError` naming the key when something does not fit)."""

    name: str
    detect: Callable[[Mapping[str, Any]], bool]
    load: Callable[[Mapping[str, Any], Any], SeparationModel]


def state_dict_of(ckpt: Mapping[str, Any], path: Any) -> dict[str, torch.Tensor]:
    """The network's weights in a checkpoint: its ``state_dict`` (a Lightning checkpoint of
    ours: the ``net.`` entries, without the prefix)."""
    state = ckpt.get("state_dict")
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: no 'state_dict' in the checkpoint")
    if any(str(k).startswith("net.") for k in state):
        return {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    return dict(state)


def load_state_strict(
    model: SeparationModel, state: Mapping[str, torch.Tensor], path: Any, hint: str = ""
) -> None:
    """Load ``state`` into ``model``: every weight must be there, known and of the right shape,
    or a CheckpointError names the first keys that are not (and ``hint``, when given)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
        if unexpected:
            extra = ", ".join(unexpected[:5]) + (" ..." if len(unexpected) > 5 else "")
            parts.append(f"unexpected {extra}")
        if wrong:
            shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong[:3]]
            parts.append("wrong shape " + ", ".join(shapes))
        raise CheckpointError(
            f"{path}: weights do not fit the network its config describes: "
            + "; ".join(parts)
            + (f" ({hint})" if hint else "")
        )
    model.load_state_dict(state)
