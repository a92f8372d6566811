"""MSST's training augmentations (``augment=msst``): its documented full set, under its names.

The settings (:class:`MsstAugmentSettings`, config ``dset.augment``) mirror the ``augmentations``
block of Music-Source-Separation-Training's configs (its ``docs/augmentations.md``): example-level
keys (per-stem loudness, mixup of stems of one kind, MP3 compression of the mixture), the
per-source effects of ``all`` (every source) and the per-stem sections of ``stems`` (each key
overrides ``all`` for that stem). Every effect has a probability (0 turns it off) and its ranges.

Per source, in MSST's order: channel shuffle, time reversal (``random_inverse``), polarity;
audiomentations' pitch shift, seven-band EQ, tanh distortion, MP3 compression, Gaussian noise,
time stretch; pedalboard's reverb, chorus, phaser (MSST spells it ``phazer``), distortion,
pitch shift, resample, bitcrush (``bitcrash``), MP3 compressor. Then mixup (each probability of
``mixup_probs`` adds one more crop of the same stem from a random excerpt, itself augmented; the
crops are scaled by gains in ``mixup_loudness_min/max`` and averaged, as MSST does), then a
loudness gain per stem, then MP3 compression of the mixture alone.

Reproducibility: every decision and parameter is drawn from the example's generator. The
audiomentations transforms draw their parameters from Python's ``random`` and numpy's global
generator: each call runs with both seeded from the example's generator and restores their
state afterwards. The pedalboard effects get parameters drawn here.

The heavy effects need the optional extra ``augment`` (audiomentations, pedalboard,
fast-mp3-augment; ``pip install -e ".[augment]"``), imported only when an augmenter that uses
them is built.
"""

from __future__ import annotations

import copy
import importlib.util
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

import bsrnn.checks as checks
from bsrnn.data.augment import Augmenter
from bsrnn.errors import ConfigError

EXTRA_HINT = 'pip install -e ".[augment]"'
MP3_BACKENDS: tuple[str, ...] = ("fast-mp3-augment",)

# Per-source effects: probability key -> its range keys (low key, high key). Keys as MSST names
# them. Which library applies each: see _LIBRARY.
EFFECT_RANGES: dict[str, tuple[tuple[str, str], ...]] = {
    "channel_shuffle": (),
    "random_inverse": (),
    "random_polarity": (),
    "pitch_shift": (("pitch_shift_min_semitones", "pitch_shift_max_semitones"),),
    "seven_band_parametric_eq": (
        ("seven_band_parametric_eq_min_gain_db", "seven_band_parametric_eq_max_gain_db"),
    ),
    "tanh_distortion": (("tanh_distortion_min", "tanh_distortion_max"),),
    "mp3_compression": (("mp3_compression_min_bitrate", "mp3_compression_max_bitrate"),),
    "gaussian_noise": (("gaussian_noise_min_amplitude", "gaussian_noise_max_amplitude"),),
    "time_stretch": (("time_stretch_min_rate", "time_stretch_max_rate"),),
    "pedalboard_reverb": tuple(
        (f"pedalboard_reverb_{p}_min", f"pedalboard_reverb_{p}_max")
        for p in ("room_size", "damping", "wet_level", "dry_level", "width")
    ),
    "pedalboard_chorus": tuple(
        (f"pedalboard_chorus_{p}_min", f"pedalboard_chorus_{p}_max")
        for p in ("rate_hz", "depth", "centre_delay_ms", "feedback", "mix")
    ),
    "pedalboard_phazer": tuple(
        (f"pedalboard_phazer_{p}_min", f"pedalboard_phazer_{p}_max")
        for p in ("rate_hz", "depth", "centre_frequency_hz", "feedback", "mix")
    ),
    "pedalboard_distortion": (
        ("pedalboard_distortion_drive_db_min", "pedalboard_distortion_drive_db_max"),
    ),
    "pedalboard_pitch_shift": (
        ("pedalboard_pitch_shift_semitones_min", "pedalboard_pitch_shift_semitones_max"),
    ),
    "pedalboard_resample": (
        (
            "pedalboard_resample_target_sample_rate_min",
            "pedalboard_resample_target_sample_rate_max",
        ),
    ),
    "pedalboard_bitcrash": (
        ("pedalboard_bitcrash_bit_depth_min", "pedalboard_bitcrash_bit_depth_max"),
    ),
    "pedalboard_mp3_compressor": (
        (
            "pedalboard_mp3_compressor_pedalboard_mp3_compressor_min",
            "pedalboard_mp3_compressor_pedalboard_mp3_compressor_max",
        ),
    ),
}
AUDIOMENTATIONS_EFFECTS = (
    "pitch_shift",
    "seven_band_parametric_eq",
    "tanh_distortion",
    "mp3_compression",
    "gaussian_noise",
    "time_stretch",
)
PEDALBOARD_EFFECTS = tuple(e for e in EFFECT_RANGES if e.startswith("pedalboard_"))

