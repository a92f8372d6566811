"""Self-describing checkpoints, and safe loading of the reference implementation's files.

Three kinds of file rebuild a :class:`~bsrnn.model.BSRNN`:

* a standalone file written by :func:`save_model`: ``{"bsrnn_config": {...},
  "state_dict": {...}, "format": "bsrnn/1"}``;
* a Lightning checkpoint written by our training: its ``state_dict`` keys start with ``net.``
  and ``checkpoint["bsrnn_config"]`` holds the network's constructor arguments;
* a Lightning checkpoint of the reference implementation (``outputs/bsrnn/<target>.ckpt``):
  architecture from its ``hyper_parameters``, weights mapped from its module names.

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

from bsrnn.errors import CheckpointError
from bsrnn.files import atomic_path
from bsrnn.model import _CONSTRUCTOR_KEYS, BSRNN

log = logging.getLogger(__name__)

FORMAT = "bsrnn/1"

# Defaults of the reference implementation's constructor, for keys an older file may lack.
_REFERENCE_DEFAULTS: dict[str, Any] = dict(
    target="vocals",
    sample_rate=44100,
    n_fft=2048,
    n_hop=512,
    time_layer="gru",
    band_layer="conv",
    feature_dim=128,
    num_repeat=12,
    n_att_head=0,
    attn_enc_dim=20,
    eps=1e-7,
)


def _safe_globals() -> list[Any]:
    """The non-tensor types that reference checkpoints pickle (OmegaConf configs)."""
    allowed: list[Any] = [collections.defaultdict, collections.OrderedDict, dict, typing.Any]
    try:
        from omegaconf import DictConfig, ListConfig, base, nodes

        allowed += [DictConfig, ListConfig, base.ContainerMetadata, base.Metadata]
        allowed += [
            nodes.AnyNode,
            nodes.StringNode,
            nodes.IntegerNode,
            nodes.FloatNode,
            nodes.BooleanNode,
            nodes.BytesNode,
            nodes.PathNode,
            nodes.EnumNode,
        ]
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return allowed


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
        raise CheckpointError(f"{path} is not a BSRNN checkpoint: it holds a {type(ckpt).__name__}")
    return dict(ckpt)


def _plain(value: Any) -> Any:
    """OmegaConf containers to plain Python (without importing omegaconf when absent)."""
    if hasattr(value, "_content") and type(value).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(value, resolve=True)
    return value


def save_model(model: BSRNN, path: str | os.PathLike) -> Path:
    """Write ``model`` to ``path`` as a standalone checkpoint (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "bsrnn_config": model.config,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_model(path: str | os.PathLike, map_location: Any = "cpu") -> BSRNN:
    """Rebuild a network (in eval mode) from any checkpoint this module knows."""
    ckpt = read_checkpoint(path, map_location=map_location)
    state = ckpt.get("state_dict")
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"{path} is not a BSRNN checkpoint: it has no 'state_dict' (keys: "
            f"{', '.join(map(str, list(ckpt)[:10])) or 'none'})"
        )
    if "bsrnn_config" in ckpt:
        model = _build(dict(_plain(ckpt["bsrnn_config"])), path)
        state = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")} or {
            k: v for k, v in state.items()
        }
    elif any(k.startswith("BN.") for k in state):
        model = _build(reference_config(_plain(ckpt.get("hyper_parameters", {})), path), path)
        state = convert_reference_state_dict(state, model, path)
    else:
        raise CheckpointError(
            f"{path} is not a BSRNN checkpoint: no 'bsrnn_config' entry and no reference "
            "module names (BN.*) in its state_dict"
        )
    _load_state(model, state, path)
    return model.eval()


def _build(config: Mapping[str, Any], path: Any) -> BSRNN:
    try:
        return BSRNN.from_config(config)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: cannot rebuild the network from its config: {err}") from err


def _load_state(model: BSRNN, state: Mapping[str, torch.Tensor], path: Any) -> None:
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
            f"{path}: weights do not fit the network its config describes: " + "; ".join(parts)
        )
    model.load_state_dict(state)


# --------------------------------------------------------------------------------------------
# The reference implementation's files
# --------------------------------------------------------------------------------------------
def reference_config(hparams: Mapping[str, Any], path: Any = "checkpoint") -> dict[str, Any]:
    """Our constructor arguments from a reference checkpoint's ``hyper_parameters``."""
    config = {}
    for key in _CONSTRUCTOR_KEYS:
        if key == "bands":
            continue
        config[key] = hparams.get(key, _REFERENCE_DEFAULTS[key])
    missing = [k for k in ("target", "feature_dim", "num_repeat") if k not in hparams]
    if missing:
        log.warning(
            "%s: hyper_parameters lack %s; using the reference's defaults", path, ", ".join(missing)
        )
    return config


