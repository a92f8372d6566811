"""Source activity detection (SAD) and the activity index of the ``musdb18hq_sad`` dataset.

A track's source is cut in windows (6 s, 50 % overlap); each window is split in chunks
(10) whose RMS is computed per channel. The chunk threshold is ``max(gamma, quantile of the
window's chunk RMS)`` (gamma 1e-3, quantile 0.15, as in the reference implementation, which
takes the quantile over the window's own chunks); a window is active when more than
``active_fraction`` (half) of its chunks exceed the threshold, in every channel.

The index of one source and split is a CSV file ``<sad_dir>/<source>_<split>.csv`` with the
header ``track,start,end`` (sample positions, end exclusive), next to ``activity.json`` which
records the parameters it was computed with.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

import bsrnn.checks as checks
from bsrnn.audio import read_audio
from bsrnn.data.tracks import Track
from bsrnn.errors import DatasetError
from bsrnn.files import write_text_atomic

log = logging.getLogger(__name__)

INDEX_HEADER = ("track", "start", "end")
PARAMS_FILE = "activity.json"


@dataclass(frozen=True)
class ActivityParams:
    """Parameters of the source activity detector (config ``dset.activity``)."""

    win_duration: float = 6.0  # window length in seconds
    overlap: float = 0.5  # overlap of consecutive windows (hop = (1 - overlap) * window)
    n_chunks: int = 10  # chunks per window
    gamma: float = 1e-3  # lowest chunk-RMS threshold
    quantile: float = 0.15  # quantile of the window's chunk RMS used as threshold
    active_fraction: float = 0.5  # a window is active when MORE than this fraction is above

    def __post_init__(self) -> None:
        where, set_ = "dset.activity", functools.partial(object.__setattr__, self)
        set_("win_duration", checks.number(f"{where}.win_duration", self.win_duration, above=0))
        set_("overlap", checks.number(f"{where}.overlap", self.overlap, minimum=0, below=1))
        set_("n_chunks", checks.integer(f"{where}.n_chunks", self.n_chunks, minimum=1))
        set_("gamma", checks.number(f"{where}.gamma", self.gamma, minimum=0))
        set_("quantile", checks.number(f"{where}.quantile", self.quantile, minimum=0, maximum=1))
        fraction = checks.number(
            f"{where}.active_fraction", self.active_fraction, minimum=0, below=1
        )
        set_("active_fraction", fraction)

    def chunk_frames(self, sample_rate: int) -> int:
        return max(1, int(round(self.win_duration * sample_rate)) // self.n_chunks)

    def window_frames(self, sample_rate: int) -> int:
        """Window length in samples (a whole number of chunks)."""
        return self.chunk_frames(sample_rate) * self.n_chunks

    def hop_frames(self, sample_rate: int) -> int:
        return max(1, int(self.window_frames(sample_rate) * (1.0 - self.overlap)))

    def n_windows(self, frames: int, sample_rate: int) -> int:
        """Number of whole windows in ``frames`` samples (a shorter tail is dropped)."""
        win, hop = self.window_frames(sample_rate), self.hop_frames(sample_rate)
        return 0 if frames < win else (frames - win) // hop + 1


def window_activity(audio: np.ndarray, sample_rate: int, params: ActivityParams) -> np.ndarray:
    """Activity of each whole window of ``audio [channels, samples]``.

    Window ``w`` covers samples ``[w * hop, w * hop + window)``. Returns ``bool [n_windows]``.
    """
    audio = np.asarray(audio)
    if audio.ndim != 2:
        raise ValueError(f"expected audio [channels, samples], got shape {audio.shape}")
    chunk = params.chunk_frames(sample_rate)
    hop = params.hop_frames(sample_rate)
    n_win = params.n_windows(audio.shape[-1], sample_rate)
    if n_win == 0:
        return np.zeros(0, dtype=bool)
    # Chunk energies from a cumulative sum of squares: O(samples), no copies per window.
    cum = np.zeros((audio.shape[0], audio.shape[1] + 1), dtype=np.float64)
    np.cumsum(np.square(audio, dtype=np.float64), axis=-1, out=cum[:, 1:])
    starts = np.arange(n_win)[:, None] * hop + np.arange(params.n_chunks)[None, :] * chunk
    energy = cum[:, starts + chunk] - cum[:, starts]  # [C, windows, chunks]
    rms = np.sqrt(np.maximum(energy, 0.0) / chunk)
    threshold = np.maximum(params.gamma, np.quantile(rms, params.quantile, axis=-1))
    above = np.mean(rms > threshold[..., None], axis=-1)  # [C, windows]
    return np.all(above > params.active_fraction, axis=0)


def track_active_segments(
    path: str | os.PathLike,
    frames: int,
    sample_rate: int,
    params: ActivityParams,
    block_windows: int = 16,
) -> list[tuple[int, int]]:
    """Active windows ``(start, end)`` of one audio file, read in blocks of ``block_windows``
    windows (the whole file is never held in memory)."""
    win, hop = params.window_frames(sample_rate), params.hop_frames(sample_rate)
    n_win = params.n_windows(frames, sample_rate)
    segments: list[tuple[int, int]] = []
    for first in range(0, n_win, block_windows):
        last = min(first + block_windows, n_win)  # windows [first, last)
        start = first * hop
        audio, _ = read_audio(path, start, (last - 1) * hop + win)
        active = window_activity(audio, sample_rate, params)[: last - first]
        segments.extend((start + i * hop, start + i * hop + win) for i in np.flatnonzero(active))
    return segments


def activity_index_path(sad_dir: str | os.PathLike, source: str, split: str) -> Path:
    """``<sad_dir>/<source>_<split>.csv``."""
    return Path(sad_dir) / f"{source}_{split}.csv"


def _params_record(params: ActivityParams, sample_rate: int) -> dict:
    return {"sample_rate": int(sample_rate), **{k: v for k, v in asdict(params).items()}}


def build_activity_index(
    tracks: Sequence[Track],
    sources: Sequence[str],
    split: str,
    sad_dir: str | os.PathLike,
    params: ActivityParams,
    progress: bool = True,
) -> dict[str, Path]:
    """Detect the active windows of every source of ``tracks`` and write one index per source,
    ``<sad_dir>/<source>_<split>.csv`` (atomically; the same input gives identical bytes).

    Returns ``{source: index path}``.
    """
    if not tracks:
        raise DatasetError(f"no tracks to index for split {split!r}")
    sample_rate = tracks[0].sample_rate
    rows: dict[str, list[tuple[str, int, int]]] = {s: [] for s in sources}
    bar = tqdm(tracks, desc=f"activity {split}", unit="track", disable=not progress)
    for track in bar:
        if track.sample_rate != sample_rate:
            raise DatasetError(
                f"track {track.name!r} is at {track.sample_rate} Hz, other tracks of the "
                f"{split} split at {sample_rate} Hz"
            )
        for source in sources:
            segs = track_active_segments(track.stem_path(source), track.frames, sample_rate, params)
            rows[source].extend((track.name, a, b) for a, b in segs)
    sad_dir = Path(sad_dir)
    record = json.dumps(_params_record(params, sample_rate), indent=2, sort_keys=True) + "\n"
    write_text_atomic(sad_dir / PARAMS_FILE, record)
    paths = {}
    for source in sources:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(INDEX_HEADER)
        writer.writerows(sorted(rows[source]))
        path = activity_index_path(sad_dir, source, split)
        write_text_atomic(path, buf.getvalue())
        n_win = sum(params.n_windows(t.frames, sample_rate) for t in tracks)
        log.info(
            "%s: %d of %d windows active for %s (%s)", path, len(rows[source]), n_win, source, split
        )
        paths[source] = path
    return paths


@dataclass(frozen=True)
class Segment:
    """One excerpt of a track: samples ``[start, end)``."""

    track: Track
    start: int
    end: int

    @property
    def frames(self) -> int:
        return self.end - self.start


def _missing_index(path: Path, prep_hint: str, what: str) -> DatasetError:
    return DatasetError(
        f"{what}: {path}. Compute the activity index with `{prep_hint}` "
        "(adding this run's dset.* overrides, if any)."
    )


def load_activity_index(
    sad_dir: str | os.PathLike,
    source: str,
    split: str,
    tracks: Iterable[Track],
    params: ActivityParams,
    min_frames: int,
    prep_hint: str = "python prep_dataset.py",
) -> list[Segment]:
    """Read ``<sad_dir>/<source>_<split>.csv`` and check it against ``tracks`` and ``params``.

    Every segment must lie in one of ``tracks`` and last at least ``min_frames``. Raises
    :class:`DatasetError` telling to run ``prep_hint`` when the index is missing or stale.
    """
    by_name: Mapping[str, Track] = {t.name: t for t in tracks}
    path = activity_index_path(sad_dir, source, split)
    record_path = Path(sad_dir) / PARAMS_FILE
    if not path.is_file():
        raise _missing_index(path, prep_hint, f"activity index for {source!r} not found")
    if not record_path.is_file():
        raise _missing_index(record_path, prep_hint, "activity parameters file not found")
    sample_rate = next(iter(by_name.values())).sample_rate if by_name else 0
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise _missing_index(record_path, prep_hint, f"unreadable ({err})") from err
    if record != _params_record(params, sample_rate):
        raise _missing_index(
            record_path,
            prep_hint,
            f"the activity index was computed with other parameters ({record}, now "
            f"{_params_record(params, sample_rate)})",
        )
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = tuple(next(reader, ()))
        if header != INDEX_HEADER:
            raise DatasetError(
                f"{path}: expected the header {','.join(INDEX_HEADER)}, got {header}"
            )
        segments = []
        for line, row in enumerate(reader, start=2):
            try:
                name, start, end = row[0], int(row[1]), int(row[2])
            except (IndexError, ValueError) as err:
                raise DatasetError(f"{path}, line {line}: bad row {row!r}") from err
            track = by_name.get(name)
            if track is None:
                raise _missing_index(
                    path, prep_hint, f"line {line} names track {name!r}, not in the {split} split"
                )
            if not 0 <= start < end <= track.frames:
                raise _missing_index(
                    path, prep_hint, f"line {line}: [{start}, {end}) is outside {name!r}"
                )
            if end - start < min_frames:
                raise DatasetError(
                    f"{path}, line {line}: segment of {end - start} samples, shorter than the "
                    f"{min_frames} samples of a training example (seq_duration)"
                )
            segments.append(Segment(track, start, end))
    if not segments:
        raise DatasetError(
            f"{path}: no active segment of {source!r} in the {split} split; nothing to train on"
        )
    return segments