# MSST's documented full set (docs/augmentations.md at ccc011a). `all` applies to every source;
# a stem's section overrides keys of `all` for that stem.
MSST_ALL: dict[str, Any] = {
    "channel_shuffle": 0.5,
    "random_inverse": 0.1,
    "random_polarity": 0.5,
    "mp3_compression": 0.01,
    "mp3_compression_min_bitrate": 32,
    "mp3_compression_max_bitrate": 320,
    "mp3_compression_backend": "fast-mp3-augment",
    "pedalboard_reverb": 0.01,
    "pedalboard_reverb_room_size_min": 0.1,
    "pedalboard_reverb_room_size_max": 0.9,
    "pedalboard_reverb_damping_min": 0.1,
    "pedalboard_reverb_damping_max": 0.9,
    "pedalboard_reverb_wet_level_min": 0.1,
    "pedalboard_reverb_wet_level_max": 0.9,
    "pedalboard_reverb_dry_level_min": 0.1,
    "pedalboard_reverb_dry_level_max": 0.9,
    "pedalboard_reverb_width_min": 0.9,
    "pedalboard_reverb_width_max": 1.0,
    "pedalboard_chorus": 0.01,
    "pedalboard_chorus_rate_hz_min": 1.0,
    "pedalboard_chorus_rate_hz_max": 7.0,
    "pedalboard_chorus_depth_min": 0.25,
    "pedalboard_chorus_depth_max": 0.95,
    "pedalboard_chorus_centre_delay_ms_min": 3.0,
    "pedalboard_chorus_centre_delay_ms_max": 10.0,
    "pedalboard_chorus_feedback_min": 0.0,
    "pedalboard_chorus_feedback_max": 0.5,
    "pedalboard_chorus_mix_min": 0.1,
    "pedalboard_chorus_mix_max": 0.9,
    "pedalboard_phazer": 0.01,
    "pedalboard_phazer_rate_hz_min": 1.0,
    "pedalboard_phazer_rate_hz_max": 10.0,
    "pedalboard_phazer_depth_min": 0.25,
    "pedalboard_phazer_depth_max": 0.95,
    "pedalboard_phazer_centre_frequency_hz_min": 200.0,
    "pedalboard_phazer_centre_frequency_hz_max": 12000.0,
    "pedalboard_phazer_feedback_min": 0.0,
    "pedalboard_phazer_feedback_max": 0.5,
    "pedalboard_phazer_mix_min": 0.1,
    "pedalboard_phazer_mix_max": 0.9,
    "pedalboard_distortion": 0.01,
    "pedalboard_distortion_drive_db_min": 1.0,
    "pedalboard_distortion_drive_db_max": 25.0,
    "pedalboard_pitch_shift": 0.01,
    "pedalboard_pitch_shift_semitones_min": -7.0,
    "pedalboard_pitch_shift_semitones_max": 7.0,
    "pedalboard_resample": 0.01,
    "pedalboard_resample_target_sample_rate_min": 4000.0,
    "pedalboard_resample_target_sample_rate_max": 44100.0,
    "pedalboard_bitcrash": 0.01,
    "pedalboard_bitcrash_bit_depth_min": 4.0,
    "pedalboard_bitcrash_bit_depth_max": 16.0,
    "pedalboard_mp3_compressor": 0.01,
    "pedalboard_mp3_compressor_pedalboard_mp3_compressor_min": 0.0,
    "pedalboard_mp3_compressor_pedalboard_mp3_compressor_max": 9.999,
}


