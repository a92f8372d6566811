"""Separating an audio file into stem files: the input's range, the output formats (bit
depths, clipping) and the atomic writing of the stems.

:func:`separate_file` is what ``inference.py`` and ``bsrnn-separate`` run for each file.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from bsrnn.audio import AudioError, AudioInfo, audio_info, read_audio, write_audio
from bsrnn.errors import ConfigError
from bsrnn.separator import Separator

log = logging.getLogger(__name__)


def file_range(
    file_path: str | os.PathLike, offset: float = 0.0, max_len: float | None = None
) -> tuple[AudioInfo, int, int | None]:
    """Check an input file and the requested range: ``(info, start, stop)`` in frames
    (``stop`` None: to the end).

    Raises :class:`~bsrnn.audio.AudioError` for a missing, unreadable or empty file, a file
    that is neither mono nor stereo, or a range outside it.
    """
    path = Path(file_path)
    info = audio_info(path)
    if info.frames <= 0:
        raise AudioError(f"{path} holds no audio (0 frames)")
    if info.channels not in (1, 2):
        raise AudioError(f"{path} has {info.channels} channels: expected mono or stereo audio")
    if offset is None:
        offset = 0.0
    if offset < 0:
        raise AudioError(f"offset must be >= 0 seconds, got {offset}")
    if max_len is not None and not max_len > 0:
        raise AudioError(f"max_len must be > 0 seconds (or null: to the end), got {max_len}")
    start = int(round(offset * info.sample_rate))
    if start >= info.frames:
        raise AudioError(
            f"offset {offset} s is past the end of {path} ({info.duration:.2f} s long)"
        )
    stop = (
        None
        if max_len is None
        else min(info.frames, start + int(round(max_len * info.sample_rate)))
    )
    return info, start, stop


#: Output formats and the soundfile subtype of each bit depth (32: float, WAV only).
SUBTYPES: dict[str, dict[int, str]] = {
    "wav": {16: "PCM_16", 24: "PCM_24", 32: "FLOAT"},
    "flac": {16: "PCM_16", 24: "PCM_24"},
}


def output_subtype(fmt: str, bits: int) -> str:
    """The soundfile subtype for ``fmt`` (``wav``/``flac``) at ``bits`` (ConfigError for a
    combination the format cannot hold, e.g. 32-bit FLAC)."""
    fmt = str(fmt).lower()
    if fmt not in SUBTYPES:
        raise ConfigError(f"unknown output format {fmt!r}: expected one of {', '.join(SUBTYPES)}")
    if bits not in SUBTYPES[fmt]:
        raise ConfigError(
            f"{fmt.upper()} cannot hold {bits}-bit samples: use "
            f"{' or '.join(str(b) for b in SUBTYPES[fmt])} bits"
            + (" (32-bit float is WAV only)" if fmt == "flac" and bits == 32 else "")
        )
    return SUBTYPES[fmt][bits]


def clip_for_subtype(subtype: str, stem: np.ndarray, name: str) -> np.ndarray:
    """Integer PCM holds [-1, 1): samples beyond are clipped, with a warning."""
    if not subtype.startswith("PCM"):
        return stem
    over = int(np.count_nonzero(np.abs(stem) > 1.0))
    if over:
        log.warning(
            "%s: %d sample(s) beyond full scale (peak %.2f) clipped for %s; float WAV "
            "(--format wav --bits 32) keeps them",
            name,
            over,
            float(np.abs(stem).max()),
            subtype,
        )
    return np.clip(stem, -1.0, 1.0)


def separate_file(
    separator: Separator,
    file_path: str | os.PathLike,
    rec_dir: str | os.PathLike,
    offset: float = 0.0,
    max_len: float | None = None,
    progress: bool | str = False,
    ext: str = "wav",
    subtype: str = "FLOAT",
) -> dict[str, Path]:
    """Separate ``[offset, offset + max_len)`` seconds of an audio file and write one stem per
    target to ``<rec_dir>/<target>.<ext>`` (default: float WAV; ``subtype`` is soundfile's,
    see :func:`output_subtype`; integer PCM clips at full scale with a warning).

    Any file soundfile reads, at any sample rate, mono or stereo: the stems come back at the
    file's sample rate, channel count and length
    (:meth:`~bsrnn.separator.Separator.separate_audio`). The stems
    are written to a temporary folder first and moved into ``rec_dir`` only when all are done.
    Raises :class:`~bsrnn.audio.AudioError` for a missing, unreadable or empty file or a range
    outside it.
    """
    path = Path(file_path)
    rec_dir = Path(rec_dir)
    if rec_dir.exists() and not rec_dir.is_dir():
        raise ConfigError(f"rec_dir={rec_dir} is an existing file: expected a folder for the stems")
    info, start, stop = file_range(path, offset, max_len)
    audio, sr = read_audio(path, start=start, stop=stop)
    if audio.shape[-1] == 0:
        raise AudioError(f"no audio read from {path} in the requested range")
    channels, n = audio.shape
    log.info(
        "separating %s: %.2f s from %.2f s, %d channel(s) at %d Hz",
        path,
        n / sr,
        start / sr,
        channels,
        sr,
    )
    stems = separator.separate_audio(audio, sr, progress=progress)  # [S, C, n]

    rec_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{rec_dir.name}.", dir=rec_dir.parent))
    names = [f"{target}.{ext}" for target in separator.targets]
    try:
        for name, est in zip(names, stems):
            est = clip_for_subtype(subtype, est, f"{path.name} {name}")
            write_audio(tmp_dir / name, est, sr, subtype=subtype)
        rec_dir.mkdir(parents=True, exist_ok=True)
        written = {}
        for target, name in zip(separator.targets, names):
            dest = rec_dir / name
            os.replace(tmp_dir / name, dest)
            written[target] = dest
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return written
