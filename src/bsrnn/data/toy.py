"""A small synthetic stand-in for MUSDB18-HQ: short songs with four separable stems.

Each song has a tempo, key, mode and chord progression; its stems are
- vocals: sung phrases (with rests) from a band-limited glottal-like harmonic source with
  vibrato, glides, breath noise and consonant bursts, shaped by vowel formant resonances;
- bass: plucked or synth bass lines on the chord roots (40-200 Hz fundamentals + harmonics);
- drums: kick, snare, hi-hats (and fills, crashes) on genre patterns, with humanised timing;
- other: pads, piano-like comping and arpeggios on the chords.
They overlap in frequency like real music and vary across songs (tempo, key, timbre, level,
panning). Everything derives from one seed: the same parameters give the same files.

The output has the MUSDB18-HQ layout: ``<root>/{train,test}/<track>/{mixture,vocals,bass,
drums,other}.wav``, stereo float32 WAV, ``mixture = vocals + bass + drums + other`` exactly
(in that order, in float32), mixture peak below 1.

The generator only ever writes into a folder it made: a missing or empty folder, or one holding
its record ``toy.json`` (written before any track, so an interrupted run can be completed). Any
other folder is refused with a :class:`~bsrnn.errors.DatasetError`, never overwritten.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import signal
from tqdm import tqdm

import bsrnn.checks as checks
from bsrnn.audio import audio_info, write_audio
from bsrnn.data.tracks import MIXTURE, MUSDB_STEMS
from bsrnn.errors import AudioError, DatasetError
from bsrnn.files import write_text_atomic

log = logging.getLogger(__name__)

PARAMS_FILE = "toy.json"
_SPLIT_IDS = {"train": 0, "test": 1}

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
# Chord progressions as scale degrees (0 = tonic), one chord per bar or two.
PROGRESSIONS_MAJOR = ((0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 4, 3), (0, 1, 4, 0))
PROGRESSIONS_MINOR = ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 5, 3, 4), (0, 3, 6, 2))
# Vowel formants (Hz) and bandwidths for a generic voice: a, e, i, o, u.
VOWELS = (
    ((730, 1090, 2440), (90, 110, 160)),
    ((530, 1840, 2480), (70, 100, 150)),
    ((300, 2250, 3000), (50, 100, 170)),
    ((570, 840, 2410), (80, 90, 150)),
    ((330, 870, 2240), (60, 90, 140)),
)
# 16-step drum patterns: (kick, snare, hat) step lists.
DRUM_PATTERNS = {
    "rock": ((0, 8, 10), (4, 12), tuple(range(0, 16, 2))),
    "four": ((0, 4, 8, 12), (4, 12), (2, 6, 10, 14)),
    "halftime": ((0, 3, 10), (8,), tuple(range(0, 16, 2))),
    "break": ((0, 6, 10), (4, 12), tuple(range(16))),
    "shuffle": ((0, 7, 10), (4, 12), (0, 3, 4, 7, 8, 11, 12, 15)),
}


@dataclass(frozen=True)
class ToyParams:
    """Parameters of the stand-in dataset (config ``dset.toy``)."""

    n_train: int = 12  # tracks in train/ (the validation tracks are taken out of these)
    n_test: int = 4  # tracks in test/
    min_duration: float = 10.0  # track durations are uniform in [min_duration, max_duration] s
    max_duration: float = 14.0
    seed: int = 0

    def __post_init__(self) -> None:
        where = "dset.toy"
        checks.integer(f"{where}.n_train", self.n_train, minimum=1)
        checks.integer(f"{where}.n_test", self.n_test, minimum=0)
        checks.integer(f"{where}.seed", self.seed)
        low = checks.number(f"{where}.min_duration", self.min_duration, minimum=2.0)
        high = checks.number(f"{where}.max_duration", self.max_duration, minimum=2.0)
        checks.ordered(where, "min_duration", low, "max_duration", high)
        object.__setattr__(self, "min_duration", low)
        object.__setattr__(self, "max_duration", high)


def track_names(params: ToyParams) -> dict[str, list[str]]:
    """Folder names of the generated tracks, per subset."""
    return {
        "train": [f"toy_train_{i:02d}" for i in range(params.n_train)],
        "test": [f"toy_test_{i:02d}" for i in range(params.n_test)],
    }


# --------------------------------------------------------------------------- signal helpers
def _midi_hz(midi: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


def _smooth(x: np.ndarray, tau: float, sr: int) -> np.ndarray:
    """One-pole low-pass (time constant ``tau`` seconds), starting from ``x[0]``."""
    a = 1.0 - np.exp(-1.0 / max(tau * sr, 1.0))
    return signal.lfilter([a], [1.0, a - 1.0], x, zi=[(1.0 - a) * x[0]])[0]


def _pan(mono: np.ndarray, pan: float) -> np.ndarray:
    """Constant-power pan, ``pan`` in [-1, 1] -> ``[2, T]``."""
    theta = (pan + 1.0) * np.pi / 4.0
    return np.stack([mono * np.cos(theta), mono * np.sin(theta)])


def _add(out: np.ndarray, at: int, x: np.ndarray) -> None:
    """Add ``x [..., n]`` into ``out [..., T]`` at sample ``at`` (clipped to the buffer)."""
    if at >= out.shape[-1]:
        return
    n = min(x.shape[-1], out.shape[-1] - at)
    out[..., at : at + n] += x[..., :n]


def _partials(
    f0: float, n: int, sr: int, amps: np.ndarray, decays: np.ndarray, ratios: np.ndarray
) -> np.ndarray:
    """Sum of decaying sinusoids ``sum_k amps_k exp(-t decays_k) sin(2 pi ratios_k f0 t)``."""
    keep = ratios * f0 < 0.45 * sr
    t = np.arange(n, dtype=np.float32) / np.float32(sr)
    phase = np.outer((2 * np.pi * ratios[keep] * f0).astype(np.float32), t)  # float32: < 1e-3 rad
    env = np.exp(-np.outer(decays[keep].astype(np.float32), t))
    return amps[keep].astype(np.float32) @ (env * np.sin(phase))


_TABLE = 4096


def _periodic(f0: float, n: int, sr: int, amps: np.ndarray) -> np.ndarray:
    """``n`` samples of the periodic tone ``sum_k amps_k sin(2 pi k f0 t)`` (harmonics above
    0.45 sr dropped), read from a one-period wavetable: the cost does not grow with the
    number of harmonics."""
    k = np.arange(1, len(amps) + 1)
    amps = np.where(k * f0 < 0.45 * sr, amps, 0.0)
    x = np.arange(_TABLE + 1) / _TABLE
    table = amps @ np.sin(2 * np.pi * np.outer(k, x))
    return np.interp(np.mod(f0 * np.arange(n) / sr, 1.0), x, table).astype(np.float32)


def _envelope(n: int, sr: int, attack: float, release: float, hold: int) -> np.ndarray:
    """Linear attack, flat until ``hold`` samples, then an exponential release; the last 5 ms
    fade to zero so that a note never ends with a click."""
    t = np.arange(n) / sr
    env = np.minimum(1.0, t / max(attack, 1e-4))
    tail = np.arange(n) - hold
    env = np.where(tail > 0, env * np.exp(-np.maximum(tail, 0) / (release * sr)), env)
    fade = min(n, int(0.005 * sr))
    env[n - fade :] *= np.linspace(1.0, 0.0, fade)
    return env.astype(np.float32)


# --------------------------------------------------------------------------- the song
@dataclass
class _Song:
    sr: int
    n: int  # samples
    beat: float  # seconds per beat
    root: int  # MIDI pitch class of the key (0 = C)
    scale: tuple[int, ...]
    chords: list[tuple[int, ...]]  # per bar: the chord's scale degrees (triad or seventh)

    @property
    def bar(self) -> float:
        return 4 * self.beat

    @property
    def n_bars(self) -> int:
        return int(np.ceil(self.n / self.sr / self.bar))

    def pitch(self, degree: int, base: int) -> int:
        """MIDI pitch of scale ``degree`` counted from the tonic at or above ``base``."""
        tonic = base + (self.root - base) % 12
        return tonic + 12 * (degree // 7) + self.scale[degree % 7]

    def chord_at(self, time: float) -> tuple[int, ...]:
        return self.chords[min(int(time / self.bar), len(self.chords) - 1)]


def _make_song(rng: np.random.Generator, n: int, sr: int) -> _Song:
    minor = rng.random() < 0.5
    progression = (PROGRESSIONS_MINOR if minor else PROGRESSIONS_MAJOR)[rng.integers(5)]
    bars_per_chord = 1 if rng.random() < 0.6 else 2
    beat = 60.0 / rng.uniform(84, 140)
    n_bars = int(np.ceil(n / sr / (4 * beat)))
    seventh = rng.random() < 0.4
    chords = []
    for b in range(n_bars):
        d = progression[(b // bars_per_chord) % len(progression)]
        chords.append((d, d + 2, d + 4, d + 6) if seventh else (d, d + 2, d + 4))
    return _Song(sr, n, beat, int(rng.integers(12)), MINOR if minor else MAJOR, chords)


# --------------------------------------------------------------------------- vocals
def _vocals(rng: np.random.Generator, song: _Song) -> np.ndarray:
    sr, n, beat = song.sr, song.n, song.beat
    duration = n / sr
    center = int(rng.integers(55, 68))  # tessitura
    formant_scale = rng.uniform(0.9, 1.18)
    vowels = rng.choice(len(VOWELS), size=3, replace=False)
    # --- melody: phrases of 1-3 bars, rests between them
    notes = []  # (start s, end s, midi, velocity, vowel)
    degree = int(rng.integers(7, 11))
    bar = 0
    while bar * song.bar < duration - 0.5:
        n_bars = int(rng.choice([1, 2, 2, 3]))
        pickup = float(rng.choice([0.0, 0.0, 0.5, 1.0])) if notes else 0.0
        t = bar * song.bar + pickup * beat
        end = min((bar + n_bars) * song.bar - rng.uniform(0.5, 1.5) * beat, duration - 0.2)
        while t < end - 0.15 * beat:
            length = min(float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0])) * beat, end - t)
            chord = song.chord_at(t)
            step = int(rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3]))
            degree = int(np.clip(degree + step, 4, 13))
            if (degree - chord[0]) % 2 and rng.random() < 0.6:  # lean on chord tones
                degree += int(rng.choice([-1, 1]))
            midi = song.pitch(degree, center - 7)
            midi += 12 * ((center - 8 - midi) // 12 + 1) if midi < center - 8 else 0
            midi -= 12 * ((midi - center - 10) // 12 + 1) if midi > center + 10 else 0
            gap = min(0.06, 0.15 * length)
            notes.append(
                (t, t + length - gap, midi, rng.uniform(0.7, 1.0), int(rng.choice(vowels)))
            )
            t += length
        bar += n_bars + (1 if rng.random() < 0.15 else 0)
    # --- control signals at audio rate
    starts = np.array([int(nt[0] * sr) for nt in notes])
    current = np.maximum(np.searchsorted(starts, np.arange(n), side="right") - 1, 0)
    pitch = np.array([nt[2] for nt in notes], dtype=np.float64)[current]  # held through rests
    vowel = np.array([nt[4] for nt in notes])[current]
    gate = np.zeros(n)
    since = np.zeros(n)  # seconds since the note's onset (vibrato fades in)
    for (_start, end, _midi, vel, _v), a in zip(notes, starts):
        b = min(int(end * sr), n)
        gate[a:b] = vel
        since[a:b] = np.arange(b - a) / sr
    pitch = _smooth(pitch, rng.uniform(0.02, 0.05), sr)  # portamento
    t = np.arange(n) / sr
    vib_depth = rng.uniform(0.2, 0.5)  # semitones
    vibrato = (
        vib_depth * np.sin(2 * np.pi * rng.uniform(4.5, 6.5) * t) * np.clip(since / 0.35, 0, 1)
    )
    drift = _smooth(rng.standard_normal(n), 0.15, sr)  # slow pitch wander of about 8 cents
    f0 = _midi_hz(pitch + vibrato + 0.08 * drift / max(float(np.std(drift)), 1e-12))
    env = _smooth(_smooth(gate, 0.03, sr), 0.02, sr).astype(np.float32)
    # --- glottal-like source: harmonics with a spectral tilt, plus breath noise
    phase = np.mod(2 * np.pi * np.cumsum(f0) / sr, 2 * np.pi).astype(np.float32)
    tilt = rng.uniform(1.0, 1.6)
    n_harm = int(min(60, 9000.0 / f0.max()))
    source = np.zeros(n, dtype=np.float32)
    for k in range(1, n_harm + 1):
        source += np.float32(k**-tilt) * np.sin(np.float32(k) * phase)
    source += np.float32(rng.uniform(0.02, 0.06)) * rng.standard_normal(n).astype(np.float32)
    source *= env
    # --- vowel formants: parallel resonators, vowels cross-faded between notes
    out = np.zeros(n)
    for v in np.unique(vowel):
        freqs, bands = VOWELS[v]
        filtered = np.zeros(n)
        for j, (f, bw) in enumerate(zip(freqs, bands)):
            f = min(f * formant_scale, 0.45 * sr)
            b, a = signal.iirpeak(f / (sr / 2), f / bw)
            filtered += (1.0, 0.5, 0.3)[j] * signal.lfilter(b, a, source)
        out += _smooth((vowel == v).astype(np.float64), 0.04, sr) * filtered
    out += 0.05 * source  # a little direct sound for brightness
    # --- consonants: short high-passed noise bursts at some onsets
    hp_b, hp_a = signal.butter(2, 3500 / (sr / 2), "highpass")
    burst_len = int(0.04 * sr)
    burst = signal.lfilter(hp_b, hp_a, rng.standard_normal(burst_len)) * np.exp(
        -np.arange(burst_len) / (0.012 * sr)
    )
    for start, _end, _midi, vel, _v in notes:
        if rng.random() < 0.4:
            _add(out, max(0, int(start * sr) - burst_len // 2), 0.4 * vel * burst)
    return _pan(out.astype(np.float32), rng.uniform(-0.15, 0.15))


# --------------------------------------------------------------------------- bass
def _bass(rng: np.random.Generator, song: _Song) -> np.ndarray:
    sr, beat = song.sr, song.beat
    out = np.zeros(song.n, dtype=np.float32)
    style = rng.choice(["quarters", "eighths", "root_fifth", "walking"])
    tau = rng.uniform(0.25, 1.2)  # pluck decay
    bright = rng.uniform(2.0, 8.0)  # how fast the upper harmonics die out
    odd = rng.random() < 0.3  # square-ish timbre
    k = np.arange(1, 31, dtype=np.float64)
    amps = k ** -rng.uniform(0.9, 1.5) * (np.where(k % 2 == 0, 0.3, 1.0) if odd else 1.0)
    base = 28  # E1
    for bar in range(song.n_bars):
        chord = song.chords[bar]
        root = song.pitch(chord[0], base)
        if root > 45:
            root -= 12
        if style == "quarters":
            steps = [(i, 1.0, root) for i in range(4)]
        elif style == "eighths":
            steps = [(i / 2, 0.5, root + (12 if i % 4 == 3 else 0)) for i in range(8)]
        elif style == "root_fifth":
            steps = [(0, 1.5, root), (1.5, 0.5, root + 7), (2, 1.0, root), (3, 1.0, root + 7)]
        else:
            walk = [song.pitch(chord[0] + d, base) for d in (0, 2, 4, 5)]
            steps = [(i, 1.0, min(p, 52)) for i, p in enumerate(walk)]
        for pos, length, midi in steps:
            start = (bar * 4 + pos) * beat + rng.normal(0, 0.004)
            if start < 0 or start * sr >= song.n:
                continue
            n_note = int((length * beat * 0.95 + 0.05) * sr)
            f0 = float(_midi_hz(midi))
            bright_tone = _periodic(f0, n_note, sr, amps)
            dark_tone = _periodic(f0, n_note, sr, amps * np.exp(-0.35 * (k - 1)))
            t = np.arange(n_note, dtype=np.float32) / np.float32(sr)
            tone = dark_tone + (bright_tone - dark_tone) * np.exp(-t * np.float32(bright))
            tone *= np.exp(-t / np.float32(tau))
            tone *= _envelope(n_note, sr, 0.004, 0.02, int(length * beat * 0.95 * sr))
            _add(out, int(start * sr), rng.uniform(0.75, 1.0) * tone)
    return _pan(out, rng.uniform(-0.1, 0.1))


# --------------------------------------------------------------------------- drums
def _drum_sounds(rng: np.random.Generator, sr: int) -> dict[str, np.ndarray]:
    def t_(sec: float) -> np.ndarray:
        return np.arange(int(sec * sr)) / sr

    t = t_(0.5)
    f_hi, f_lo = rng.uniform(110, 180), rng.uniform(42, 60)
    sweep = f_lo + (f_hi - f_lo) * np.exp(-t / rng.uniform(0.02, 0.05))
    kick = np.sin(2 * np.pi * np.cumsum(sweep) / sr) * np.exp(-t / rng.uniform(0.12, 0.3))
    kick[: int(0.003 * sr)] += rng.standard_normal(int(0.003 * sr)) * 0.5  # beater click
    t = t_(0.4)
    bp_b, bp_a = signal.butter(2, [rng.uniform(900, 1500) / (sr / 2), 7000 / (sr / 2)], "bandpass")
    noise = signal.lfilter(bp_b, bp_a, rng.standard_normal(t.size))
    snare = 0.6 * np.sin(2 * np.pi * rng.uniform(170, 240) * t) * np.exp(-t / 0.05)
    snare += 1.2 * noise * np.exp(-t / rng.uniform(0.07, 0.16))
    hp_b, hp_a = signal.butter(3, rng.uniform(6000, 9000) / (sr / 2), "highpass")
    t = t_(0.5)
    hiss = signal.lfilter(hp_b, hp_a, rng.standard_normal(t.size))
    hat = hiss * np.exp(-t / rng.uniform(0.02, 0.05))
    open_hat = hiss * np.exp(-t / rng.uniform(0.15, 0.3))
    t = t_(2.0)
    metal = np.sign(np.sin(2 * np.pi * np.outer(rng.uniform(300, 900, 6), t))).sum(0)
    crash_b, crash_a = signal.butter(2, 4000 / (sr / 2), "highpass")
    crash = signal.lfilter(crash_b, crash_a, 0.15 * metal + rng.standard_normal(t.size))
    crash *= np.exp(-t / rng.uniform(0.6, 1.2)) * 0.5
    t = t_(0.5)
    toms = {}
    for name, f in (("tom_hi", rng.uniform(160, 220)), ("tom_lo", rng.uniform(85, 130))):
        toms[name] = np.sin(2 * np.pi * np.cumsum(f * (1 + 0.5 * np.exp(-t / 0.03))) / sr)
        toms[name] *= np.exp(-t / 0.18)
    sounds = {"kick": kick, "snare": snare, "hat": 0.35 * hat, "open_hat": 0.3 * open_hat}
    sounds.update(crash=crash, **toms)
    for v in sounds.values():  # fade the last quarter out: no click at the cut
        fade = v.size // 4
        v[-fade:] *= 0.5 + 0.5 * np.cos(np.linspace(0.0, np.pi, fade))
    return {k: v.astype(np.float32) for k, v in sounds.items()}


def _drums(rng: np.random.Generator, song: _Song) -> np.ndarray:
    sr = song.sr
    sounds = _drum_sounds(rng, sr)
    kick_steps, snare_steps, hat_steps = DRUM_PATTERNS[rng.choice(list(DRUM_PATTERNS))]
    step = song.beat / 4
    swing = rng.uniform(0.0, 0.12) * step
    triggers = {name: np.zeros(song.n, dtype=np.float32) for name in sounds}

    def hit(name: str, time: float, vel: float) -> None:
        time += rng.normal(0, 0.003)
        i = int(round(time * sr))
        if 0 <= i < song.n:
            triggers[name][i] += vel

    for bar in range(song.n_bars):
        t0 = bar * song.bar
        fill = bar % 4 == 3 and rng.random() < 0.6
        for s in range(16):
            time = t0 + s * step + (swing if s % 2 else 0.0)
            if fill and s >= 8:
                if s % 2 == 0 or rng.random() < 0.5:
                    hit("tom_hi" if s < 12 else "tom_lo", time, rng.uniform(0.6, 0.9))
                continue
            if s in kick_steps or (s == 14 and rng.random() < 0.2):
                hit("kick", time, rng.uniform(0.85, 1.0))
            if s in snare_steps:
                hit("snare", time, rng.uniform(0.8, 1.0))
            elif s % 2 and rng.random() < 0.08:
                hit("snare", time, rng.uniform(0.15, 0.3))  # ghost note
            if s in hat_steps:
                accent = 1.0 if s % 4 == 0 else rng.uniform(0.5, 0.8)
                hit("open_hat" if s == 14 and rng.random() < 0.3 else "hat", time, accent)
        if bar % 4 == 0 and rng.random() < 0.5:
            hit("crash", t0, rng.uniform(0.6, 0.9))
    pans = {"kick": 0.0, "snare": rng.uniform(-0.1, 0.1), "hat": rng.uniform(0.2, 0.5)}
    pans.update(open_hat=pans["hat"], crash=-pans["hat"], tom_hi=-0.3, tom_lo=0.3)
    out = np.zeros((2, song.n), dtype=np.float32)
    for name, trig in triggers.items():
        if trig.any():
            mono = signal.fftconvolve(trig, sounds[name])[: song.n].astype(np.float32)
            out += _pan(mono, pans[name])
    return out


# --------------------------------------------------------------------------- other
def _voicing(song: _Song, chord: tuple[int, ...], low: int) -> list[int]:
    return sorted(song.pitch(d, low) for d in chord)


def _other(rng: np.random.Generator, song: _Song) -> np.ndarray:
    sr, beat = song.sr, song.beat
    out = np.zeros((2, song.n), dtype=np.float32)
    low = int(rng.integers(50, 58))
    parts = ["pad", "comp"][int(rng.integers(2))], *(["arp"] if rng.random() < 0.6 else [])
    k = np.arange(1, 13, dtype=np.float64)
    kc = np.arange(1, 9, dtype=np.float64)
    for part in parts:
        if part == "pad":
            amps = k ** -rng.uniform(1.4, 2.2)
            attack, detune = rng.uniform(0.1, 0.5), rng.uniform(0.002, 0.006)
            for bar in range(song.n_bars):
                n_note = int((song.bar + 0.3) * sr)
                env = _envelope(n_note, sr, attack, 0.1, int(song.bar * sr))
                for midi in _voicing(song, song.chords[bar], low):
                    f0 = float(_midi_hz(midi))
                    for ch, d in enumerate((1 - detune, 1 + detune)):
                        tone = _periodic(f0 * d, n_note, sr, amps)
                        _add(out[ch], int(bar * song.bar * sr), 0.5 * env * tone)
        elif part == "comp":
            inharm = rng.uniform(1e-4, 5e-4)
            ratios = kc * np.sqrt(1 + inharm * kc**2)
            amps = kc ** -rng.uniform(1.0, 1.8)
            rhythm = (
                [(1.0, 2.0), (3.0, 2.0)]
                if rng.random() < 0.5
                else [(0, 1.5), (1.5, 1.0), (2.5, 1.5)]
            )
            pan = rng.uniform(-0.5, 0.5)
            for bar in range(song.n_bars):
                for pos, length in rhythm:
                    start = int(((bar * 4 + pos) * beat + rng.normal(0, 0.004)) * sr)
                    n_note = int(length * beat * sr)
                    env = _envelope(n_note, sr, 0.003, 0.08, int(0.85 * n_note))
                    for midi in _voicing(song, song.chords[bar], low):
                        f0 = float(_midi_hz(midi))
                        tone = _partials(f0, n_note, sr, amps, 1.5 + 0.6 * kc, ratios)
                        _add(out, max(start, 0), _pan(0.5 * env * tone, pan))
        else:  # arpeggio, one octave up, ping-pong panned
            sub = float(rng.choice([0.25, 0.5]))
            amps = np.array([1.0, 0.3, 0.12, 0.05])
            pan = rng.uniform(0.3, 0.7)
            idx = 0
            for s in range(int(song.n / sr / (sub * beat))):
                time = s * sub * beat
                notes = _voicing(song, song.chord_at(time), low + 12)
                midi = notes[idx % len(notes)]
                idx += 1
                n_note = int(0.4 * sr)
                tone = _partials(
                    float(_midi_hz(midi)), n_note, sr, amps, np.full(4, 8.0), np.arange(1.0, 5.0)
                )
                tone *= _envelope(n_note, sr, 0.002, 0.1, n_note)
                _add(out, int(time * sr), _pan(0.35 * tone, pan if s % 2 else -pan))
    return out


# --------------------------------------------------------------------------- tracks
def synthesize_track(
    seed: int | np.random.SeedSequence, duration: float, sample_rate: int = 44100
) -> dict[str, np.ndarray]:
    """One song: ``{stem: float32 [2, T]}`` for vocals, bass, drums, other and mixture."""
    rng = np.random.default_rng(seed)
    n = int(round(duration * sample_rate))
    song = _make_song(rng, n, sample_rate)
    stems = {
        "vocals": _vocals(rng, song),
        "bass": _bass(rng, song),
        "drums": _drums(rng, song),
        "other": _other(rng, song),
    }
    # levels: RMS per stem around a per-song balance, then the mixture peak in [0.5, 0.9]
    level_db = {"vocals": -16.0, "bass": -18.0, "drums": -18.0, "other": -20.0}
    for name, audio in stems.items():
        rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
        if rms < 1e-6:
            raise RuntimeError(f"toy generator produced a silent {name} stem (seed {seed})")
        gain = 10 ** ((level_db[name] + rng.uniform(-4, 4)) / 20) / rms
        stems[name] = (audio * gain).astype(np.float32)
    mixture = stems["vocals"] + stems["bass"] + stems["drums"] + stems["other"]
    peak = max(float(np.max(np.abs(mixture))), *(float(np.max(np.abs(a))) for a in stems.values()))
    scale = np.float32(rng.uniform(0.5, 0.9) / peak)
    stems = {k: (v * scale).astype(np.float32) for k, v in stems.items()}
    stems[MIXTURE] = stems["vocals"] + stems["bass"] + stems["drums"] + stems["other"]
    return stems


def _track_seed(params: ToyParams, subset: str, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(params.seed), _SPLIT_IDS[subset], index])


def _track_duration(params: ToyParams, subset: str, index: int) -> float:
    rng = np.random.default_rng(
        np.random.SeedSequence([int(params.seed), _SPLIT_IDS[subset], index, 7])
    )
    return float(rng.uniform(params.min_duration, params.max_duration))


def _track_problem(folder: Path, sample_rate: int) -> str | None:
    """What is wrong with one generated track folder (None: it is complete)."""
    if not folder.is_dir():
        return f"track folder {folder} is missing"
    try:
        infos = [audio_info(folder / f"{s}.wav") for s in (MIXTURE, *MUSDB_STEMS)]
    except AudioError as err:
        return str(err)
    if len({(i.sample_rate, i.channels, i.frames) for i in infos}) != 1:
        return f"the stems in {folder} differ in sample rate, channel count or length"
    if infos[0].sample_rate != sample_rate:
        return f"{infos[0].path} is at {infos[0].sample_rate} Hz, not {sample_rate} Hz"
    return None


def _tracks_problem(root: Path, params: ToyParams, sample_rate: int) -> str | None:
    """The first problem among the tracks ``params`` lists under ``root`` (None: all complete)."""
    for subset, names in track_names(params).items():
        for name in names:
            problem = _track_problem(root / subset / name, sample_rate)
            if problem is not None:
                return problem
    return None


def _params_record(params: ToyParams, sample_rate: int) -> dict:
    return {"sample_rate": int(sample_rate), **asdict(params)}


def _read_record(root: Path) -> dict | None:
    """The generator's record in ``root`` (None: missing or not one of its records)."""
    try:
        record = json.loads((root / PARAMS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not {"n_train", "n_test", "seed"} <= set(record):
        return None
    return record


def toy_dataset_complete(
    root: str | os.PathLike, params: ToyParams, sample_rate: int = 44100
) -> bool:
    """Whether ``root`` holds every track of ``params`` (and was made with these parameters)."""
    root = Path(root)
    if _read_record(root) != _params_record(params, sample_rate):
        return False
    return _tracks_problem(root, params, sample_rate) is None


def _claim_folder(root: Path, params: ToyParams, sample_rate: int) -> None:
    """Create ``root`` if missing; raise :class:`DatasetError` unless it is empty or the
    generator's own folder (it holds the generator's record)."""
    if root.exists() and not root.is_dir():
        raise DatasetError(
            f"{root} is not a folder; the stand-in dataset generator will not overwrite it"
        )
    if root.is_dir() and any(root.iterdir()) and _read_record(root) is None:
        problem = _tracks_problem(root, params, sample_rate) or "every track is there"
        raise DatasetError(
            f"{root} is not a complete stand-in dataset ({problem}) and was not made by the "
            f"generator (it has no {PARAMS_FILE} record), so the generator will not overwrite "
            "it. Point dset.data_dir at a new or empty folder, or repair or move this one."
        )
    root.mkdir(parents=True, exist_ok=True)


def generate_toy_dataset(
    root: str | os.PathLike,
    params: ToyParams = ToyParams(),
    sample_rate: int = 44100,
    progress: bool = True,
) -> Path:
    """Write the stand-in dataset to ``root`` (MUSDB18-HQ layout), skipping complete tracks
    made with the same parameters. Generated track folders that ``params`` no longer lists
    are removed. Returns ``root``.

    ``root`` must be missing, empty, or a folder this generator made (else
    :class:`DatasetError`, and nothing is written).
    """
    root = Path(root)
    _claim_folder(root, params, sample_rate)
    record = _params_record(params, sample_rate)
    same = _read_record(root) == record
    # the record marks the folder as the generator's before any track is written
    write_text_atomic(root / PARAMS_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")
    names = track_names(params)
    for subset, wanted in names.items():  # drop stale generated tracks
        folder = root / subset
        if folder.is_dir():
            for p in folder.iterdir():
                if p.is_dir() and p.name.startswith(f"toy_{subset}_") and p.name not in wanted:
                    shutil.rmtree(p)
    jobs = [(s, i, n) for s, wanted in names.items() for i, n in enumerate(wanted)]
    for subset, index, name in tqdm(jobs, desc="toy dataset", unit="track", disable=not progress):
        folder = root / subset / name
        if same and _track_problem(folder, sample_rate) is None:
            continue
        stems = synthesize_track(
            _track_seed(params, subset, index), _track_duration(params, subset, index), sample_rate
        )
        for stem, audio in stems.items():
            write_audio(folder / f"{stem}.wav", audio, sample_rate, subtype="FLOAT")
    return root


def prepare_toy_dataset(
    root: str | os.PathLike, params: ToyParams, sample_rate: int = 44100, progress: bool = True
) -> bool:
    """Generate the stand-in dataset unless ``root`` already holds it complete (only into a
    missing or empty folder or one the generator made: see :func:`generate_toy_dataset`).

    Returns True when something was generated."""
    if toy_dataset_complete(root, params, sample_rate):
        log.info("stand-in dataset %s is complete; not regenerating it", root)
        return False
    log.info("generating the stand-in dataset into %s", root)
    generate_toy_dataset(root, params, sample_rate, progress)
    return True
