"""What every separation network offers: the interface separation, evaluation, training and
checkpoints work from, and the typed config each architecture declares its options in.

A network ``model`` is an ``nn.Module`` with

* ``model.config``: a frozen :class:`ModelConfig` dataclass, the single source of its options,
  defaults and validation (``type(config).from_mapping(preset)`` builds it from a ``src_mod``
  preset; ``config.to_dict()`` is what checkpoints store);
* ``model.targets``: the stems it produces, in output order; ``model.sample_rate``;
* ``model.core(spec [B, C, F, frames, 2]) -> [B, S, C, F, frames, 2]``: the network between
  the STFT and the iSTFT (real and imaginary parts on the last axis; real tensors only, what
  ``bsrnn.export`` writes to ONNX), ``S = len(targets)``;
* ``model(mixture [B, C, samples])`` -> :class:`ModelOutput` with ``waveforms``
  ``[B, S, C, samples]`` and complex ``stfts`` ``[B, S, C, F, frames]``: the base class's
  forward, pad -> ``stft_spec.stft`` -> ``core`` -> ``stft_spec.istft`` -> crop, one
  definition for training, separation and the export;
* what separation and training need to know, declared by each architecture (no defaults are
  guessed elsewhere): ``model.stft_spec`` (:class:`StftSpec`: the STFT of the forward, which
  a tf-domain loss and the figures use too), ``model.framing`` (:class:`Framing`: padding and
  output-length quirks), ``model.audio_channels`` (1 or 2, or None: any count, channels handled as
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

import bsrnn.checks as checks
from bsrnn.errors import ConfigError, reject_unknown_keys

#: Keys of a ``src_mod`` preset that describe the run, not the network.
PRESET_KEYS = ("arch", "name")

#: What a config option is for, declared on its field (:func:`option`): ``network`` (the
#: default: it shapes the weights or the output), ``loss`` (the training loss the network
#: declares), ``runtime`` (how it runs: preferred chunk length, activation checkpointing) or
#: ``unused`` (accepted for compatibility with a foreign format, ignored here). Only
#: ``network`` options make two configs build different networks.
OPTION_ROLES = ("network", "loss", "runtime", "unused")


def option(default: Any = dataclasses.MISSING, *, role: str, **kwargs: Any) -> Any:
    """A config field whose :data:`OPTION_ROLES` role is ``role`` (a plain field is a
    ``network`` option): ``segment: int | None = option(None, role="runtime")``."""
    if role not in OPTION_ROLES:
        raise TypeError(f"unknown option role {role!r}: expected one of {OPTION_ROLES}")
    return dataclasses.field(default=default, metadata={"role": role}, **kwargs)


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


def is_exporting() -> bool:
    """Whether a graph is being exported (``torch.onnx.export`` or ``torch.export``): code
    paths that depend on a shape or the device (e.g. CPU chunking) take their plain form."""
    return bool(torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting())


#: STFT windows: ``"hann"`` (periodic Hann of ``win_length``) or ``"rect"`` (all ones, torch's
#: default when no window is given).
WINDOWS = ("hann", "rect")


@dataclass(frozen=True)
class StftSpec:
    """A network's STFT: ``n_fft``, ``hop_length``, ``win_length`` (default ``n_fft``; the
    window is zero-padded to ``n_fft`` on both sides, as torch does), ``window`` (``"hann"``,
    periodic, or ``"rect"``), ``normalized`` (frames scaled by ``n_fft ** -0.5``) and
    ``center`` (reflect padding of ``n_fft // 2`` on both sides); one-sided.

    The one place an STFT is computed: :meth:`stft` and :meth:`istft` (``torch.stft`` /
    ``torch.istft``), in float32 whatever the input's dtype (float64 stays float64).
    ``bsrnn.onnx_runtime`` computes the same frames in numpy from these fields.
    """

    n_fft: int
    hop_length: int
    win_length: int | None = None
    normalized: bool = False
    window: str = "hann"
    center: bool = True

    def __post_init__(self) -> None:
        if self.win_length is None:
            object.__setattr__(self, "win_length", self.n_fft)
        checks.choice("StftSpec.window", self.window, WINDOWS)
        checks.integer("StftSpec.n_fft", self.n_fft, minimum=1)
        checks.integer("StftSpec.hop_length", self.hop_length, minimum=1)
        checks.integer("StftSpec.win_length", self.win_length, minimum=1, maximum=self.n_fft)

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    def window_tensor(
        self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """The analysis/synthesis window ``[win_length]``."""
        if self.window == "rect":
            return torch.ones(self.win_length, device=device, dtype=dtype)
        return torch.hann_window(self.win_length, device=device, dtype=dtype)

    def _kwargs(self, x: torch.Tensor) -> dict[str, Any]:
        return {
            "n_fft": self.n_fft,
            "hop_length": self.hop_length,
            "win_length": self.win_length,
            "window": self.window_tensor(x.device, x.dtype),
            "center": self.center,
            "normalized": self.normalized,
            "onesided": True,
        }

    def stft(self, x: torch.Tensor) -> torch.Tensor:
        """Complex STFT: ``[..., samples] -> [..., n_fft // 2 + 1, frames]`` (complex64, or
        complex128 for float64 input)."""
        x = x if x.dtype == torch.float64 else x.float()
        lead = x.shape[:-1]
        spec = torch.stft(
            x.reshape(-1, x.shape[-1]), **self._kwargs(x), pad_mode="reflect", return_complex=True
        )
        return spec.reshape(*lead, *spec.shape[-2:])

    def istft(self, spec: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Inverse of :meth:`stft`: complex ``[..., F, frames] -> [..., samples]`` float32
        (float64 for complex128), ``length`` samples (None: ``(frames - 1) * hop_length`` with
        ``center``)."""
        if spec.dtype != torch.complex128:
            spec = spec.to(torch.complex64)
        lead = spec.shape[:-2]
        real = torch.float64 if spec.dtype == torch.complex128 else torch.float32
        kwargs = self._kwargs(spec.new_empty(0, dtype=real))
        wave = torch.istft(spec.reshape(-1, *spec.shape[-2:]), **kwargs, length=length)
        return wave.reshape(*lead, wave.shape[-1])

    def to_dict(self) -> dict[str, Any]:
        """Plain values (what ``model.json`` of an exported model stores)."""
        return dataclasses.asdict(self)


#: Values of :attr:`Framing.output_length`.
OUTPUT_LENGTHS = ("input", "frames")


@dataclass(frozen=True)
class Framing:
    """How a network's waveform forward frames its input, as data a runner reads.

    ``pad_to_even_frames``: the input is right-padded with zeros by ``pad = hop - T % hop``
    samples, one more hop if ``(T + pad) // hop`` is even (MSST's SCNet), and the output
    cropped back to ``T``. ``output_length``: ``"input"`` (the iSTFT returns ``T`` samples) or
    ``"frames"`` (``(frames - 1) * hop`` samples, MSST's Mel-RoFormer without
    ``match_input_audio_length``).
    """

    pad_to_even_frames: bool = False
    output_length: str = "input"

    def __post_init__(self) -> None:
        checks.choice("Framing.output_length", self.output_length, OUTPUT_LENGTHS)

    def padding(self, n_samples: int, hop_length: int) -> int:
        """Zeros added at the right of an input of ``n_samples`` (0 without a quirk)."""
        if not self.pad_to_even_frames:
            return 0
        pad = hop_length - n_samples % hop_length
        if ((n_samples + pad) // hop_length) % 2 == 0:
            pad += hop_length
        return pad

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class MultiResolutionSpec:
    """MSST's multi-resolution STFT loss options (its ``multi_stft_*`` model options):
    ``weight`` of the term, Hann ``window_sizes``, ``hop_size`` and ``normalized``."""

    weight: float = 1.0
    window_sizes: tuple[int, ...] = (4096, 2048, 1024, 512, 256)
    hop_size: int = 147
    normalized: bool = False

    def __post_init__(self) -> None:
        where = "MultiResolutionSpec"
        sizes = checks.integers(f"{where}.window_sizes", self.window_sizes, minimum=1)
        if not sizes:
            checks.fail(f"{where}.window_sizes", list(sizes), "at least one window size")
        object.__setattr__(self, "window_sizes", sizes)
        checks.integer(f"{where}.hop_size", self.hop_size, minimum=1)


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

    def __post_init__(self) -> None:
        q = checks.number(
            "LossPreference.q", self.q, above=0, maximum=1, expected="a quantile in (0, 1]"
        )
        object.__setattr__(self, "q", q)
        checks.boolean("LossPreference.coarse", self.coarse)


#: The check of a field by its annotation (containers are checked by the config itself).
_CHECK_BY_TYPE = {
    bool: checks.boolean,
    int: checks.integer,
    float: checks.number,
    str: lambda key, value: checks.text(key, value, expected="a string"),
}


def _check_type(key: str, value: Any, hint: Any) -> Any:
    """``value`` checked against a simple annotation (``int``, ``float``, ``bool``, ``str``,
    or a union of them with ``None``) by the :mod:`bsrnn.checks` function of its type; an int
    is widened to float where a float is expected."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is not type(None):
                try:
                    return _check_type(key, value, option)
                except ConfigError:
                    continue
        checks.fail(key, value, _describe(hint))
    check = _CHECK_BY_TYPE.get(hint)
    return value if check is None else check(key, value)


def _describe(hint: Any) -> str:
    args = typing.get_args(hint)
    if args:
        return " or ".join("null" if a is type(None) else _describe(a) for a in args)
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        hint, str(hint)
    )


@dataclass(frozen=True)
class ModelConfig:
    """Options every architecture has. Subclasses add their own fields (with defaults; an
    option that is not a network option declares its role with :func:`option`) and checks
    (``__post_init__`` calling ``super().__post_init__()``, with :mod:`bsrnn.checks`).

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
        targets = checks.names(f"{self.where}.targets", targets or (), expected="stem names")
        if not targets or len(set(targets)) != len(targets):
            checks.fail(f"{self.where}.targets", list(targets), "distinct stem names")
        object.__setattr__(self, "targets", targets)
        checks.integer(f"{self.where}.sample_rate", self.sample_rate, minimum=1)

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

    @classmethod
    def option_roles(cls) -> dict[str, str]:
        """``{option: role}``, each option's :data:`OPTION_ROLES` role as its field declares it
        (:func:`option`; ``network`` when it declares none)."""
        return {f.name: f.metadata.get("role", "network") for f in dataclasses.fields(cls)}

    @classmethod
    def network_options(cls) -> list[str]:
        """The options whose role is ``network`` (those that may change the network)."""
        return [name for name, role in cls.option_roles().items() if role == "network"]

    def inert_options(self) -> set[str]:
        """Options that cannot change this network: two configs that differ only in them build
        the same network. Every option whose declared role is not ``network``; an architecture
        may add the ones that its other values make inert (e.g. an attention size without
        attention heads) by extending this."""
        return {name for name, role in self.option_roles().items() if role != "network"}

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
    implement :meth:`core` (the network between the STFT and the iSTFT), :attr:`stft_spec` and
    :attr:`audio_channels`, and may override :attr:`framing`, :attr:`min_samples`,
    :attr:`segment_samples` and :meth:`check_mixture`.

    The waveform :meth:`forward` is the one definition of pad -> ``stft_spec.stft`` -> ``core``
    -> ``stft_spec.istft`` -> crop, which ``bsrnn.export`` and ``bsrnn.onnx_runtime`` repeat
    from the same declared fields.
    """

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
        """The network's STFT (what :meth:`forward` computes, a tf-domain loss compares, and
        the figures show)."""

    @property
    @abc.abstractmethod
    def audio_channels(self) -> int | None:
        """Channels the network takes: 1 (mono), 2 (stereo), or None (any count: channels are
        independent items)."""

    @property
    def framing(self) -> Framing:
        """The framing quirks of :meth:`forward` (none by default)."""
        return Framing()

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

    @abc.abstractmethod
    def core(self, spec: torch.Tensor) -> torch.Tensor:
        """The network on the spectrogram: mixture ``[B, C, F, frames, 2]`` float (real,
        imaginary on the last axis) -> stems ``[B, S, C, F, frames, 2]``, S =
        ``len(targets)``. Real tensors only (what ONNX exports)."""

    def check_mixture(self, mixture: torch.Tensor) -> None:
        """Raise a ConfigError for a mixture the network cannot take (``[B, C, samples]``
        with ``C`` its :attr:`audio_channels`, when it declares one)."""
        if mixture.dim() != 3:
            raise ConfigError(
                f"expected a mixture [batch, channels, samples], got shape {tuple(mixture.shape)}"
            )
        want = self.audio_channels
        if want is not None and mixture.shape[1] != want:
            raise ConfigError(
                f"this {type(self).__name__} takes {want}-channel mixtures [batch, {want}, "
                f"samples], got {tuple(mixture.shape)}"
            )

    def forward(self, mixture: torch.Tensor) -> ModelOutput:
        """``mixture [B, C, samples]`` -> :class:`ModelOutput` with ``waveforms [B, S, C,
        samples']`` (``samples' = samples`` unless ``framing.output_length == "frames"``) and
        complex ``stfts [B, S, C, F, frames]``."""
        self.check_mixture(mixture)
        spec_def, framing = self.stft_spec, self.framing
        n_samples = mixture.shape[-1]
        pad = framing.padding(n_samples, spec_def.hop_length)
        if pad:
            mixture = nn.functional.pad(mixture, (0, pad))
        spec = torch.view_as_real(spec_def.stft(mixture))  # [B, C, F, frames, 2]
        stems = self.core(spec).float()  # [B, S, C, F, frames, 2]
        if stems.stride(-1) != 1 or any(st % 2 for st in stems.stride()[:-1]):
            stems = stems.contiguous()
        est = torch.view_as_complex(stems)
        length = n_samples + pad if framing.output_length == "input" else None
        wave = spec_def.istft(est, length=length)
        if pad:
            wave = wave[..., :n_samples]
        return ModelOutput(waveforms=wave, stfts=est)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (a tied parameter counts once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
