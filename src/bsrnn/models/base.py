"""What every separation network offers: the interface separation, evaluation, training and
checkpoints work from, and the typed config each architecture declares its options in.

A network ``model`` is an ``nn.Module`` with

* ``model.config``: a frozen :class:`ModelConfig` dataclass, the single source of its options,
  defaults and validation (``type(config).from_mapping(preset)`` builds it from a ``src_mod``
  preset; ``config.to_dict()`` is what checkpoints store);
* ``model.targets``: the stems it produces, in output order; ``model.sample_rate``;
* ``model(mixture [B, C, samples])`` -> :class:`ModelOutput` with ``waveforms``
  ``[B, S, C, samples]`` and, optionally, complex ``stfts`` ``[B, S, C, F, frames]``,
  ``S = len(targets)`` (a loss that needs the STFT of an estimate computes it when a model
  gives none);
* what separation and training need to know, declared by each architecture (no defaults are
  guessed elsewhere): ``model.stft_spec`` (:class:`StftSpec`: the STFT a tf-domain loss and the
  figures use), ``model.audio_channels`` (1 or 2, or None: any count, channels handled as
  independent items), ``model.min_samples`` (the shortest input it takes; shorter ones are
  zero-padded), ``model.segment_samples`` (its preferred chunk length for whole-track
  separation, used where ``eval.segment_len`` is null) and ``model.loss_preference``
  (:class:`LossPreference`: the training loss it declares).

Only torch is needed here.
"""

from __future__ import annotations

import abc
import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from bsrnn.errors import ConfigError, reject_unknown_keys

#: Keys of a ``src_mod`` preset that describe the run, not the network.
PRESET_KEYS = ("arch", "name")


class ModelOutput(dict):
    """A network's output: ``waveforms`` [B, S, C, samples] and, when the network computes
    them, complex ``stfts`` [B, S, C, F, frames] (else None); reachable as keys or
    attributes."""

    @property
    def waveforms(self) -> torch.Tensor:
        return self["waveforms"]

    @property
    def stfts(self) -> torch.Tensor | None:
        return self.get("stfts")


@dataclass(frozen=True)
class StftSpec:
    """A network's STFT: ``n_fft``, ``hop_length``, ``win_length`` (Hann window, centred,
    reflect padding, one-sided) and ``normalized``."""

    n_fft: int
    hop_length: int
    win_length: int | None = None
    normalized: bool = False

    def __post_init__(self) -> None:
        if self.win_length is None:
            object.__setattr__(self, "win_length", self.n_fft)


@dataclass(frozen=True)
class MultiResolutionSpec:
    """MSST's multi-resolution STFT loss options (its ``multi_stft_*`` model options):
    ``weight`` of the term, Hann ``window_sizes``, ``hop_size`` and ``normalized``."""

    weight: float = 1.0
    window_sizes: tuple[int, ...] = (4096, 2048, 1024, 512, 256)
    hop_size: int = 147
    normalized: bool = False

    def __post_init__(self) -> None:
        sizes = tuple(int(w) for w in self.window_sizes)
        if not sizes or min(sizes) < 1 or self.hop_size < 1:
            raise ConfigError(
                f"invalid multi-resolution STFT loss: window_sizes={list(sizes)}, "
                f"hop_size={self.hop_size} (expected sizes and hop >= 1)"
            )
        object.__setattr__(self, "window_sizes", sizes)


@dataclass(frozen=True)
class LossPreference:
    """The training loss a network declares (used where ``optim.loss_type`` /
    ``optim.loss_domain`` are null): ``type`` (``L1``, ``MSE``, ``masked_mse``), ``domain``
    (``t``, ``tf``, ``t+tf``, ``t+mrstft``), the ``multi_resolution`` options of the
    ``mrstft`` term (None: MSST's defaults), and ``q`` / ``coarse`` for ``masked_mse``."""

    type: str = "L1"
    domain: str = "t+tf"
    multi_resolution: MultiResolutionSpec | None = None
    q: float = 0.95
    coarse: bool = True


