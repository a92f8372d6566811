"""Foreign checkpoint formats of the BSRNN family: the reference implementation's Lightning
checkpoints (the version the seed describes, ``mask.<band>`` decoder keys and a ``target``
hyper-parameter, and its newest version, ``maskers.<m>.mask.<band>`` and ``targets``), and our
own first format (``bsrnn/1``: a ``bsrnn_config`` entry).

The reference's architecture comes from its ``hyper_parameters`` and its per-band weights are
mapped onto our stacked ones. Every weight must be used and every hyper-parameter known, or
the file is refused naming the key. The registry lists :data:`FOREIGN_FORMATS` with the BSRNN
architecture; :func:`bsrnn.checkpoints.load_model` tries them on files that are not ours.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch

from bsrnn.containers import to_plain
from bsrnn.errors import CheckpointError, ConfigError
from bsrnn.models.bsrnn import BSRNN, BSRNNConfig
from bsrnn.models.foreign import ForeignFormat, load_state_strict, state_dict_of

log = logging.getLogger(__name__)

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


def _build(path: Any, options: Mapping[str, Any]) -> BSRNN:
    options = {k: v for k, v in options.items() if k != "arch"}
    try:
        return BSRNN(BSRNNConfig.from_mapping(options))
    except ConfigError as err:
        raise CheckpointError(f"{path}: cannot rebuild the network from its config: {err}") from err


def load_legacy(ckpt: Mapping[str, Any], path: Any) -> BSRNN:
    """Our first format (``bsrnn/1``): a ``bsrnn_config`` and a single target's mask keys."""
    config = dict(to_plain(ckpt["bsrnn_config"]))
    model = _build(path, {**config, "arch": "bsrnn"})
    state = {
        ("maskers.0." + k.removeprefix("mask.") if k.startswith("mask.") else k): v
        for k, v in state_dict_of(ckpt, path).items()
    }
    load_state_strict(model, state, path)
    return model


def load_reference(ckpt: Mapping[str, Any], path: Any) -> BSRNN:
    """A Lightning checkpoint of the reference implementation (either version)."""
    hparams = to_plain(ckpt.get("hyper_parameters") or {})
    model = _build(path, reference_config(hparams, path))
    state = convert_reference_state_dict(state_dict_of(ckpt, path), model, path)
    load_state_strict(model, state, path)
    return model


def is_reference(ckpt: Mapping[str, Any]) -> bool:
    """A reference checkpoint holds the reference's module names (``BN.<band>``)."""
    state = ckpt.get("state_dict")
    return isinstance(state, Mapping) and any(str(k).startswith("BN.") for k in state)


FOREIGN_FORMATS = (
    ForeignFormat("bsrnn/1", lambda ckpt: "bsrnn_config" in ckpt, load_legacy),
    ForeignFormat("reference", is_reference, load_reference),
)


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
    ref: Mapping[str, torch.Tensor], model: BSRNN, path: Any = "checkpoint"
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