def convert_reference_state_dict(
    ref: Mapping[str, torch.Tensor], model: BSRNN, path: Any = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Map the reference's per-band module names onto ``model``'s stacked parameters."""

    def get(key: str) -> torch.Tensor:
        if key not in ref:
            raise CheckpointError(f"{path}: reference state_dict has no {key!r}")
        return ref[key]

    def stack(keys: list[str], fn=lambda t: t) -> torch.Tensor:
        return torch.stack([fn(get(k)) for k in keys])

    def conv_t(t: torch.Tensor) -> torch.Tensor:  # Conv1d/2d [out, in, 1(, 1)] -> [in, out]
        return t.reshape(t.shape[0], t.shape[1]).t()

    out: dict[str, torch.Tensor] = {}
    # band split, one stacked tensor per run of equal-width bands
    band = 0
    for g, group in enumerate(model.band_split.groups):
        idx = range(band, band + group.count)
        pre = f"band_split.groups.{g}."
        out[pre + "norm_weight"] = stack([f"BN.{i}.0.weight" for i in idx]).unsqueeze(1)
        out[pre + "norm_bias"] = stack([f"BN.{i}.0.bias" for i in idx]).unsqueeze(1)
        out[pre + "weight"] = stack([f"BN.{i}.1.weight" for i in idx], conv_t)
        out[pre + "bias"] = stack([f"BN.{i}.1.bias" for i in idx]).unsqueeze(1)
        band += group.count

    # separator blocks
    for b, block in enumerate(model.blocks):
        for ours, theirs in (("time", "time_net"), ("band", "band_net")):
            src, dst = f"separator.{b}.{theirs}.", f"blocks.{b}.{ours}."
            for name in ("norm.weight", "norm.bias", "proj.weight", "proj.bias"):
                out[dst + name] = get(src + name)
            layer = getattr(block, ours)
            if layer.layer_type == "conv":
                out[dst + "conv.weight"] = get(src + "main_layer.0.weight")
                out[dst + "conv.bias"] = get(src + "main_layer.0.bias")
            else:
                for name, _ in layer.rnn.named_parameters():
                    out[dst + "rnn." + name] = get(src + "main_layer." + name)
        if block.attention is not None:
            heads = block.attention.heads
            src, dst = f"separator.{b}.attn_block.", f"blocks.{b}.attention."
            for ours, theirs in (("query", "Q"), ("key", "K"), ("value", "V")):
                convs = [f"{src}attn_conv_{theirs}_{h}." for h in range(heads)]
                _map_head_projection(out, f"{dst}{ours}.", convs, get)
            _map_head_projection(out, f"{dst}out.", [f"{src}attn_concat_proj."], get)

    # mask decoder
    n_bands = model.n_bands
    idx = range(n_bands)
    out["mask.norm_weight"] = stack([f"mask.{i}.0.weight" for i in idx]).view(n_bands, 1, 1, -1)
    out["mask.norm_bias"] = stack([f"mask.{i}.0.bias" for i in idx]).view(n_bands, 1, 1, -1)
    out["mask.fc1_weight"] = stack([f"mask.{i}.1.weight" for i in idx], conv_t)
    out["mask.fc1_bias"] = stack([f"mask.{i}.1.bias" for i in idx]).unsqueeze(1)
    out["mask.fc2_weight"] = stack([f"mask.{i}.3.weight" for i in idx], conv_t)
    out["mask.fc2_bias"] = stack([f"mask.{i}.3.bias" for i in idx]).unsqueeze(1)
    band = 0
    for g, (count, _) in enumerate(model.mask.group_sizes):
        idx = range(band, band + count)
        out[f"mask.out_weights.{g}"] = stack([f"mask.{i}.5.weight" for i in idx], conv_t)
        out[f"mask.out_biases.{g}"] = stack([f"mask.{i}.5.bias" for i in idx]).unsqueeze(1)
        band += count
    return out


def _map_head_projection(out: dict, dst: str, convs: list[str], get) -> None:
    """Reference Sequential(Conv2d 1x1, PReLU, LayerNorm4DCF) per head -> one _HeadProjection."""
    out[dst + "linear.weight"] = torch.cat([get(c + "0.weight").flatten(1) for c in convs])
    out[dst + "linear.bias"] = torch.cat([get(c + "0.bias") for c in convs])
    out[dst + "prelu"] = torch.stack([get(c + "1.weight").reshape(()) for c in convs]).view(
        -1, 1, 1
    )
    # gamma/beta are [1, D, 1, bands] in the reference; ours [heads, bands, D]
    out[dst + "norm_weight"] = torch.stack([get(c + "2.gamma")[0, :, 0, :].t() for c in convs])
    out[dst + "norm_bias"] = torch.stack([get(c + "2.beta")[0, :, 0, :].t() for c in convs])