def _stem(pitch: float, pitch_range: float, eq: float, eq_min: float, eq_max: float,
          tanh: float, tanh_max: float) -> dict[str, Any]:  # fmt: skip
    return {
        "pitch_shift": pitch,
        "pitch_shift_min_semitones": -pitch_range,
        "pitch_shift_max_semitones": pitch_range,
        "seven_band_parametric_eq": eq,
        "seven_band_parametric_eq_min_gain_db": eq_min,
        "seven_band_parametric_eq_max_gain_db": eq_max,
        "tanh_distortion": tanh,
        "tanh_distortion_min": 0.1,
        "tanh_distortion_max": tanh_max,
    }


MSST_STEMS: dict[str, dict[str, Any]] = {
    "vocals": _stem(0.1, 5.0, 0.25, -9.0, 9.0, 0.1, 0.7),
    "bass": _stem(0.1, 2.0, 0.25, -3.0, 6.0, 0.2, 0.5),
    "drums": _stem(0.33, 5.0, 0.25, -9.0, 9.0, 0.33, 0.6),
    "other": {
        "pitch_shift": 0.1,
        "pitch_shift_min_semitones": -4.0,
        "pitch_shift_max_semitones": 4.0,
        "gaussian_noise": 0.1,
        "gaussian_noise_min_amplitude": 0.001,
        "gaussian_noise_max_amplitude": 0.015,
        "time_stretch": 0.01,
        "time_stretch_min_rate": 0.8,
        "time_stretch_max_rate": 1.25,
    },
}

# What a key of `all` or of a stem section may be: every probability and range key above, plus
# the MP3 backend. A range a section leaves out, with its effect on, is an error (no silent
# default range).
EFFECT_KEYS: tuple[str, ...] = (
    *(k for effect, ranges in EFFECT_RANGES.items() for k in (effect, *sum(ranges, ()))),
    "mp3_compression_backend",
)


def check_effects(effects: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The effect settings ``effects`` (keys of :data:`EFFECT_KEYS`) checked: probabilities in
    [0, 1], ranges ``low <= high`` present for every effect that is on. ``where`` names the
    config path in messages (``dset.augment.all``)."""
    if not isinstance(effects, Mapping):
        checks.fail(where, effects, "a mapping of MSST effect keys")
    unknown = [k for k in effects if k not in EFFECT_KEYS]
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(repr(k) for k in unknown)} in {where}; valid keys: "
            f"{', '.join(EFFECT_RANGES)} and their ranges (docs/augmentations.md)"
        )
    out = dict(effects)
    for key, value in out.items():
        if key == "mp3_compression_backend":
            if value not in MP3_BACKENDS:
                checks.fail(
                    f"{where}.{key}",
                    value,
                    f"one of {', '.join(MP3_BACKENDS)} "
                    "(audiomentations 0.43's lameenc cannot compensate the encoder delay)",
                )
            continue
        out[key] = checks.number(f"{where}.{key}", value)
    for effect, ranges in EFFECT_RANGES.items():
        p = checks.probability(f"{where}.{effect}", out.get(effect, 0.0))
        if p == 0.0:
            continue
        for low, high in ranges:
            missing = [k for k in (low, high) if k not in out]
            if missing:
                raise ConfigError(f"{where}.{effect}={p} needs {', '.join(missing)}")
            checks.ordered(where, low, out[low], high, out[high])
    return out


def modules_needed(effect_sets: Sequence[Mapping[str, Any]], mp3_on_mixture: float) -> list[str]:
    """The optional modules the switched-on effects of ``effect_sets`` import."""
    on = {e for effects in effect_sets for e in EFFECT_RANGES if effects.get(e, 0.0) > 0.0}
    needed = []
    if on & set(AUDIOMENTATIONS_EFFECTS) or mp3_on_mixture > 0.0:
        needed.append("audiomentations")
    if on & set(PEDALBOARD_EFFECTS):
        needed.append("pedalboard")
    if "mp3_compression" in on or mp3_on_mixture > 0.0:
        needed.append("fast_mp3_augment")
    return needed


def missing_modules(names: Sequence[str]) -> list[str]:
    """Those of ``names`` that cannot be imported here."""
    return [n for n in names if importlib.util.find_spec(n) is None]


def _seeded(fn: Callable[[], np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """``fn()`` with Python's and numpy's global generators seeded from ``rng`` (the state they
    had is restored afterwards)."""
    seed = int(rng.integers(2**32))
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        return fn()
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    """``audio [C, T']`` cropped or zero-padded at the end to ``length`` samples, float32."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.shape[-1] > length:
        audio = audio[..., :length]
    elif audio.shape[-1] < length:
        audio = np.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(0, length - audio.shape[-1])])
    return np.ascontiguousarray(audio)


