"""The registry of architectures: a ``src_mod`` preset names its architecture with ``arch``.

Adding an architecture: one module (a :class:`~bsrnn.models.base.ModelConfig` subclass and a
:class:`~bsrnn.models.base.SeparationModel` subclass, and the readers of any foreign checkpoint
format beside it), one preset in ``conf/src_mod/``, and one line in :data:`ARCHITECTURES`
below.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bsrnn.errors import ConfigError
from bsrnn.models import bsrnn_checkpoints
from bsrnn.models.base import ModelConfig, SeparationModel
from bsrnn.models.bsrnn import BSRNN, BSRNNConfig
from bsrnn.models.foreign import ForeignFormat
from bsrnn.models.roformer import BSRoformer, BSRoformerConfig, MelRoformer, MelRoformerConfig

#: The architecture of a preset without an ``arch`` key.
DEFAULT_ARCH = "bsrnn"


@dataclass(frozen=True)
class Architecture:
    """An architecture: its typed options, its network class (``model(config)``) and the
    foreign checkpoint formats it reads (:class:`~bsrnn.models.foreign.ForeignFormat`)."""

    config: type[ModelConfig]
    model: type[SeparationModel]
    foreign_formats: tuple[ForeignFormat, ...] = ()


ARCHITECTURES: dict[str, Architecture] = {
    "bsrnn": Architecture(BSRNNConfig, BSRNN, bsrnn_checkpoints.FOREIGN_FORMATS),
    "bs_roformer": Architecture(BSRoformerConfig, BSRoformer),
    "mel_band_roformer": Architecture(MelRoformerConfig, MelRoformer),
}


def architecture(name: str) -> Architecture:
    """The registered architecture ``name`` (ConfigError listing the valid names)."""
    if name not in ARCHITECTURES:
        raise ConfigError(
            f"unknown architecture src_mod.arch={name!r}: expected one of "
            f"{', '.join(ARCHITECTURES)}"
        )
    return ARCHITECTURES[name]


def model_config(options: Mapping[str, Any]) -> tuple[str, ModelConfig]:
    """``(arch, typed config)`` of a ``src_mod`` preset (a plain mapping)."""
    arch = str(options.get("arch") or DEFAULT_ARCH)
    return arch, architecture(arch).config.from_mapping(options)


def build_model(options: Mapping[str, Any] | ModelConfig) -> SeparationModel:
    """A network with random weights from a ``src_mod`` preset or a typed config."""
    if isinstance(options, ModelConfig):
        for spec in ARCHITECTURES.values():
            if isinstance(options, spec.config):
                return spec.model(options)
        raise ConfigError(f"no registered architecture takes a {type(options).__name__}")
    arch, config = model_config(options)
    return architecture(arch).model(config)


def foreign_formats() -> list[ForeignFormat]:
    """Every foreign checkpoint format of the registered architectures."""
    return [f for spec in ARCHITECTURES.values() for f in spec.foreign_formats]


def arch_name(model: SeparationModel) -> str:
    """The registry name of ``model``'s architecture."""
    for name, spec in ARCHITECTURES.items():
        if type(model) is spec.model:
            return name
    raise ConfigError(f"{type(model).__name__} is not a registered architecture")
