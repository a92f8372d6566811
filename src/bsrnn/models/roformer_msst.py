"""MSST's RoFormer checkpoints (Music-Source-Separation-Training): its YAML config and its
plain ``state_dict`` -> a :class:`~bsrnn.models.roformer.BSRoformer` or
:class:`~bsrnn.models.roformer.MelRoformer` with those weights.

* :func:`read_msst_yaml`: the YAML (``!!python/tuple`` read as a list, safely).
* :func:`msst_model_config`: its ``model:`` section (the constructor's keyword arguments),
  ``training.instruments`` / ``target_instrument`` (the stems) and ``audio.chunk_size`` /
  ``sample_rate`` -> ``(arch, typed config)``.
* :func:`read_msst_state_dict`: a ``.ckpt`` / ``.pth`` (plain, or wrapped as ``state_dict``,
  ``model_state_dict`` or ``state``; fp16 or fp32) -> fp32 tensors, loaded with
  ``torch.load(weights_only=True)``.
* :func:`msst_to_state_dict` / :func:`state_dict_to_msst`: MSST's keys <-> ours. The
  transformers share MSST's names; MSST's per-band ``band_split.to_features.{band}`` and
  ``mask_estimators.{stem}.to_freqs.{band}`` layers are stacked per band group here.
* :func:`load_msst_model`: all of the above. A key that is missing, unexpected or of another
  shape is a :class:`~bsrnn.errors.CheckpointError` naming the key and the config option that
  most likely disagrees.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from bsrnn.errors import CheckpointError, ConfigError
from bsrnn.models.roformer import (
    BSRoformer,
    BSRoformerConfig,
    MelRoformer,
    MelRoformerConfig,
    Roformer,
    RoformerConfig,
)

#: MSST ``model_type`` -> (our registry name, config class, model class).
MODEL_TYPES: dict[str, tuple[str, type[RoformerConfig], type[Roformer]]] = {
    "bs_roformer": ("bs_roformer", BSRoformerConfig, BSRoformer),
    "mel_band_roformer": ("mel_band_roformer", MelRoformerConfig, MelRoformer),
}

#: Keys a checkpoint's training state may be wrapped under.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "state")


# --------------------------------------------------------------------------------------------
# YAML and config
# --------------------------------------------------------------------------------------------
class _MsstLoader(yaml.SafeLoader):
    """A safe loader that also reads ``!!python/tuple`` (as a list)."""


def _tuple(loader: yaml.SafeLoader, node: yaml.Node) -> list[Any]:
    return loader.construct_sequence(node, deep=True)  # type: ignore[arg-type]


_MsstLoader.add_constructor("tag:yaml.org,2002:python/tuple", _tuple)


def read_msst_yaml(path: str | Path) -> dict[str, Any]:
    """An MSST YAML config as plain dicts and lists (ConfigError if missing or unreadable)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"MSST config {path} does not exist")
    try:
        data = yaml.load(path.read_text(), Loader=_MsstLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as err:
        raise ConfigError(f"cannot read MSST config {path}: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ConfigError(f"MSST config {path} has no 'model:' section")
    return data


#: ``model:`` keys only one of MSST's constructors takes.
MEL_ONLY_KEYS = ("num_bands", "sample_rate", "match_input_audio_length")
BS_ONLY_KEYS = ("freqs_per_bands",)


def infer_model_type(
    model_section: Mapping[str, Any], state: Mapping[str, torch.Tensor] | None = None
) -> str:
    """``mel_band_roformer`` for a ``model:`` section with a key only MSST's Mel-RoFormer
    takes (``num_bands``, ``sample_rate``, ``match_input_audio_length``), ``bs_roformer`` for
    one with ``freqs_per_bands``; with neither, the checkpoint ``state`` decides (BS-RoFormer
    has ``final_norm``), else ``bs_roformer``."""
    mel = [k for k in MEL_ONLY_KEYS if k in model_section]
    bs = [k for k in BS_ONLY_KEYS if k in model_section]
    if mel and bs:
        raise ConfigError(
            f"the MSST model section has {', '.join(mel)} (Mel-RoFormer) and {', '.join(bs)} "
            "(BS-RoFormer): give model_type"
        )
    if mel or bs:
        return "mel_band_roformer" if mel else "bs_roformer"
    if state is not None and "final_norm.gamma" not in state:
        return "mel_band_roformer"
    return "bs_roformer"


def msst_model_config(
    yaml_dict: Mapping[str, Any], model_type: str | None = None
) -> tuple[str, RoformerConfig]:
    """``(arch, config)`` from an MSST YAML (:func:`read_msst_yaml`): the ``model:`` section's
    options, the stems from ``training.target_instrument`` (one stem) or
    ``training.instruments``, ``segment`` from ``audio.chunk_size``, ``sample_rate`` from
    ``audio.sample_rate``. ``model_type``: ``bs_roformer`` or ``mel_band_roformer`` (None:
    inferred from the model section's keys)."""
    model = dict(yaml_dict.get("model") or {})
    model_type = model_type or infer_model_type(model)
    if model_type not in MODEL_TYPES:
        raise ConfigError(
            f"unsupported MSST model_type {model_type!r}: expected one of {', '.join(MODEL_TYPES)}"
        )
    arch, config_cls, _ = MODEL_TYPES[model_type]
    for key in [k for k in model if "sage" in str(k).lower()]:
        value = model.pop(key)
        if value:
            raise ConfigError(
                f"unsupported src_mod.{key}={value!r}: sage attention is not implemented "
                "(scaled_dot_product_attention only)"
            )
    audio = dict(yaml_dict.get("audio") or {})
    training = dict(yaml_dict.get("training") or {})
    target = training.get("target_instrument")
    instruments = training.get("instruments")
    if target:
        targets = [str(target)]
    elif instruments:
        targets = [str(t) for t in instruments]
    else:
        raise ConfigError(
            "the MSST config names no stems: expected training.instruments or "
            "training.target_instrument"
        )
    if "sample_rate" in audio:
        if "sample_rate" in model and model["sample_rate"] != audio["sample_rate"]:
            raise ConfigError(
                f"the MSST config's model.sample_rate={model['sample_rate']} and "
                f"audio.sample_rate={audio['sample_rate']} disagree"
            )
        model["sample_rate"] = audio["sample_rate"]
    if audio.get("chunk_size") is not None:
        model["segment"] = audio["chunk_size"]
    model["targets"] = targets
    return arch, config_cls.from_mapping(model)


# --------------------------------------------------------------------------------------------
# State dicts
# --------------------------------------------------------------------------------------------
def read_msst_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """An MSST checkpoint's weights as fp32 tensors (plain, or wrapped as ``state_dict``,
    ``model_state_dict`` or ``state``; the ``module.`` / ``_orig_mod.`` prefixes of
    DataParallel / torch.compile are dropped)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"MSST checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 (any unpickling failure: report the path)
        raise CheckpointError(
            f"cannot read MSST checkpoint {path} safely (weights_only): {err}"
        ) from None
    for key in WRAPPER_KEYS:
        if isinstance(data, Mapping) and isinstance(data.get(key), Mapping):
            data = data[key]
            break
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(
            f"{path} is not a state_dict (expected tensors, plain or under one of "
            f"{', '.join(WRAPPER_KEYS)})"
        )
    out = {}
    for key, value in data.items():
        key = key.removeprefix("module.").removeprefix("_orig_mod.")
        out[key] = value.float() if value.is_floating_point() else value
    return out


def _msst_layout(model: Roformer) -> dict[str, tuple[str, int | None]]:
    """MSST key -> (our key, index into our stacked tensor or None)."""
    layout: dict[str, tuple[str, int | None]] = {}
    for key in model.state_dict():
        if not key.startswith(("band_split.", "mask_estimators.")):
            layout[key] = (key, None)
    groups = model.band_groups.groups
    for g, (bands, _) in enumerate(groups):
        for j, band in enumerate(bands):
            ours = f"band_split.groups.{g}"
            layout[f"band_split.to_features.{band}.0.gamma"] = (f"{ours}.gamma", j)
            layout[f"band_split.to_features.{band}.1.weight"] = (f"{ours}.linear.weight", j)
            layout[f"band_split.to_features.{band}.1.bias"] = (f"{ours}.linear.bias", j)
    for s, estimator in enumerate(model.mask_estimators):
        n_hidden = len(estimator.hidden)
        for band in range(model.band_groups.n_bands):
            for layer in range(n_hidden):
                theirs = f"mask_estimators.{s}.to_freqs.{band}.0.{2 * layer}"
                ours = f"mask_estimators.{s}.hidden.{layer}"
                layout[f"{theirs}.weight"] = (f"{ours}.weight", band)
                layout[f"{theirs}.bias"] = (f"{ours}.bias", band)
        for g, (bands, _) in enumerate(groups):
            for j, band in enumerate(bands):
                theirs = f"mask_estimators.{s}.to_freqs.{band}.0.{2 * n_hidden}"
                ours = f"mask_estimators.{s}.out.{g}"
                layout[f"{theirs}.weight"] = (f"{ours}.weight", j)
                layout[f"{theirs}.bias"] = (f"{ours}.bias", j)
    return layout


def _their_shape(ours: torch.Tensor, index: int | None, key: str) -> tuple[int, ...]:
    if index is None:
        return tuple(ours.shape)
    shape = tuple(ours.shape[1:])
    return shape[1:] if key.endswith(".bias") else shape  # stacked biases are [count, 1, out]


def msst_to_state_dict(msst: Mapping[str, torch.Tensor], model: Roformer) -> dict[str, Any]:
    """MSST's keys -> ``model``'s state_dict (CheckpointError naming the disagreeing key and
    option when the checkpoint and ``model``'s config differ)."""
    layout = _msst_layout(model)
    own = model.state_dict()
    msst = dict(msst)
    for theirs, (ours, _) in layout.items():  # rotary frequencies are constants: fill them in
        layer = theirs.removesuffix("rotary_embed.freqs")
        if layer != theirs and theirs not in msst and f"{layer}to_qkv.weight" in msst:
            msst[theirs] = own[ours]
    _check_keys(msst, layout, model)
    out: dict[str, torch.Tensor] = {}
    for theirs, (ours, index) in layout.items():
        value = msst[theirs].to(own[ours].dtype)
        if index is None:
            out[ours] = value
            continue
        if ours not in out:
            out[ours] = torch.empty_like(own[ours])
        out[ours][index] = value.view(own[ours].shape[1:])
    return out


def state_dict_to_msst(model: Roformer) -> dict[str, torch.Tensor]:
    """``model``'s weights under MSST's keys (what MSST's ``load_state_dict`` takes)."""
    own = model.state_dict()
    out = {}
    for theirs, (ours, index) in _msst_layout(model).items():
        value = own[ours] if index is None else own[ours][index]
        out[theirs] = value.reshape(_their_shape(own[ours], index, ours)).clone()
    return out


def load_msst_model(
    yaml_path: str | Path, ckpt_path: str | Path, model_type: str | None = None
) -> Roformer:
    """The network of an MSST YAML with the checkpoint's weights, in eval mode
    (``model_type`` None: see :func:`infer_model_type`)."""
    yaml_dict = read_msst_yaml(yaml_path)
    msst = read_msst_state_dict(ckpt_path)
    model_type = model_type or infer_model_type(yaml_dict["model"], msst)
    _, config = msst_model_config(yaml_dict, model_type)
    model = MODEL_TYPES[config.msst_model_type][2](config)
    try:
        state = msst_to_state_dict(msst, model)
    except CheckpointError as err:
        raise CheckpointError(f"{ckpt_path} does not fit {yaml_path}: {err}") from None
    model.load_state_dict(state)
    return model.eval()


# --------------------------------------------------------------------------------------------
# Diagnosis: which option disagrees
# --------------------------------------------------------------------------------------------
def _indices(keys: list[str], pattern: str) -> set[int]:
    regex = re.compile(pattern)
    return {int(m.group(1)) for k in keys if (m := regex.match(k))}


def _count(found: set[int]) -> int:
    return max(found) + 1 if found else 0


def _check_keys(
    msst: Mapping[str, torch.Tensor], layout: Mapping[str, tuple[str, int | None]], model: Roformer
) -> None:
    c = model.config
    w = c.where
    own = model.state_dict()
    have, want = list(msst), list(layout)
    missing = [k for k in want if k not in msst]
    extra = [k for k in have if k not in layout]

    def fail(option: str, detail: str, keys: list[str]) -> None:
        shown = ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")
        raise CheckpointError(f"{detail}; check {w}.{option} (key(s): {shown})")

    # architecture: BS has final_norm, Mel normalises each transformer's output
    transformer_norm = [k for k in have if re.match(r"layers\.\d+\.\d+\.norm\.gamma$", k)]
    if "final_norm.gamma" in msst and model.mel:
        fail(
            "arch",
            "the checkpoint is a BS-RoFormer (it has final_norm) but the config builds a "
            "Mel-RoFormer (model_type bs_roformer, not mel_band_roformer)",
            ["final_norm.gamma"],
        )
    if transformer_norm and not model.mel:
        fail(
            "arch",
            "the checkpoint is a Mel-RoFormer (its transformers end with norm.gamma) but the "
            "config builds a BS-RoFormer (model_type mel_band_roformer, not bs_roformer)",
            transformer_norm,
        )
    # stems, blocks, transformers per block
    stems = _count(_indices(have, r"mask_estimators\.(\d+)\."))
    if stems != c.num_stems:
        keys = [k for k in (extra if stems > c.num_stems else missing) if "mask_estimators" in k]
        fail(
            "num_stems",
            f"the checkpoint has {stems} mask estimator(s) (stems) but the config "
            f"{c.num_stems} (targets {list(c.targets)})",
            keys,
        )
    depth = _count(_indices(have, r"layers\.(\d+)\."))
    if depth != c.depth:
        keys = [k for k in (extra if depth > c.depth else missing) if k.startswith("layers.")]
        fail("depth", f"the checkpoint has {depth} block(s), the config depth={c.depth}", keys)
    per_block = _count(_indices(have, r"layers\.0\.(\d+)\."))
    ours = len(list(model.layers[0].children()))  # transformers per block
    if per_block != ours:
        linear = per_block - 2
        fail(
            "linear_transformer_depth",
            f"the checkpoint's blocks hold {per_block} transformers ("
            f"{'with' if linear > 0 else 'without'} a linear transformer) but the config's "
            f"{ours} (linear_transformer_depth={c.linear_transformer_depth})",
            [k for k in extra + missing if k.startswith("layers.0.")],
        )
    first = model.layers[0].first_axial  # index of the time transformer
    checks = [
        ("linear_transformer_depth", 0, c.linear_transformer_depth),
        ("time_transformer_depth", first, c.time_transformer_depth),
        ("freq_transformer_depth", first + 1, c.freq_transformer_depth),
    ]
    for option, j, expected in checks:
        if option == "linear_transformer_depth" and first == 0:
            continue
        found = _count(_indices(have, rf"layers\.0\.{j}\.layers\.(\d+)\."))
        if found != expected:
            fail(
                option,
                f"the checkpoint's transformer layers.0.{j} has {found} layer(s), the config "
                f"{option}={expected}",
                [k for k in extra + missing if k.startswith(f"layers.0.{j}.")],
            )
    # bands and mask MLP depth
    bands = _count(_indices(have, r"band_split\.to_features\.(\d+)\."))
    n_bands = model.band_groups.n_bands
    band_option = "num_bands" if model.mel else "freqs_per_bands"
    if bands != n_bands:
        fail(
            band_option,
            f"the checkpoint has {bands} bands but the config {n_bands}",
            [k for k in extra + missing if "band_split" in k],
        )
    linears = len(_indices(have, r"mask_estimators\.0\.to_freqs\.0\.0\.(\d+)\.weight"))
    if linears != c.mask_layers():
        suggested = linears - 1 if model.mel else linears
        fail(
            "mask_estimator_depth",
            f"the checkpoint's mask MLPs have {linears} linear layer(s): "
            f"mask_estimator_depth={suggested} for this architecture, the config has "
            f"{c.mask_estimator_depth}",
            [k for k in extra + missing if "mask_estimators" in k],
        )
    if missing or extra:
        fail(
            "arch",
            f"{len(missing)} key(s) missing and {len(extra)} unexpected",
            missing + extra,
        )
    # shapes
    for theirs, (ours, index) in layout.items():
        expected_shape = _their_shape(own[ours], index, ours)
        got = tuple(msst[theirs].shape)
        if got != expected_shape:
            fail(
                _shape_option(theirs, model),
                f"{theirs} has shape {list(got)} in the checkpoint, {list(expected_shape)} in "
                "the model",
                [theirs],
            )


def _shape_option(key: str, model: Roformer) -> str:
    """The option(s) most likely behind a shape mismatch of ``key``."""
    bands = "num_bands" if model.mel else "freqs_per_bands"
    if key.startswith("band_split."):
        return f"{bands} / stereo / dim"
    if key.startswith("mask_estimators."):
        return f"dim / mlp_expansion_factor / {bands} / stereo"
    if key.endswith("rotary_embed.freqs"):
        return "dim_head"
    if any(part in key for part in ("to_qkv", "to_out", "to_gates", "temperature")):
        return "dim / heads / dim_head"
    return "dim"
