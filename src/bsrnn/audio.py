"""Audio file I/O with soundfile, and resampling with soxr.

Arrays are float32 ``[channels, samples]`` everywhere in this project.
Writes are atomic: a file is written next to its destination and renamed into place,
so an interrupted run never leaves a half-written file under the final name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from bsrnn.errors import AudioError
from bsrnn.files import atomic_path

__all__ = [
    "AudioError",
    "AudioInfo",
    "audio_info",
    "fit_length",
    "read_audio",
    "resample",
    "write_audio",
]


@dataclass(frozen=True)
class AudioInfo:
    """What the header of an audio file says."""

    path: Path
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Read the header of ``path``; raises :class:`AudioError` naming the file when it fails."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file not found: {path}")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(f"cannot read {path} as audio: {err}") from err
    return AudioInfo(path, int(info.samplerate), int(info.channels), int(info.frames))


def read_audio(
    path: str | os.PathLike, start: int = 0, stop: int | None = None
) -> tuple[np.ndarray, int]:
    """Read frames ``[start, stop)`` of ``path`` (only those frames are decoded).

    Returns ``(audio [channels, frames] float32, sample_rate)``. Every reader of audio in this
    project comes through here, so one check covers training, validation, evaluation and
    inference: a file holding NaN or infinite samples (possible in float WAVs) raises
    :class:`AudioError` naming the file and the first bad position.
    """
    path = Path(path)
    try:
        data, sr = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(f"cannot read {path} as audio: {err}") from err
    _check_finite(data, path, int(sr), start)
    return np.ascontiguousarray(data.T), int(sr)


def _check_finite(data: np.ndarray, path: Path, sample_rate: int, start: int = 0) -> None:
    """Raise :class:`AudioError` if ``data [frames, channels]`` (read from ``path`` at frame
    ``start``) holds a NaN or infinite sample, naming the first one in time."""
    finite = np.isfinite(data)
    if finite.all():
        return
    frame, channel = np.argwhere(~finite)[0]  # row-major: earliest frame, then lowest channel
    position = start + int(frame)
    n_bad = int(finite.size - np.count_nonzero(finite))
    raise AudioError(
        f"{path} holds non-finite audio: sample {position} ({position / sample_rate:.3f} s), "
        f"channel {int(channel)} is {data[frame, channel]} ({n_bad} non-finite value(s) in "
        f"frames [{start}, {start + data.shape[0]})); expected finite samples. Repair or "
        "re-export the file."
    )


def write_audio(
    path: str | os.PathLike, audio: np.ndarray, sample_rate: int, subtype: str | None = None
) -> Path:
    """Write ``audio [channels, frames]`` to ``path`` atomically; the format follows the suffix."""
    path = Path(path)
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 2:
        raise ValueError(f"expected audio [channels, frames], got shape {audio.shape} for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        sf.write(tmp, audio.T, int(sample_rate), subtype=subtype)
    return path


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample ``audio [channels, frames]`` with soxr (high quality); a no-op at equal rates."""
    if orig_sr == target_sr:
        return np.asarray(audio, dtype=np.float32)
    out = soxr.resample(np.asarray(audio, dtype=np.float32).T, orig_sr, target_sr, quality="HQ")
    return np.ascontiguousarray(out.T, dtype=np.float32)


def fit_length(audio: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad the last axis of ``audio [..., t]`` to ``n`` samples (museval pads and
    truncates estimates likewise)."""
    if audio.shape[-1] >= n:
        return audio[..., :n]
    pad = [(0, 0)] * (audio.ndim - 1) + [(0, n - audio.shape[-1])]
    return np.pad(audio, pad)
