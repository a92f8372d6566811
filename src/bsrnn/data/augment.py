"""Source augmentations for training examples: the interface every augmentation set implements
(:class:`Augmenter`) and the reference's set, named in the dataset config (``augment=reference``).

Every augmentation draws from the ``numpy.random.Generator`` it is given, so an example is a
pure function of its seed. Audio is ``float32 [channels, samples]`` of one source, or
``float32 [sources, channels, samples]`` for the example-level ``silenttarget``. MSST's set
(``augment=msst``) is in :mod:`bsrnn.data.msst_augment`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

import bsrnn.checks as checks
from bsrnn.errors import ConfigError

# The choices of the ``augment`` config group (``dset.augment.name``): the dataset's own list
# ``dset.augmentations`` (the reference's behaviour), MSST's set, or nothing.
AUGMENT_SETS: tuple[str, ...] = ("reference", "msst", "none")

AUGMENTATIONS: tuple[str, ...] = (
    "randomcrop",
    "rescale",
    "rescale_db",
    "channelswap",
    "silentsource",
    "silenttarget",
)


@dataclass(frozen=True)
class AugmentationParams:
    """Parameters of the augmentations (config keys of the same names)."""

    rescale_min: float = 0.25  # linear gain range of `rescale`
    rescale_max: float = 1.25
    rescale_db_min: float = -10.0  # gain range of `rescale_db`, in dB
    rescale_db_max: float = 10.0
    p_channelswap: float = 0.5  # probability that `channelswap` swaps left and right
    p_silentsource: float = 0.1  # probability that `silentsource` zeroes a source
    p_silenttarget: float = 0.1  # probability that `silenttarget` removes a target

    def __post_init__(self) -> None:
        for key in ("rescale_min", "rescale_max", "rescale_db_min", "rescale_db_max"):
            object.__setattr__(self, key, checks.number(f"dset.{key}", getattr(self, key)))
        checks.number("dset.rescale_min", self.rescale_min, minimum=0.0)
        checks.ordered("dset", "rescale_min", self.rescale_min, "rescale_max", self.rescale_max)
        checks.ordered(
            "dset", "rescale_db_min", self.rescale_db_min, "rescale_db_max", self.rescale_db_max
        )
        for key in ("p_channelswap", "p_silentsource", "p_silenttarget"):
            object.__setattr__(self, key, checks.probability(f"dset.{key}", getattr(self, key)))


def rescale(audio: np.ndarray, rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    """Multiply by a gain drawn uniformly in ``[low, high]``."""
    return (audio * np.float32(rng.uniform(low, high))).astype(np.float32, copy=False)


def rescale_db(
    audio: np.ndarray, rng: np.random.Generator, low_db: float, high_db: float
) -> np.ndarray:
    """Multiply by a gain drawn uniformly in ``[low_db, high_db]`` dB."""
    gain = 10.0 ** (rng.uniform(low_db, high_db) / 20.0)
    return (audio * np.float32(gain)).astype(np.float32, copy=False)


def channelswap(audio: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """With probability ``p``, reverse the channel order (left/right swap for stereo)."""
    if audio.shape[0] > 1 and rng.random() < p:
        return np.ascontiguousarray(audio[::-1])
    return audio


def silentsource(audio: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """With probability ``p``, replace the source by silence."""
    if rng.random() < p:
        return np.zeros_like(audio)
    return audio


def silenttarget(
    stems: np.ndarray, target_rows: Sequence[int], rng: np.random.Generator, p: float
) -> np.ndarray:
    """With probability ``p``, silence one of the target rows of ``stems [S, C, T]`` (chosen
    uniformly): the target is removed from the mixture (the sum of the stems) and its reference
    becomes zeros. Returns ``stems`` unchanged or a copy."""
    if not target_rows or rng.random() >= p:
        return stems
    row = target_rows[int(rng.integers(len(target_rows)))]
    out = stems.copy()
    out[row] = 0.0
    return out


def crop_start(length: int, seq_len: int, rng: np.random.Generator | None) -> int:
    """Start of a ``seq_len`` crop inside ``length`` samples: uniform when ``rng`` is given,
    else the centred crop (the deterministic examples of ``fast_tr``)."""
    if seq_len > length:
        raise ValueError(f"cannot crop {seq_len} samples out of {length}")
    if rng is None:
        return (length - seq_len) // 2
    return int(rng.integers(0, length - seq_len + 1))


class Augmenter:
    """What a training example goes through; this base class changes nothing (``augment=none``).

    :class:`~bsrnn.data.datasets.TrainingExamples` reads every source's crop first, then calls
    :meth:`source` for each source in order, :meth:`example` on the stacked sources, and
    :meth:`mixture` on their (peak-normalised) sum. Each draws only from ``rng``.
    """

    names: tuple[str, ...] = ()

    def source(
        self,
        audio: np.ndarray,
        name: str,
        rng: np.random.Generator,
        draw_more: Callable[[], np.ndarray],
    ) -> np.ndarray:
        """Augment one source ``audio [C, T]`` named ``name``; ``draw_more()`` reads another
        random crop of the same source (from another excerpt) for mixing stems of one kind."""
        return audio

    def example(
        self, stems: np.ndarray, target_rows: Sequence[int], rng: np.random.Generator
    ) -> np.ndarray:
        """Augment the stacked sources ``stems [S, C, T]`` (``target_rows``: the targets)."""
        return stems

    def mixture(self, mixture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augment the mixture ``[C, T]`` alone (the references stay as they are)."""
        return mixture

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SourceAugmenter(Augmenter):
    """The augmentations named in ``names``, validated at construction (``augment=reference``).

    ``randomcrop`` is accepted for compatibility with the reference's config lists but is always
    on: the crop position of a training example is always uniform (see :func:`crop_start`),
    listed or not. ``silenttarget`` acts on a whole example (:meth:`silence_target`); the others
    transform each source's waveform independently, in the listed order (:meth:`__call__`).
    """

    def __init__(self, names: Sequence[str] = (), params: AugmentationParams | None = None) -> None:
        if isinstance(names, str):
            names = [names]
        unknown = [n for n in names if n not in AUGMENTATIONS]
        if unknown:
            raise ConfigError(
                f"unknown augmentation(s) {', '.join(repr(n) for n in unknown)}; "
                f"valid augmentations: {', '.join(AUGMENTATIONS)}"
            )
        self.names = tuple(names)
        self.params = params or AugmentationParams()
        self._waveform = tuple(n for n in self.names if n not in ("randomcrop", "silenttarget"))
        self._silent_target = "silenttarget" in self.names

    def __call__(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augment one source ``[channels, samples]``."""
        p = self.params
        for name in self._waveform:
            if name == "rescale":
                audio = rescale(audio, rng, p.rescale_min, p.rescale_max)
            elif name == "rescale_db":
                audio = rescale_db(audio, rng, p.rescale_db_min, p.rescale_db_max)
            elif name == "channelswap":
                audio = channelswap(audio, rng, p.p_channelswap)
            elif name == "silentsource":
                audio = silentsource(audio, rng, p.p_silentsource)
        return audio

    def silence_target(
        self, stems: np.ndarray, target_rows: Sequence[int], rng: np.random.Generator
    ) -> np.ndarray:
        """Apply ``silenttarget`` (when listed) to the augmented ``stems [S, C, T]``."""
        if not self._silent_target:
            return stems
        return silenttarget(stems, target_rows, rng, self.params.p_silenttarget)

    def source(
        self,
        audio: np.ndarray,
        name: str,
        rng: np.random.Generator,
        draw_more: Callable[[], np.ndarray],
    ) -> np.ndarray:
        return self(audio, rng)

    def example(
        self, stems: np.ndarray, target_rows: Sequence[int], rng: np.random.Generator
    ) -> np.ndarray:
        return self.silence_target(stems, target_rows, rng)

    def __repr__(self) -> str:
        return f"SourceAugmenter({list(self.names)!r}, {self.params!r})"
