"""Test-set evaluation: separate every track, score it (uSDR or cSDR), keep results resumable.

Per-track scores go to a CSV (``track`` + one column per target), rewritten atomically after each
track; a JSON file beside it records the configuration that produced them (model, targets,
checkpoint digests, chunking and metric settings), so an interrupted run resumes where it stopped
and a different configuration never mixes with old rows. The aggregate (mean over tracks for
uSDR, median for cSDR; then the average over targets) is written to a summary CSV with one row
per model.
"""

from __future__ import annotations

import concurrent.futures as futures
import csv
import hashlib
import io
import json
import logging
import math
import multiprocessing
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from bsrnn.audio import read_audio, resample, write_audio
from bsrnn.data.tracks import Track, discover_tracks
from bsrnn.files import write_text_atomic
from bsrnn.metrics import (
    CSDR,
    USDR,
    SilentSourceError,
    aggregate_tracks,
    average_over_targets,
    csdr_frames,
    csdr_frames_museval,
    median_over_frames,
    normalize_sdr_type,
    usdr,
)
from bsrnn.separator import Separator, checkpoint_path

log = logging.getLogger(__name__)

BACKENDS = ("fast", "package")
BASELINES = ("mixture",)
SDR_LABELS = {USDR: "uSDR", CSDR: "cSDR"}


# --------------------------------------------------------------------------------------------
# Estimators: mixture [C, T] at some rate -> estimates [S, C, T] at the same rate
# --------------------------------------------------------------------------------------------
class Estimator(Protocol):
    targets: list[str]

    def __call__(self, mixture: np.ndarray, sample_rate: int) -> np.ndarray: ...


class SeparatorEstimator:
    """Runs a :class:`~bsrnn.separator.Separator`, resampling to and from the model's rate."""

    def __init__(self, separator: Separator) -> None:
        self.separator = separator
        self.targets = list(separator.targets)

    def __call__(self, mixture: np.ndarray, sample_rate: int) -> np.ndarray:
        rate = self.separator.sample_rate
        x = resample(mixture, sample_rate, rate)
        y = self.separator.separate_stacked(torch.from_numpy(x)[None])[0].numpy()  # [S, C, t]
        if rate != sample_rate:
            y = np.stack([resample(est, rate, sample_rate) for est in y])
        return _fit_length(y, mixture.shape[-1])