class MsstAugmenter(Augmenter):
    """MSST's augmentations (see the module), built from checked settings.

    Args:
        settings: the ``dset.augment`` settings (:class:`~bsrnn.data.settings.AugmentSettings`
            with ``name="msst"``).
        sample_rate: the audio's sample rate.
    """

    names = ("msst",)

    def __init__(self, settings: Any, sample_rate: int) -> None:
        self.settings = settings
        self.sample_rate = int(sample_rate)
        self._all = dict(settings.all)
        self._stems = {k: dict(v) for k, v in settings.stems.items()}
        needed = modules_needed(
            [self._all, *self._stems.values()], settings.mp3_compression_on_mixture
        )
        self._au = None  # imported only when needed (the settings checked they are there)
        self._pb = None
        if "audiomentations" in needed:
            import audiomentations

            self._au = audiomentations
        if "pedalboard" in needed:
            import pedalboard

            self._pb = pedalboard

    def effects_for(self, name: str) -> dict[str, Any]:
        """The effect settings of source ``name``: ``all``, overridden by its stem section."""
        return {**self._all, **self._stems.get(name, {})}

    # ---------------------------------------------------------------- per source
    def source(
        self,
        audio: np.ndarray,
        name: str,
        rng: np.random.Generator,
        draw_more: Callable[[], np.ndarray],
    ) -> np.ndarray:
        effects = self.effects_for(name)
        audio = self.apply_effects(audio, effects, rng)
        s = self.settings
        if s.mixup:
            parts = [audio]
            for p in s.mixup_probs:
                if rng.random() < p:
                    parts.append(self.apply_effects(draw_more(), effects, rng))
            gains = rng.uniform(s.mixup_loudness_min, s.mixup_loudness_max, size=len(parts))
            stacked = np.stack(parts) * gains.astype(np.float32)[:, None, None]
            audio = stacked.mean(axis=0, dtype=np.float32)
        return audio

    def apply_effects(
        self, audio: np.ndarray, effects: Mapping[str, Any], rng: np.random.Generator
    ) -> np.ndarray:
        """One source ``[C, T]`` through the effects that are on, in MSST's order; the result
        has the input's shape, float32."""
        length = audio.shape[-1]

        def on(effect: str) -> bool:
            p = effects.get(effect, 0.0)
            return p > 0.0 and rng.random() < p

        if on("channel_shuffle"):
            audio = np.ascontiguousarray(audio[::-1])
        if on("random_inverse"):
            audio = np.ascontiguousarray(audio[:, ::-1])
        if on("random_polarity"):
            audio = -audio
        for effect in AUDIOMENTATIONS_EFFECTS:
            if on(effect):
                transform = self._audiomentation(effect, effects)
                audio = _seeded(
                    lambda t=transform, a=audio: t(samples=a, sample_rate=self.sample_rate), rng
                )
        audio = fit_length(audio, length)
        for effect in PEDALBOARD_EFFECTS:
            if on(effect):
                audio = self._pedalboard(effect, effects, audio, rng)
        return fit_length(audio, length)

    def _audiomentation(self, effect: str, e: Mapping[str, Any]) -> Any:
        au = self._au
        if effect == "pitch_shift":
            low, high = e["pitch_shift_min_semitones"], e["pitch_shift_max_semitones"]
            return au.PitchShift(min_semitones=low, max_semitones=high, p=1.0)
        if effect == "seven_band_parametric_eq":
            low = e["seven_band_parametric_eq_min_gain_db"]
            high = e["seven_band_parametric_eq_max_gain_db"]
            return au.SevenBandParametricEQ(min_gain_db=low, max_gain_db=high, p=1.0)
        if effect == "tanh_distortion":
            low, high = e["tanh_distortion_min"], e["tanh_distortion_max"]
            return au.TanhDistortion(min_distortion=low, max_distortion=high, p=1.0)
        if effect == "mp3_compression":
            return self._mp3(
                e["mp3_compression_min_bitrate"],
                e["mp3_compression_max_bitrate"],
                e.get("mp3_compression_backend", MP3_BACKENDS[0]),
            )
        if effect == "gaussian_noise":
            low, high = e["gaussian_noise_min_amplitude"], e["gaussian_noise_max_amplitude"]
            return au.AddGaussianNoise(min_amplitude=low, max_amplitude=high, p=1.0)
        if effect == "time_stretch":
            low, high = e["time_stretch_min_rate"], e["time_stretch_max_rate"]
            return au.TimeStretch(min_rate=low, max_rate=high, leave_length_unchanged=True, p=1.0)
        raise AssertionError(effect)

    def _mp3(self, low: float, high: float, backend: str) -> Any:
        return self._au.Mp3Compression(
            min_bitrate=int(low), max_bitrate=int(high), backend=backend, p=1.0
        )

    def _pedalboard(
        self, effect: str, e: Mapping[str, Any], audio: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        pb = self._pb
        low_high = EFFECT_RANGES[effect]
        values = [float(rng.uniform(e[low], e[high])) for low, high in low_high]
        if effect == "pedalboard_reverb":
            room_size, damping, wet, dry, width = values
            plugin = pb.Reverb(
                room_size=room_size,
                damping=damping,
                wet_level=wet,
                dry_level=dry,
                width=width,
                freeze_mode=0.0,
            )
        elif effect == "pedalboard_chorus":
            rate, depth, delay, feedback, mix = values
            plugin = pb.Chorus(
                rate_hz=rate, depth=depth, centre_delay_ms=delay, feedback=feedback, mix=mix
            )
        elif effect == "pedalboard_phazer":
            rate, depth, centre, feedback, mix = values
            plugin = pb.Phaser(
                rate_hz=rate,
                depth=depth,
                centre_frequency_hz=centre,
                feedback=feedback,
                mix=mix,
            )
        elif effect == "pedalboard_distortion":
            plugin = pb.Distortion(drive_db=values[0])
        elif effect == "pedalboard_pitch_shift":
            plugin = pb.PitchShift(semitones=values[0])
        elif effect == "pedalboard_resample":
            plugin = pb.Resample(target_sample_rate=values[0])
        elif effect == "pedalboard_bitcrash":
            plugin = pb.Bitcrush(bit_depth=values[0])
        elif effect == "pedalboard_mp3_compressor":
            plugin = pb.MP3Compressor(vbr_quality=values[0])
        else:
            raise AssertionError(effect)
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        return pb.Pedalboard([plugin])(audio, float(self.sample_rate))

    # ---------------------------------------------------------------- example and mixture
    def example(
        self, stems: np.ndarray, target_rows: Sequence[int], rng: np.random.Generator
    ) -> np.ndarray:
        """A loudness gain per stem in ``[loudness_min, loudness_max]`` (when ``loudness``)."""
        s = self.settings
        if not s.loudness:
            return stems
        gains = rng.uniform(s.loudness_min, s.loudness_max, size=len(stems)).astype(np.float32)
        return (stems * gains[:, None, None]).astype(np.float32, copy=False)

    def mixture(self, mixture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """MP3 compression of the mixture alone, with probability
        ``mp3_compression_on_mixture`` (emulates a mixture downloaded as MP3)."""
        s = self.settings
        p = s.mp3_compression_on_mixture
        if p <= 0.0 or rng.random() >= p:
            return mixture
        transform = self._mp3(
            s.mp3_compression_on_mixture_bitrate_min,
            s.mp3_compression_on_mixture_bitrate_max,
            s.mp3_compression_on_mixture_backend,
        )
        out = _seeded(lambda: transform(samples=mixture, sample_rate=self.sample_rate), rng)
        return fit_length(out, mixture.shape[-1])

    def __repr__(self) -> str:
        return f"MsstAugmenter({self.settings!r})"


def msst_defaults() -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Copies of MSST's documented ``all`` and per-stem sections."""
    return copy.deepcopy(MSST_ALL), copy.deepcopy(MSST_STEMS)
