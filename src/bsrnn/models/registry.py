"""The registry of architectures: a ``src_mod`` preset names its architecture with ``arch``.

Adding an architecture: one module (a :class:`~bsrnn.models.base.ModelConfig` subclass and a
:class:`~bsrnn.models.base.SeparationModel` subclass, and the readers of any foreign checkpoint
format beside it), one preset in ``conf/src_mod/``, and one call of :func:`register` (the
built-in ones: the lines at the end of this module; a package outside the project: its own
import, or an entry point in the ``bsrnn.architectures`` group naming a callable that
registers, loaded the first time the registry is consulted).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bsrnn.errors import ConfigError
from bsrnn.models import bsrnn_checkpoints
from bsrnn.models.base import ModelConfig, SeparationModel
from bsrnn.models.bsrnn import BSRNN, BSRNNConfig
from bsrnn.models.foreign import ForeignFormat
from bsrnn.models.roformer import BSRoformer, BSRoformerConfig, MelRoformer, MelRoformerConfig
from bsrnn.models.scnet import SCNet, SCNetConfig, SCNetMasked, SCNetMaskedConfig

log = logging.getLogger(__name__)

#: The Python entry point group of architectures from other packages: each entry names a
#: callable that calls :func:`register` (loaded once, lazily).
ENTRY_POINT_GROUP = "bsrnn.architectures"

#: The architecture of a preset without an ``arch`` key.
DEFAULT_ARCH = "bsrnn"


@dataclass(frozen=True)
class Architecture:
    """An architecture: its typed options, its network class (``model(config)``) and the
    foreign checkpoint formats it reads (:class:`~bsrnn.models.foreign.ForeignFormat`)."""

    config: type[ModelConfig]
    model: type[SeparationModel]
    foreign_formats: tuple[ForeignFormat, ...] = ()


#: Registered architectures by name (fill it with :func:`register`, not by assignment).
ARCHITECTURES: dict[str, Architecture] = {}
_entry_points_loaded = False


def register(
    name: str,
    config_cls: type[ModelConfig],
    model_cls: type[SeparationModel],
    foreign_formats: Iterable[ForeignFormat] = (),
) -> Architecture:
    """Register an architecture under ``name`` (what a preset's ``arch`` names): its typed
    options, its network class (``model_cls(config)``) and the foreign checkpoint formats it
    reads. A name, config class or network class registered already is a ConfigError naming
    the clash (:func:`unregister` first to replace one)."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(f"invalid architecture name {name!r}: expected an identifier")
    if not (isinstance(config_cls, type) and issubclass(config_cls, ModelConfig)):
        raise ConfigError(f"architecture {name!r}: {config_cls!r} is not a ModelConfig subclass")
    if not (isinstance(model_cls, type) and issubclass(model_cls, SeparationModel)):
        raise ConfigError(f"architecture {name!r}: {model_cls!r} is not a SeparationModel subclass")
    if name in ARCHITECTURES:
        raise ConfigError(
            f"architecture {name!r} is registered already "
            f"({ARCHITECTURES[name].model.__name__}): choose another name"
        )
    for other, spec in ARCHITECTURES.items():
        if spec.config is config_cls or spec.model is model_cls:
            raise ConfigError(
                f"architecture {name!r}: {config_cls.__name__} / {model_cls.__name__} are "
                f"registered already as {other!r}"
            )
    spec = Architecture(config_cls, model_cls, tuple(foreign_formats))
    ARCHITECTURES[name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove the architecture ``name`` (a ConfigError if none is registered under it)."""
    if name not in ARCHITECTURES:
        raise ConfigError(f"no architecture {name!r} is registered")
    del ARCHITECTURES[name]


def _load_entry_points() -> None:
    """Call each ``bsrnn.architectures`` entry point once (each registers its own)."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()()
        except Exception as err:  # noqa: BLE001 (a broken plug-in must not stop the project)
            log.warning("architecture entry point %s could not be loaded: %s", entry.name, err)


def registered() -> dict[str, Architecture]:
    """Every registered architecture (built-in ones, then entry points' ones)."""
    _load_entry_points()
    return ARCHITECTURES


def architecture(name: str) -> Architecture:
    """The registered architecture ``name`` (ConfigError listing the valid names)."""
    if name not in registered():
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
        for spec in registered().values():
            if type(options) is spec.config:
                return spec.model(options)
        raise ConfigError(f"no registered architecture takes a {type(options).__name__}")
    arch, config = model_config(options)
    return architecture(arch).model(config)


def foreign_formats() -> list[ForeignFormat]:
    """Every foreign checkpoint format of the registered architectures."""
    return [f for spec in registered().values() for f in spec.foreign_formats]


def arch_name(model: SeparationModel) -> str:
    """The registry name of ``model``'s architecture."""
    for name, spec in registered().items():
        if type(model) is spec.model:
            return name
    raise ConfigError(f"{type(model).__name__} is not a registered architecture")


# The built-in architectures
register("bsrnn", BSRNNConfig, BSRNN, bsrnn_checkpoints.FOREIGN_FORMATS)
register("bs_roformer", BSRoformerConfig, BSRoformer)
register("mel_band_roformer", MelRoformerConfig, MelRoformer)
register("scnet", SCNetConfig, SCNet)
register("scnet_masked", SCNetMaskedConfig, SCNetMasked)
