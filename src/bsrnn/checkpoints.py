"""Self-describing checkpoints, and safe loading of the reference implementation's files.

A checkpoint names its format, its architecture and its config; :func:`load_model` dispatches
on that tag:

* ``bsrnn/2`` (written now): a standalone file ``{"format", "arch", "config", "state_dict"}``
  (:func:`save_model`), or a Lightning checkpoint of our training whose ``model`` entry holds
  ``{"format", "arch", "config"}`` and whose ``state_dict`` keys start with ``net.``;
* ``bsrnn/1`` (our earlier single-target files): ``bsrnn_config`` instead of ``model``;
* ``reference``: a Lightning checkpoint of the reference implementation, of the version the
  seed describes (``mask.<band>`` decoder keys, a ``target`` hyper-parameter) or of its newest
  version (``maskers.<m>.mask.<band>``, ``targets``): the architecture comes from its
  ``hyper_parameters`` and its per-band weights are mapped onto our stacked ones. Every weight
  must be used and every hyper-parameter known, or the file is refused naming the key.

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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from bsrnn.errors import CheckpointError, ConfigError
from bsrnn.files import atomic_path
from bsrnn.models import SeparationModel, arch_name, build_model

log = logging.getLogger(__name__)

FORMAT = "bsrnn/2"
LEGACY_FORMAT = "bsrnn/1"

#: hyper_parameters of reference files that describe the run, not the network.
_REFERENCE_RUN_KEYS = frozenset(
    {"cfg_optim", "cfg_scheduler", "cfg_eval", "name", "name_out_dir", "name_tblog_dir", "out_dir"}
)
#: The reference's constructor defaults for options a file may lack, per version.
_REFERENCE_DEFAULTS: dict[str, dict[str, Any]] = {
    "seed version": dict(
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
    ),
    "newest version": dict(
        sample_rate=44100,
        n_fft=2048,
        n_hop=512,
        eps=1e-7,
        nb_channels=2,
        joint_bandsplit=False,
        fac_sep=2,
        time_layer="lstm",
        band_layer="lstm",
        bidirectional=True,
        fac_mask=4,
        mask_ctxt=0,
        subtract_last_trgt=False,
        n_heads=1,
        group_num=1,
        n_att_head=0,
        attn_enc_dim=16,
        stereo=None,
        fac_tac=3,
        act_tac="tanh",
    ),
}
#: Reference weights that are not parameters of the network (the STFT windows).
_REFERENCE_BUFFERS = frozenset({"stft.transf.window", "istft.transf.window"})


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


def _plain(value: Any) -> Any:
    """OmegaConf containers to plain Python."""
    if type(value).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(value, resolve=True)
    return value


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
    """``bsrnn/2``, ``bsrnn/1`` or ``reference`` (CheckpointError for anything else)."""
    record = ckpt.get("model")
    if isinstance(record, Mapping) and record.get("format") == FORMAT:
        return FORMAT
    if ckpt.get("format") == FORMAT:
        return FORMAT
    if "bsrnn_config" in ckpt:
        return LEGACY_FORMAT
    state = ckpt.get("state_dict")
    if isinstance(state, Mapping) and any(str(k).startswith("BN.") for k in state):
        return "reference"
    raise CheckpointError(
        "not a model checkpoint of this project or of the reference implementation: no "
        "'model'/'format' record, no 'bsrnn_config' and no reference module names (BN.*) "
        f"(top-level keys: {', '.join(map(str, list(ckpt)[:10])) or 'none'})"
    )


def _state_dict(ckpt: Mapping[str, Any], path: Any) -> dict[str, torch.Tensor]:
    state = ckpt.get("state_dict")
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: no 'state_dict' in the checkpoint")
    if any(str(k).startswith("net.") for k in state):  # a Lightning checkpoint of ours
        return {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    return dict(state)


def _load_ours(ckpt: Mapping[str, Any], path: Any) -> SeparationModel:
    record = ckpt["model"] if isinstance(ckpt.get("model"), Mapping) else ckpt
    config = _plain(record.get("config"))
    if not isinstance(config, Mapping):
        raise CheckpointError(f"{path}: its model record has no 'config' mapping")
    model = _build(path, {**config, "arch": record.get("arch")})
    _load_state(model, _state_dict(ckpt, path), path)
    return model


def _load_legacy(ckpt: Mapping[str, Any], path: Any) -> SeparationModel:
    config = dict(_plain(ckpt["bsrnn_config"]))
    model = _build(path, {**config, "arch": "bsrnn"})
    state = {
        ("maskers.0." + k.removeprefix("mask.") if k.startswith("mask.") else k): v
        for k, v in _state_dict(ckpt, path).items()
    }
    _load_state(model, state, path)
    return model


def _load_reference(ckpt: Mapping[str, Any], path: Any) -> SeparationModel:
    hparams = _plain(ckpt.get("hyper_parameters") or {})
    model = _build(path, reference_config(hparams, path))
    state = convert_reference_state_dict(_state_dict(ckpt, path), model, path)
    _load_state(model, state, path)
    return model


_LOADERS: dict[str, Callable[[Mapping[str, Any], Any], SeparationModel]] = {
    FORMAT: _load_ours,
    LEGACY_FORMAT: _load_legacy,
    "reference": _load_reference,
}


def load_model(path: str | os.PathLike, map_location: Any = "cpu") -> SeparationModel:
    """Rebuild a network (in eval mode) from any checkpoint this module knows."""
    ckpt = read_checkpoint(path, map_location=map_location)
    try:
        kind = checkpoint_format(ckpt)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    return _LOADERS[kind](ckpt, path).eval()


def _build(path: Any, options: Mapping[str, Any]) -> SeparationModel:
    try:
        return build_model(options)
    except ConfigError as err:
        raise CheckpointError(f"{path}: cannot rebuild the network from its config: {err}") from err


def _load_state(model: SeparationModel, state: Mapping[str, torch.Tensor], path: Any) -> None:
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
    """Our ``src_mod`` options from a reference checkpoint's ``hyper_parameters``.

    The seed's version names its one target ``target`` (its ``targets`` is the evaluation
    list); the newest names the network's targets ``targets``. A key that is neither an option
    nor a known run setting, or a missing option without a known default, is an error.
    """
    hparams = dict(hparams)
    seed_version = "target" in hparams
    version = "seed version" if seed_version else "newest version"
    defaults = _REFERENCE_DEFAULTS[version]
    if seed_version:
        targets = [hparams.pop("target")]
        hparams.pop("targets", None)  # the seed version's evaluation targets
    else:
        targets = hparams.pop("targets", None)
        if isinstance(targets, str):
            targets = [targets]
        if not targets:
            raise CheckpointError(f"{path}: its hyper_parameters name no target ('targets')")
    options = set(defaults) | {"feature_dim", "num_repeat"}
    unknown = sorted(k for k in hparams if k not in options and k not in _REFERENCE_RUN_KEYS)
    if unknown:
        raise CheckpointError(
            f"{path}: unknown hyper-parameter(s) {', '.join(unknown)} in a reference checkpoint "
            f"({version}); this project cannot tell what they change in the network"
        )
    config: dict[str, Any] = {"arch": "bsrnn", "targets": list(targets)}
    for key in sorted(options):
        if key in hparams:
            config[key] = hparams[key]
        elif key in defaults:
            config[key] = defaults[key]
            log.info(
                "%s: no %s in its hyper_parameters: the reference's default %r",
                path,
                key,
                defaults[key],
            )
        else:
            raise CheckpointError(
                f"{path}: its hyper_parameters lack {key!r}, which the reference's {version} has "
                "no default for"
            )
    return config


def convert_reference_state_dict(
    ref: Mapping[str, torch.Tensor], model: SeparationModel, path: Any = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Map the reference's per-band module names onto ``model``'s stacked parameters.

    Accepts both versions (the seed version's ``mask.<band>`` is the newest version's
    ``maskers.0.mask.<band>``). Every reference weight except the two STFT windows must be
    used, or a CheckpointError names the first unused keys.
    """
    ref = {(f"maskers.0.{k}" if k.startswith("mask.") else k): v for k, v in dict(ref).items()}
    used: set[str] = set()

    def get(key: str) -> torch.Tensor:
        if key not in ref:
            raise CheckpointError(f"{path}: reference state_dict has no {key!r}")
        used.add(key)
        return ref[key]

    def stack(keys: list[str], fn: Callable[[torch.Tensor], torch.Tensor] = lambda t: t):
        return torch.stack([fn(get(k)) for k in keys])

    def conv_t(t: torch.Tensor) -> torch.Tensor:  # Conv1d/2d [out, in, 1(, 1)] -> [in, out]
        return t.reshape(t.shape[0], t.shape[1]).t()

    out: dict[str, torch.Tensor] = {}
    band = 0  # band split, one stacked tensor per run of equal-width bands
    for g, group in enumerate(model.band_split.groups):
        idx = range(band, band + group.count)
        pre = f"band_split.groups.{g}."
        out[pre + "norm_weight"] = stack([f"BN.{i}.0.weight" for i in idx]).unsqueeze(1)
        out[pre + "norm_bias"] = stack([f"BN.{i}.0.bias" for i in idx]).unsqueeze(1)
        out[pre + "weight"] = stack([f"BN.{i}.1.weight" for i in idx], conv_t)
        out[pre + "bias"] = stack([f"BN.{i}.1.bias" for i in idx]).unsqueeze(1)
        band += group.count

    for b, block in enumerate(model.blocks):  # separator blocks
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
        if block.tac is not None:
            src, dst = f"separator.{b}.tac_module.", f"blocks.{b}.tac."
            for stage in ("transform", "average", "concat"):
                out[f"{dst}{stage}.weight"] = get(f"{src}{stage}.0.weight")
                out[f"{dst}{stage}.bias"] = get(f"{src}{stage}.0.bias")
            if block.tac.prelu is not None:  # one slope, saved under the three stages
                slopes = [
                    get(f"{src}{stage}.1.weight") for stage in ("transform", "average", "concat")
                ]
                if not all(torch.equal(slopes[0], s) for s in slopes[1:]):
                    raise CheckpointError(
                        f"{path}: the TAC PReLU slopes of block {b} differ; the reference ties them"
                    )
                out[dst + "prelu"] = slopes[0].reshape(1)
        if block.attention is not None:
            heads = block.attention.heads
            src, dst = f"separator.{b}.attn_block.", f"blocks.{b}.attention."
            for ours, theirs in (("query", "Q"), ("key", "K"), ("value", "V")):
                convs = [f"{src}attn_conv_{theirs}_{h}." for h in range(heads)]
                _map_head_projection(out, f"{dst}{ours}.", convs, get)
            _map_head_projection(out, f"{dst}out.", [f"{src}attn_concat_proj."], get)

    n_bands = model.n_bands
    for m, masker in enumerate(model.maskers):  # mask decoders
        src, dst, idx = f"maskers.{m}.mask.", f"maskers.{m}.", range(n_bands)
        out[dst + "norm_weight"] = stack([f"{src}{i}.0.weight" for i in idx]).view(
            n_bands, 1, 1, -1
        )
        out[dst + "norm_bias"] = stack([f"{src}{i}.0.bias" for i in idx]).view(n_bands, 1, 1, -1)
        for layer, conv in (("fc1", 1), ("fc2", 3)):
            out[f"{dst}{layer}_weight"] = stack([f"{src}{i}.{conv}.weight" for i in idx], conv_t)
            out[f"{dst}{layer}_bias"] = stack([f"{src}{i}.{conv}.bias" for i in idx]).unsqueeze(1)
        band = 0
        for g, (count, _) in enumerate(masker.group_sizes):
            idx = range(band, band + count)
            out[f"{dst}out_weights.{g}"] = stack([f"{src}{i}.5.weight" for i in idx], conv_t)
            out[f"{dst}out_biases.{g}"] = stack([f"{src}{i}.5.bias" for i in idx]).unsqueeze(1)
            band += count

    unused = sorted(set(ref) - used - _REFERENCE_BUFFERS)
    if unused:
        raise CheckpointError(
            f"{path}: {len(unused)} weight(s) of the reference checkpoint have no place in the "
            f"network its hyper_parameters describe, e.g. {', '.join(unused[:5])}"
        )
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
