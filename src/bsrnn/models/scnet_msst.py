"""MSST's SCNet checkpoints (Music-Source-Separation-Training, model types ``scnet`` and
``scnet_masked``): its YAML config and its plain ``state_dict`` -> an
:class:`~bsrnn.models.scnet.SCNet` or :class:`~bsrnn.models.scnet.SCNetMasked` with those
weights. The parameter names are MSST's, so the weights load unchanged once their keys and
shapes are checked; what this module adds is telling the model type from the files (MSST's YAML
does not name it) and, when the files disagree, naming the option that most likely does.

* :func:`is_scnet_section`: whether an MSST ``model:`` section is an SCNet's (not a
  RoFormer's).
* :func:`infer_model_type`: ``scnet_masked`` when the checkpoint has the frequency embedding
  or the mask head, else ``scnet``.
* :func:`msst_model_config`: the YAML -> a typed config (stems from ``training.instruments`` /
  ``target_instrument`` or the model's ``sources``; ``segment`` from ``audio.chunk_size``).
* :func:`load_msst_model`: all of the above.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from bsrnn.errors import CheckpointError, ConfigError
from bsrnn.models.roformer_msst import read_msst_state_dict, read_msst_yaml
from bsrnn.models.scnet import SCNet, SCNetConfig, SCNetMasked, SCNetMaskedConfig

#: MSST ``model_type`` -> (our registry name, config class, model class).
MODEL_TYPES: dict[str, tuple[str, type[SCNetConfig], type[SCNet]]] = {
    "scnet": ("scnet", SCNetConfig, SCNet),
    "scnet_masked": ("scnet_masked", SCNetMaskedConfig, SCNetMasked),
}

#: ``model:`` keys of MSST's SCNet constructors.
SCNET_KEYS = (
    "sources", "audio_channels", "dims", "nfft", "hop_size", "win_size", "normalized",
    "band_SR", "band_stride", "band_kernel", "conv_depths", "compress", "conv_kernel",
    "num_dplayer", "expand",
)  # fmt: skip
#: Keys only the masked variant's checkpoints hold.
MASKED_KEYS = ("pos_embed_f", "mask_layer.0.weight")


def is_scnet_section(model_section: Mapping[str, Any]) -> bool:
    """True for an SCNet ``model:`` section: one with an SCNet option, or none of the
    RoFormers' required ``dim`` / ``depth`` (every SCNet option has a default)."""
    if any(k in model_section for k in SCNET_KEYS):
        return True
    return "dim" not in model_section and "depth" not in model_section


def infer_model_type(state: Mapping[str, torch.Tensor]) -> str:
    """``scnet_masked`` for a checkpoint with ``pos_embed_f`` or a ``mask_layer``, else
    ``scnet`` (the YAML's options are the same for both)."""
    return "scnet_masked" if any(k in state for k in MASKED_KEYS) else "scnet"


def msst_model_config(yaml_dict: Mapping[str, Any], model_type: str = "scnet") -> SCNetConfig:
    """The typed config of an MSST YAML (:func:`read_msst_yaml`): the ``model:`` section's
    options (``sources`` -> ``targets``), the stems named by ``training.instruments`` (or
    ``target_instrument`` for a one-stem model), ``segment`` from ``audio.chunk_size``,
    ``sample_rate`` from ``audio.sample_rate``."""
    if model_type not in MODEL_TYPES:
        raise ConfigError(
            f"unsupported MSST model_type {model_type!r}: expected one of {', '.join(MODEL_TYPES)}"
        )
    model = dict(yaml_dict.get("model") or {})
    sources = model.pop("sources", None)
    training = dict(yaml_dict.get("training") or {})
    audio = dict(yaml_dict.get("audio") or {})
    target, instruments = training.get("target_instrument"), training.get("instruments")
    stems = [str(target)] if target else [str(s) for s in instruments or ()]
    if sources is not None:
        sources = [str(s) for s in sources]
        if stems and len(stems) != len(sources):
            raise ConfigError(
                f"the MSST config's model.sources={sources} (the network's outputs) and "
                f"training's stems {stems} disagree: give one name per output"
            )
        stems = stems or sources
    model["targets"] = stems or list(SCNetConfig.targets)
    if "sample_rate" in audio:
        model["sample_rate"] = audio["sample_rate"]
    if audio.get("chunk_size") is not None:
        model["segment"] = audio["chunk_size"]
    return MODEL_TYPES[model_type][1].from_mapping(model)


def load_msst_model(
    yaml_path: str | Path,
    ckpt_path: str | Path,
    model_type: str | None = None,
    yaml_dict: Mapping[str, Any] | None = None,
) -> SCNet:
    """The network of an MSST YAML with the checkpoint's weights, in eval mode
    (``model_type`` None: :func:`infer_model_type`)."""
    yaml_dict = yaml_dict if yaml_dict is not None else read_msst_yaml(yaml_path)
    state = read_msst_state_dict(ckpt_path)
    model_type = model_type or infer_model_type(state)
    config = msst_model_config(yaml_dict, model_type)
    model = MODEL_TYPES[model_type][2](config)
    try:
        check_state(state, model)
    except CheckpointError as err:
        raise CheckpointError(f"{ckpt_path} does not fit {yaml_path}: {err}") from None
    model.load_state_dict(state)
    return model.eval()