def _check_type(where: str, value: Any, hint: Any) -> Any:
    """``value`` checked (and int -> float widened) against a simple annotation."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(where, value, option)
            except ConfigError:
                continue
        raise ConfigError(f"invalid {where}={value!r}: expected {_describe(hint)}")
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:  # containers are checked by the config's own __post_init__
        return value
    raise ConfigError(f"invalid {where}={value!r}: expected {_describe(hint)}")


def _describe(hint: Any) -> str:
    args = typing.get_args(hint)
    if args:
        return " or ".join("null" if a is type(None) else _describe(a) for a in args)
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        hint, str(hint)
    )


@dataclass(frozen=True)
class ModelConfig:
    """Options every architecture has. Subclasses add their own fields (with defaults) and
    checks (``__post_init__`` calling ``super().__post_init__()``).

    ``targets``: the stems the network produces, in output order.
    """

    targets: tuple[str, ...] = ("vocals",)
    sample_rate: int = 44100

    #: The ``src_mod`` prefix used in error messages.
    where: ClassVar[str] = "src_mod"
    #: The training loss domain of this architecture when ``optim.loss_domain`` is null.
    default_loss_domain: ClassVar[str] = "t+tf"

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            if f.name == "targets":
                continue
            value = _check_type(f"{self.where}.{f.name}", getattr(self, f.name), hints[f.name])
            object.__setattr__(self, f.name, value)
        targets = self.targets
        if isinstance(targets, str):
            targets = (targets,)
        targets = tuple(targets or ())
        if not targets or not all(isinstance(t, str) and t for t in targets):
            raise ConfigError(f"invalid {self.where}.targets={list(targets)!r}: expected names")
        if len(set(targets)) != len(targets):
            raise ConfigError(f"{self.where}.targets={list(targets)} names a target twice")
        object.__setattr__(self, "targets", targets)
        if self.sample_rate < 1:
            raise ConfigError(f"invalid {self.where}.sample_rate={self.sample_rate}")

    @classmethod
    def options(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every option with its default (plain values): the base of the Hydra presets."""
        return _lists_for_tuples(
            {
                f.name: f.default
                for f in dataclasses.fields(cls)
                if f.default is not dataclasses.MISSING
            }
        )

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> ModelConfig:
        """Build from a ``src_mod`` preset (plain mapping). ``target: X`` is shorthand for
        ``targets: [X]``; ``arch``/``name`` are ignored; an unknown key is a ConfigError."""
        data = {k: v for k, v in dict(options).items() if k not in PRESET_KEYS}
        target = data.pop("target", None)
        if target is not None:
            targets = data.get("targets")
            if targets is not None and list(targets) != [target]:
                raise ConfigError(
                    f"{cls.where}.target={target!r} and {cls.where}.targets={list(targets)} "
                    "disagree: set one of them (target: one stem; targets: several)"
                )
            data["targets"] = [target]
        reject_unknown_keys(data, ["target", *cls.options()], cls.where)
        if isinstance(data.get("targets"), list | tuple):
            data["targets"] = tuple(data["targets"])
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, not tuples): what checkpoints store."""
        return _lists_for_tuples(dataclasses.asdict(self))

    def inert_options(self) -> set[str]:
        """Options that cannot change this network (e.g. an attention size without attention
        heads): two configs that differ only in them build the same network. Architectures
        override this; by default every option matters."""
        return set()

    def differences(self, other: ModelConfig) -> dict[str, tuple[Any, Any]]:
        """``{option: (self's value, other's value)}`` for the options that change the
        network (ignoring :meth:`inert_options` of both)."""
        if type(other) is not type(self):
            return {"arch": (type(self).__name__, type(other).__name__)}
        mine, theirs = self.to_dict(), other.to_dict()
        inert = self.inert_options() & other.inert_options()
        return {
            key: (mine[key], theirs[key])
            for key in mine
            if key not in inert and mine[key] != theirs[key]
        }


def _lists_for_tuples(value: Any) -> Any:
    """Nested tuples become lists (plain values that YAML and checkpoints store alike)."""
    if isinstance(value, Mapping):
        return {k: _lists_for_tuples(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_lists_for_tuples(v) for v in value]
    return value


class SeparationModel(nn.Module, abc.ABC):
    """Base of every architecture: ``config``, ``targets``, ``sample_rate``; subclasses
    implement ``forward(mixture [B, C, samples]) -> ModelOutput``, :attr:`stft_spec` and
    :attr:`audio_channels`, and may override :attr:`min_samples` and
    :attr:`segment_samples`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise TypeError(f"expected a ModelConfig, got {type(config).__name__}")
        self.config = config

    @property
    def targets(self) -> list[str]:
        return list(self.config.targets)

    @property
    def sample_rate(self) -> int:
        return int(self.config.sample_rate)

    @property
    @abc.abstractmethod
    def stft_spec(self) -> StftSpec:
        """The network's STFT (what a tf-domain loss compares, and the figures show)."""

    @property
    @abc.abstractmethod
    def audio_channels(self) -> int | None:
        """Channels the network takes: 1 (mono), 2 (stereo), or None (any count: channels are
        independent items)."""

    @property
    def min_samples(self) -> int:
        """The shortest input the network takes (one STFT window: the reflect padding needs
        more than ``n_fft / 2`` samples); shorter inputs are zero-padded by the separator."""
        return int(self.stft_spec.n_fft)

    @property
    def segment_samples(self) -> int | None:
        """The chunk length the network prefers for whole-track separation (e.g. the length
        it was trained on), used where ``eval.segment_len`` is null; None: no preference
        (then a null ``eval.segment_len`` separates a whole track at once)."""
        return None

    @property
    def loss_preference(self) -> LossPreference:
        """The training loss this network declares: L1 in its config's
        ``default_loss_domain`` unless the architecture says otherwise."""
        return LossPreference(type="L1", domain=self.config.default_loss_domain)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (a tied parameter counts once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