class MixtureEstimator:
    """The "mixture as estimate" baseline: every target's estimate is the mixture."""

    def __init__(self, targets: Sequence[str]) -> None:
        self.targets = list(targets)

    def __call__(self, mixture: np.ndarray, sample_rate: int) -> np.ndarray:
        return np.repeat(mixture[None].astype(np.float32), len(self.targets), axis=0)


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad the last axis to ``n`` (museval pads/truncates estimates likewise)."""
    if y.shape[-1] >= n:
        return y[..., :n]
    pad = [(0, 0)] * (y.ndim - 1) + [(0, n - y.shape[-1])]
    return np.pad(y, pad)


# --------------------------------------------------------------------------------------------
# Scoring one track
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScoreSettings:
    """How a track is scored: ``sdr_type`` ``usdr``/``csdr`` (synonyms accepted), the cSDR window
    and hop in seconds, and its ``backend``: ``fast`` (exact, without the distortion filters) or
    ``package`` (museval's own bss_eval, slow)."""

    sdr_type: str = USDR
    sdr_win: float = 1.0
    sdr_hop: float = 1.0
    backend: str = "fast"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sdr_type", normalize_sdr_type(self.sdr_type))
        if self.backend not in BACKENDS:
            raise ValueError(
                f"unknown museval_backend {self.backend!r}: expected one of {', '.join(BACKENDS)}"
            )
        if not (self.sdr_win > 0 and self.sdr_hop > 0):
            raise ValueError(
                f"sdr_win and sdr_hop must be > 0 seconds, got {self.sdr_win}, {self.sdr_hop}"
            )


def score_track(
    references: np.ndarray,
    estimates: np.ndarray,
    sample_rate: int,
    settings: ScoreSettings,
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """SDR per source of one track, float64 ``[S]``; arrays ``[S, C, T]``.

    cSDR evaluates all sources jointly (museval's semantics). A track with a wholly silent
    source has no cSDR (museval refuses it): NaN for every source, with a warning.
    """
    estimates = _fit_length(estimates, references.shape[-1])
    if settings.sdr_type == USDR:
        return usdr(references, estimates)
    win = int(settings.sdr_win * sample_rate)
    hop = int(settings.sdr_hop * sample_rate)
    try:
        if settings.backend == "package":
            frames = csdr_frames_museval(references, estimates, win=win, hop=hop)
        else:
            frames = csdr_frames(references, estimates, win=win, hop=hop, names=names)
    except SilentSourceError as err:
        log.warning("no cSDR for this track: %s", err)
        return np.full(references.shape[0], np.nan)
    return median_over_frames(frames)


# --------------------------------------------------------------------------------------------
# Per-track results file (resumable)
# --------------------------------------------------------------------------------------------
def _fmt(value: float) -> str:
    return "nan" if value is None or math.isnan(value) else repr(float(value))


class ResultsFile:
    """Per-track scores in ``path`` (CSV: ``track``, targets...) plus ``<stem>.meta.json``
    holding the configuration identity they belong to."""

    def __init__(self, path: str | os.PathLike, targets: Sequence[str], identity: Mapping) -> None:
        self.path = Path(path)
        self.meta_path = self.path.with_name(self.path.stem + ".meta.json")
        self.targets = list(targets)
        self.identity = json.loads(json.dumps(dict(identity), sort_keys=True, default=str))
        self.rows: dict[str, dict[str, float]] = {}

    def load(self, resume: bool = True) -> dict[str, dict[str, float]]:
        """Read back rows written by a previous run with the same identity; otherwise start
        over (an old file of another configuration is kept as ``*.old``)."""
        self.rows = {}
        if not self.path.exists():
            return self.rows
        old_identity = None
        if self.meta_path.exists():
            try:
                old_identity = json.loads(self.meta_path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                old_identity = None
        if not resume or old_identity != self.identity:
            if resume:
                diff = _identity_diff(old_identity, self.identity)
                log.warning(
                    "%s holds results of another configuration (differs in: %s): starting over; "
                    "the old file is kept as %s.old",
                    self.path,
                    diff,
                    self.path.name,
                )
            os.replace(self.path, self.path.with_name(self.path.name + ".old"))
            return self.rows
        with self.path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            for row in reader:
                try:
                    self.rows[row["track"]] = {t: float(row[t]) for t in self.targets}
                except (KeyError, TypeError, ValueError) as err:
                    raise ValueError(
                        f"{self.path}: unreadable row {row!r} ({err}); "
                        "delete the file to start over"
                    ) from err
        if self.rows:
            log.info("resuming: %d track(s) already evaluated in %s", len(self.rows), self.path)
        return self.rows

    def add(self, track: str, scores: Mapping[str, float]) -> None:
        """Record one track and rewrite the file atomically (meta first)."""
        self.rows[track] = {t: float(scores[t]) for t in self.targets}
        write_text_atomic(self.meta_path, json.dumps(self.identity, indent=2, sort_keys=True))
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["track", *self.targets])
        for name in sorted(self.rows):
            writer.writerow([name, *(_fmt(self.rows[name][t]) for t in self.targets)])
        write_text_atomic(self.path, buf.getvalue())


def _identity_diff(old: Any, new: Mapping) -> str:
    if not isinstance(old, Mapping):
        return "no configuration record"
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(keys) or "?"


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file (identifies a checkpoint in the results' configuration record)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Summary over tracks
# --------------------------------------------------------------------------------------------
@dataclass
class EvalResult:
    """Per-track scores, their aggregate per target and the average over targets."""

    model: str
    sdr_type: str
    targets: list[str]
    per_track: dict[str, dict[str, float]]
    aggregate: dict[str, float] = field(default_factory=dict)
    average: float = float("nan")

    def __post_init__(self) -> None:
        values = [[self.per_track[n][t] for t in self.targets] for n in sorted(self.per_track)]
        agg = aggregate_tracks(np.asarray(values).reshape(-1, len(self.targets)), self.sdr_type)
        self.aggregate = {t: float(v) for t, v in zip(self.targets, agg)}
        self.average = average_over_targets(agg)

    def table(self) -> str:
        """A Markdown table: one row per target and the average."""
        return format_table([self])


def format_table(results: Sequence[EvalResult]) -> str:
    """Markdown table of one or more results side by side (e.g. a model and the mixture
    baseline): a row per target and the average, a column per result."""
    if not results:
        raise ValueError("no results to tabulate")
    targets = list(dict.fromkeys(t for r in results for t in r.targets))
    heads = [f"{SDR_LABELS[r.sdr_type]} - {r.model}" for r in results]
    width = max(8, *(len(t) for t in targets))
    lines = [
        "| " + " | ".join([" " * width, *heads]) + " |",
        "|" + "|".join("-" * (len(h) + 2) for h in [" " * width, *heads]) + "|",
    ]
    for name in [*targets, "average"]:
        cells = []
        for r, head in zip(results, heads):
            value = r.average if name == "average" else r.aggregate.get(name, float("nan"))
            cells.append(f"{value:>{len(head)}.2f}")
        lines.append("| " + " | ".join([f"{name:<{width}}", *cells]) + " |")
    return "\n".join(lines)


def update_summary(path: str | os.PathLike, result: EvalResult) -> Path:
    """Write ``result`` into the summary CSV (``model``, targets..., ``average``), replacing an
    earlier row of the same model; columns are the union over rows. Atomic."""
    path = Path(path)
    rows: list[dict[str, str]] = []
    columns: list[str] = ["model"]
    if path.exists():
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or columns)
            rows = [r for r in reader if r.get("model") != result.model]
    new = {"model": result.model, **{t: _fmt(v) for t, v in result.aggregate.items()}}
    new["average"] = _fmt(result.average)
    rows.append(new)
    for key in new:
        if key not in columns:
            columns.append(key)
    if "average" in columns:  # keep the average last
        columns = [c for c in columns if c != "average"] + ["average"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())
    return path


# --------------------------------------------------------------------------------------------
# Evaluating a set of tracks
# --------------------------------------------------------------------------------------------
def _load_references(track: Track, targets: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(mixture [C, T], references [S, C, T])`` of a track, float32."""
    mixture, _ = read_audio(track.stem_path("mixture"))
    refs = np.stack([read_audio(track.stem_path(t))[0] for t in targets])
    return mixture, refs


def process_track(
    track: Track,
    estimator: Estimator,
    settings: ScoreSettings,
    rec_dir: str | os.PathLike | None = None,
) -> dict[str, float]:
    """Separate one track, write its estimates under ``<rec_dir>/<track>/`` when given, and
    return ``{target: SDR}``."""
    targets = estimator.targets
    mixture, refs = _load_references(track, targets)
    estimates = estimator(mixture, track.sample_rate)
    if rec_dir:
        for target, est in zip(targets, estimates):
            write_audio(
                Path(rec_dir) / track.name / f"{target}.wav", est, track.sample_rate, "FLOAT"
            )
    scores = score_track(refs, estimates, track.sample_rate, settings, names=targets)
    return {t: float(s) for t, s in zip(targets, scores)}


_WORKER: dict[str, Any] = {}


def _init_worker(estimator: Estimator, threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER["estimator"] = estimator


def _worker_track(
    track: Track, settings: ScoreSettings, rec_dir: str | None
) -> tuple[str, dict[str, float], float]:
    t0 = time.perf_counter()
    scores = process_track(track, _WORKER["estimator"], settings, rec_dir)
    return track.name, scores, time.perf_counter() - t0


def evaluate_tracks(
    tracks: Sequence[Track],
    estimator: Estimator,
    settings: ScoreSettings,
    results: ResultsFile,
    model: str,
    rec_dir: str | os.PathLike | None = None,
    num_workers: int = 0,
    resume: bool = True,
    verbose_per_track: bool = True,
    progress: bool = True,
) -> EvalResult:
    """Evaluate ``tracks`` (skipping those already in ``results``), recording each finished
    track at once. ``num_workers > 0``: a pool of processes, one track each at a time."""
    if results.targets != list(estimator.targets):
        raise ValueError(
            f"results file targets {results.targets} differ from the estimator's "
            f"{estimator.targets}"
        )
    done = results.load(resume=resume)
    names = [t.name for t in tracks]
    if len(set(names)) != len(names):
        raise ValueError("duplicate track names in the evaluation set")
    todo = [t for t in tracks if t.name not in done]
    stale = sorted(set(done) - set(names))
    if stale:
        log.warning("ignoring %d result row(s) of tracks not in this set: %s", len(stale), stale)

    def record(name: str, scores: dict[str, float], seconds: float) -> None:
        results.add(name, scores)
        if verbose_per_track:
            text = "  ".join(f"{t} {v:6.2f}" for t, v in scores.items())
            log.info("%s: %s (%.1f s)", name, text, seconds)

    rec = str(rec_dir) if rec_dir else None
    with (
        logging_redirect_tqdm(),
        tqdm(
            total=len(tracks),
            initial=len(tracks) - len(todo),
            desc="tracks",
            unit="track",
            disable=not progress,
        ) as bar,
    ):
        if num_workers and num_workers > 0 and len(todo) > 1:
            threads = max(1, (os.cpu_count() or 1) // num_workers)
            ctx = multiprocessing.get_context("spawn")
            with futures.ProcessPoolExecutor(
                max_workers=num_workers,
                mp_context=ctx,
                initializer=_init_worker,
                initargs=(estimator, threads),
            ) as pool:
                jobs = [pool.submit(_worker_track, t, settings, rec) for t in todo]
                try:
                    for job in futures.as_completed(jobs):
                        record(*job.result())
                        bar.update(1)
                except BaseException:
                    for job in jobs:
                        job.cancel()
                    raise
        else:
            for track in todo:
                t0 = time.perf_counter()
                scores = process_track(track, estimator, settings, rec)
                record(track.name, scores, time.perf_counter() - t0)
                bar.update(1)

    per_track = {n: results.rows[n] for n in names}
    return EvalResult(model, settings.sdr_type, list(estimator.targets), per_track)


def config_identity(
    model: str,
    targets: Iterable[str],
    settings: ScoreSettings,
    chunking: Mapping[str, Any],
    checkpoints: Mapping[str, str],
    data_dir: str | os.PathLike,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What decides the scores: recorded beside the per-track CSV to guard resumption."""
    return {
        "model": model,
        "targets": list(targets),
        "sdr_type": settings.sdr_type,
        "sdr_win": settings.sdr_win,
        "sdr_hop": settings.sdr_hop,
        "chunking": dict(chunking),
        "checkpoints": dict(checkpoints),
        "data_dir": str(Path(data_dir).resolve()),
        **(dict(extra) if extra else {}),
    }


def run_evaluation(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    model_name: str,
    targets: Sequence[str],
    settings: ScoreSettings,
    model_config: Mapping[str, Any] | None = None,
    segment_len: float | None = 10.0,
    overlap: float = 0.1,
    hop_size: float | None = None,
    device: str | None = "auto",
    batch_chunks: int | None = None,
    subset: str = "test",
    rec_dir: str | os.PathLike | None = None,
    num_workers: int = 0,
    resume: bool = True,
    verbose_per_track: bool = True,
    progress: bool = True,
    baseline: str | None = None,
    allow_random: bool = False,
    seed: int | None = None,
) -> EvalResult:
    """The whole test-set evaluation of ``evaluate.py``.

    Separates the tracks of ``<data_dir>/<subset>`` with the checkpoints
    ``<out_dir>/<model_name>/<target>.ckpt`` (or, with ``baseline="mixture"``, takes the mixture
    as every estimate, under the model name ``mixture``), writes per-track scores to
    ``<out_dir>/<model>/test_results_<type>.csv`` (resumable) and the aggregate to
    ``<out_dir>/test_results_<type>.csv``.
    """
    targets = list(targets)
    if not targets:
        raise ValueError("no targets to evaluate")
    tracks = discover_tracks(data_dir, subset, sources=targets)
    chunking = {"segment_len": segment_len, "overlap": overlap, "hop_size": hop_size}
    if baseline is not None:
        if baseline not in BASELINES:
            raise ValueError(
                f"unknown baseline {baseline!r}: expected one of {', '.join(BASELINES)} (or null)"
            )
        model_name, chunking, checkpoints = baseline, {}, {}
        estimator: Estimator = MixtureEstimator(targets)
    else:
        ckpt_dir = Path(out_dir) / model_name
        if seed is not None:
            torch.manual_seed(int(seed))
        separator = Separator.from_dir(
            ckpt_dir,
            targets,
            allow_random=allow_random,
            model_config=model_config,
            segment_len=segment_len,
            overlap=overlap,
            hop_size=hop_size,
            device=device,
            batch_chunks=batch_chunks,
        )
        config_text = json.dumps(dict(model_config or {}), sort_keys=True, default=str)
        random_id = f"random weights, seed {seed}, config {config_text}"
        checkpoints = {}
        for target in targets:
            path = checkpoint_path(ckpt_dir, target)
            checkpoints[target] = file_digest(path) if path.is_file() else random_id
        estimator = SeparatorEstimator(separator)

    kind = settings.sdr_type
    results = ResultsFile(
        Path(out_dir) / model_name / f"test_results_{kind}.csv",
        targets,
        config_identity(model_name, targets, settings, chunking, checkpoints, data_dir),
    )
    log.info(
        "evaluating %s on %d %s track(s) of %s: %s, targets %s",
        model_name,
        len(tracks),
        subset,
        data_dir,
        "uSDR" if kind == USDR else f"cSDR ({settings.backend})",
        ", ".join(targets),
    )
    result = evaluate_tracks(
        tracks,
        estimator,
        settings,
        results,
        model=model_name,
        rec_dir=rec_dir,
        num_workers=num_workers,
        resume=resume,
        verbose_per_track=verbose_per_track,
        progress=progress,
    )
    summary = update_summary(Path(out_dir) / f"test_results_{kind}.csv", result)
    log.info("results per track: %s; summary: %s\n%s", results.path, summary, result.table())
    return result