# --------------------------------------------------------------------------------------------
# Diagnosis: which option disagrees
# --------------------------------------------------------------------------------------------
def _count(keys: list[str], pattern: str) -> int:
    regex = re.compile(pattern)
    found = {int(m.group(1)) for k in keys if (m := regex.match(k))}
    return max(found) + 1 if found else 0


def check_state(state: Mapping[str, torch.Tensor], model: SCNet) -> None:
    """A CheckpointError naming the option most likely behind the first disagreement between
    ``state`` (MSST's keys) and ``model``; nothing when every key and shape fits."""
    c, w = model.config, model.config.where
    own = model.state_dict()
    have = list(state)
    missing = [k for k in own if k not in state]
    extra = [k for k in have if k not in own]

    def fail(option: str, detail: str, keys: list[str]) -> None:
        shown = ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")
        raise CheckpointError(
            f"{detail}; check {w}.{option}" + (f" (key(s): {shown})" if shown else "")
        )

    masked_keys = [k for k in MASKED_KEYS if k in state]
    if masked_keys and not model.masked:
        fail(
            "arch",
            "the checkpoint is an scnet_masked (it has a frequency embedding and a mask head) "
            "but the config builds an scnet (model_type scnet_masked)",
            masked_keys,
        )
    if model.masked and not masked_keys:
        fail(
            "arch",
            "the checkpoint is an scnet (no mask head) but the config builds an scnet_masked "
            "(model_type scnet)",
            [k for k in missing if k.startswith(MASKED_KEYS)],
        )
    blocks = _count(have, r"encoder\.(\d+)\.")
    if blocks != len(c.dims) - 1:
        fail(
            "dims",
            f"the checkpoint has {blocks} SD block(s) ({blocks + 1} widths) but the config "
            f"dims={list(c.dims)}",
            [k for k in missing + extra if k.startswith(("encoder.", "decoder."))],
        )
    for band, depth in enumerate(c.conv_depths):
        found = _count(have, rf"encoder\.0\.conv_modules\.{band}\.layers\.(\d+)\.")
        if found != depth:
            fail(
                "conv_depths",
                f"the checkpoint's band {band} has {found} convolution layer(s) per SD block, "
                f"the config conv_depths={list(c.conv_depths)}",
                [k for k in missing + extra if ".conv_modules." in k],
            )
    layers = _count(have, r"separation_net\.dp_modules\.(\d+)\.")
    if layers != c.num_dplayer:
        fail(
            "num_dplayer",
            f"the checkpoint has {layers} dual-path layer(s), the config "
            f"num_dplayer={c.num_dplayer}",
            [k for k in missing + extra if k.startswith("separation_net.")],
        )
    if missing or extra:
        fail("arch", f"{len(missing)} key(s) missing and {len(extra)} unexpected", missing + extra)
    for key, value in own.items():
        got, want = tuple(state[key].shape), tuple(value.shape)
        if got != want:
            option = _shape_option(key, got, want, c)
            fail(
                option,
                f"{key} has shape {list(got)} in the checkpoint, {list(want)} in the model",
                [key],
            )


def _shape_option(key: str, got: tuple[int, ...], want: tuple[int, ...], c: SCNetConfig) -> str:
    """The option(s) most likely behind a shape mismatch of ``key``."""
    if key == "pos_embed_f":
        return "nfft" if got[2] != want[2] else "audio_channels / dims"
    if key.startswith("mask_layer."):
        return "targets (MSST's sources / training.instruments)"
    if ".SDlayer.convs." in key or ".convtrs." in key:
        if key.endswith(".weight") and got[2] != want[2]:
            return "band_kernel"
        last = re.match(rf"decoder\.{len(c.dims) - 2}\.1\.convtrs\.", key)
        if last and key.endswith(".weight") and got[0] == want[0]:
            return "targets (MSST's sources / training.instruments)"
        if last and key.endswith(".bias"):
            return "targets (MSST's sources / training.instruments)"
        return "dims"
    if ".conv_modules." in key:
        if key.endswith(".weight") and len(got) == 3 and got[2] != want[2]:
            return "conv_kernel"
        if len(got) >= 1 and got[0] != want[0] and ".layers." in key:
            return "compress / dims"
        return "dims"
    if ".lstm_layers." in key or ".linear_layers." in key:
        same_channels = ".lstm_layers." in key and key.endswith("_l0") and got[1:] == want[1:]
        return "expand" if same_channels or key.endswith("_hh_l0") else "dims / expand"
    return "dims"
