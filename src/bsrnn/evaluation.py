"""Test-set evaluation: separate every track, score it (uSDR or cSDR), keep results resumable.

:class:`EvalSettings` holds every evaluation option (the ``eval`` config group, less the chunking
values that :class:`~bsrnn.chunking.ChunkSettings` holds), each with its one default.
:func:`run_evaluation` separates the tracks with a :class:`~bsrnn.separator.Separator` (or takes
the mixture as every estimate: the baseline), scores them, and records them in the resumable
files of :mod:`bsrnn.results`.

By default the separated mixture is the sum of the stems, as the reference does
(``dset.mixture=file`` reads ``mixture.wav`` instead; the two differ on some MUSDB18-HQ tracks).
"""

from __future__ import annotations

import concurrent.futures as futures
import logging
import multiprocessing
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

import bsrnn.checks as checks
from bsrnn.audio import fit_length, write_audio
from bsrnn.chunking import ChunkSettings
from bsrnn.data import DataSettings, Track, read_track_audio
from bsrnn.errors import ConfigError, SilentSourceError, reject_unknown_keys
from bsrnn.metrics import (
    CSDR,
    METRIC_LABELS,
    USDR,
    csdr_frames,
    csdr_frames_museval,
    median_over_frames,
    normalize_metric,
    normalize_sdr_type,
    stem_metrics,
    usdr,
)
from bsrnn.model_folder import load_separator
from bsrnn.paths import checkpoint_path
from bsrnn.results import EvalResult, ResultsFile, file_digest, result_column, update_summary
from bsrnn.runtime import PRECISIONS, set_num_threads
from bsrnn.separator import Separator

log = logging.getLogger(__name__)

BACKENDS = ("fast", "package")
BASELINES = ("mixture",)


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalSettings:
    """Every evaluation option (config group ``eval``), with its one default.

    Scoring: ``sdr_type`` ``usdr``/``csdr`` (synonyms accepted); ``metrics``: null (the
    ``sdr_type`` alone) or the list of metrics to compute among ``usdr``, ``csdr``,
    ``si_sdr``, ``bleedless``, ``fullness``, ``l1_freq`` (the first names the results files
    and the checkpoint-free summary column); the cSDR window and hop in
    seconds, ``museval_backend`` ``fast`` (exact, without the distortion filters) or
    ``package`` (museval's own bss_eval, slow); ``strict``: a track museval refuses (a silent
    source) is an error instead of being excluded (and listed) from the aggregate.
    Running: ``device``, ``precision`` (``fp32``/``bf16``; ``auto``: bf16 only where a probe of
    the model shows it faster on this machine), ``num_threads`` (null: all physical cores),
    ``num_workers`` processes over tracks, ``progress`` bars.
    Separation: ``tta`` (average of the plain, channel-swapped and polarity-inverted passes),
    ``wiener_iterations`` (multichannel Wiener filter EM iterations; 0: none),
    ``wiener_residual`` (an extra residual source in the filter), ``wiener_softmask`` (the
    filter starts from ratio masks; with 0 iterations: ratio masks alone).
    What: ``subset`` of the dataset, ``baseline`` (null: the model; ``mixture``: the mixture as
    every estimate), ``allow_random_weights`` (pipeline checks only), ``rec_dir`` (write the
    estimates), ``resume`` (skip tracks already scored), ``verbose_per_track``.
    """

    sdr_type: str = USDR
    metrics: tuple[str, ...] | None = None
    sdr_win: float = 1.0
    sdr_hop: float = 1.0
    museval_backend: str = "fast"
    strict: bool = False
    device: str = "auto"
    precision: str = "fp32"
    num_threads: int | None = None
    num_workers: int = 0
    progress: bool = True
    subset: str = "test"
    baseline: str | None = None
    allow_random_weights: bool = False
    rec_dir: str | None = None
    resume: bool = True
    verbose_per_track: bool = True
    tta: bool = False
    wiener_iterations: int = 0
    wiener_residual: bool = False
    wiener_softmask: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "sdr_type", normalize_sdr_type(self.sdr_type))
        if self.metrics is not None:
            if isinstance(self.metrics, str) or not self.metrics:
                checks.fail(
                    "eval.metrics",
                    self.metrics,
                    "a non-empty list, e.g. [usdr, si_sdr, bleedless, fullness]",
                )
            names = tuple(dict.fromkeys(normalize_metric(m) for m in self.metrics))
            object.__setattr__(self, "metrics", names)
        precision = self.precision.strip().lower() if isinstance(self.precision, str) else None
        checks.choice("eval.precision", precision or self.precision, PRECISIONS)
        object.__setattr__(self, "precision", precision)
        checks.integer(
            "eval.wiener_iterations",
            self.wiener_iterations,
            minimum=0,
            expected="an integer >= 0 (0: no Wiener filter)",
        )
        checks.choice("eval.museval_backend", self.museval_backend, BACKENDS)
        for key in ("sdr_win", "sdr_hop"):
            object.__setattr__(
                self,
                key,
                checks.number(f"eval.{key}", getattr(self, key), above=0, expected="seconds > 0"),
            )
        checks.choice("eval.baseline", self.baseline, BASELINES, optional=True)
        checks.integer("eval.num_workers", self.num_workers, minimum=0)
        checks.integer(
            "eval.num_threads",
            self.num_threads,
            minimum=0,
            optional=True,
            expected="an integer >= 0 (0: one per core; null: all physical cores)",
        )
        for key in (
            "strict",
            "progress",
            "allow_random_weights",
            "resume",
            "verbose_per_track",
            "tta",
            "wiener_residual",
            "wiener_softmask",
        ):
            checks.boolean(f"eval.{key}", getattr(self, key))
        checks.text("eval.device", self.device, expected="auto, cpu, cuda or cuda:<n>")
        checks.text("eval.subset", self.subset, expected="a split of the dataset (test, valid)")
        checks.text("eval.rec_dir", self.rec_dir, optional=True, expected="a folder")

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The metrics to compute, the first one primary: ``metrics``, or ``(sdr_type,)``."""
        return self.metrics if self.metrics is not None else (self.sdr_type,)

    def separator_options(self) -> dict[str, Any]:
        """The :class:`~bsrnn.separator.Separator` keyword arguments these settings give:
        device, precision, TTA and the Wiener filter."""
        return {
            "device": self.device,
            "precision": self.precision,
            "tta": self.tta,
            "wiener_iterations": self.wiener_iterations,
            "wiener_residual": self.wiener_residual,
            "wiener_softmask": self.wiener_softmask,
        }

    def separation_identity(self) -> dict[str, Any]:
        """The separation options that differ from the defaults (what a results file must
        record beside the chunking: TTA and the Wiener filter)."""
        default = EvalSettings()
        keys = ("tta", "wiener_iterations", "wiener_residual", "wiener_softmask")
        return {k: getattr(self, k) for k in keys if getattr(self, k) != getattr(default, k)}

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> EvalSettings:
        """From the ``eval`` config (its chunking keys belong to ChunkSettings)."""
        known = [f.name for f in fields(cls)]
        reject_unknown_keys(mapping, known + list(ChunkSettings.config_keys()), "eval")
        return cls(**{k: v for k, v in mapping.items() if k in known})


# --------------------------------------------------------------------------------------------
# Estimators: mixture [C, T] at some rate -> estimates [S, C, T] at the same rate
# --------------------------------------------------------------------------------------------
class Estimator(Protocol):
    targets: list[str]

    def __call__(self, mixture: np.ndarray, sample_rate: int) -> np.ndarray: ...


class SeparatorEstimator:
    """Runs a :class:`~bsrnn.separator.Separator` (:meth:`~bsrnn.separator.Separator.
    separate_audio`: resampling to and from the model's rate, channels, length)."""

    def __init__(self, separator: Separator) -> None:
        self.separator = separator
        self.targets = list(separator.targets)

    def __call__(self, mixture: np.ndarray, sample_rate: int) -> np.ndarray:
        return self.separator.separate_audio(mixture, sample_rate)


class MixtureEstimator:
    """The "mixture as estimate" baseline: every target's estimate is the mixture."""

    def __init__(self, targets: Sequence[str]) -> None:
        self.targets = list(targets)

    def __call__(self, mixture: np.ndarray, sample_rate: int) -> np.ndarray:
        return np.repeat(mixture[None].astype(np.float32), len(self.targets), axis=0)


# --------------------------------------------------------------------------------------------
# Scoring one track
# --------------------------------------------------------------------------------------------
def score_track(
    references: np.ndarray,
    estimates: np.ndarray,
    sample_rate: int,
    settings: EvalSettings,
    names: Sequence[str] | None = None,
    track: str = "track",
    kind: str | None = None,
) -> np.ndarray:
    """SDR per source of one track, float64 ``[S]``; arrays ``[S, C, T]``. ``kind``:
    ``usdr``/``csdr`` (None: ``settings.sdr_type``).

    cSDR evaluates all sources jointly (museval's semantics). A track with a wholly silent
    source has no cSDR (museval refuses it): NaN for every source with a warning (the results
    list the track as excluded), or a SilentSourceError with ``settings.strict``.
    """
    estimates = fit_length(estimates, references.shape[-1])
    if (kind or settings.sdr_type) == USDR:
        return usdr(references, estimates)
    win = int(settings.sdr_win * sample_rate)
    hop = int(settings.sdr_hop * sample_rate)
    try:
        if settings.museval_backend == "package":
            frames = csdr_frames_museval(references, estimates, win=win, hop=hop)
        else:
            frames = csdr_frames(references, estimates, win=win, hop=hop, names=names)
    except SilentSourceError as err:
        if settings.strict:
            raise SilentSourceError(f"{track}: {err} (eval.strict=true)") from None
        log.warning("%s: excluded from the cSDR: %s", track, err)
        return np.full(references.shape[0], np.nan)
    return median_over_frames(frames)


# --------------------------------------------------------------------------------------------
# Evaluating a set of tracks
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrackJob:
    """What scoring a track needs besides the estimator (picklable, for worker processes)."""

    settings: EvalSettings
    sources: tuple[str, ...]
    mixture: str
    rec_dir: str | None


def score_track_metrics(
    references: np.ndarray,
    estimates: np.ndarray,
    sample_rate: int,
    settings: EvalSettings,
    names: Sequence[str],
    track: str = "track",
) -> dict[str, float]:
    """Every metric of ``settings.metric_names`` per source of one track: ``{column: value}``
    with the columns of :func:`bsrnn.results.result_column` (the primary metric under the
    target's name, the others as ``<target>.<metric>``)."""
    estimates = fit_length(estimates, references.shape[-1])
    metrics = settings.metric_names
    values = stem_metrics(metrics, references, estimates, sample_rate)
    for kind in metrics:
        if kind in (USDR, CSDR):
            values[kind] = score_track(references, estimates, sample_rate, settings, names=names,
                                       track=track, kind=kind)  # fmt: skip
    return {
        result_column(t, kind, metrics[0]): float(values[kind][j])
        for kind in metrics
        for j, t in enumerate(names)
    }


def process_track(track: Track, estimator: Estimator, job: TrackJob) -> dict[str, float]:
    """Separate one track, write its estimates under ``<rec_dir>/<track>/`` when given, and
    return its scores: ``{target: SDR}`` (more columns with ``eval.metrics``)."""
    targets = estimator.targets
    sources = list(dict.fromkeys([*job.sources, *targets]))
    mixture, stems = read_track_audio(track, sources, mixture=job.mixture)
    refs = stems[[sources.index(t) for t in targets]]
    estimates = estimator(mixture, track.sample_rate)
    if job.rec_dir:
        for target, est in zip(targets, estimates):
            path = Path(job.rec_dir) / track.name / f"{target}.wav"
            write_audio(path, est, track.sample_rate, "FLOAT")
    return score_track_metrics(
        refs, estimates, track.sample_rate, job.settings, names=targets, track=track.name
    )


_WORKER: dict[str, Any] = {}


def _init_worker(estimator: Estimator, threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER["estimator"] = estimator


def _worker_track(track: Track, job: TrackJob) -> tuple[str, dict[str, float], float]:
    t0 = time.perf_counter()
    scores = process_track(track, _WORKER["estimator"], job)
    return track.name, scores, time.perf_counter() - t0


def _on_cuda(estimator: Estimator) -> bool:
    """Whether ``estimator`` runs on a CUDA device (its separator's ``device``)."""
    device = getattr(getattr(estimator, "separator", estimator), "device", None)
    return device is not None and torch.device(device).type == "cuda"


def evaluate_tracks(
    tracks: Sequence[Track],
    estimator: Estimator,
    job: TrackJob,
    results: ResultsFile,
    model: str,
) -> EvalResult:
    """Evaluate ``tracks`` (skipping those already in ``results``), recording each finished
    track at once. ``eval.num_workers > 0``: a pool of processes, one track each at a time."""
    settings = job.settings
    if results.targets != list(estimator.targets):
        raise ConfigError(
            f"results file targets {results.targets} differ from the estimator's "
            f"{estimator.targets}"
        )
    done = results.load(resume=settings.resume)
    names = [t.name for t in tracks]
    todo = [t for t in tracks if t.name not in done]
    stale = sorted(set(done) - set(names))
    if stale:
        log.warning("ignoring %d result row(s) of tracks not in this set: %s", len(stale), stale)

    def record(name: str, scores: dict[str, float], seconds: float) -> None:
        results.add(name, scores)
        if settings.verbose_per_track:
            text = "  ".join(f"{t} {v:6.2f}" for t, v in scores.items())
            log.info("%s: %s (%.1f s)", name, text, seconds)

    bar = tqdm(total=len(tracks), initial=len(tracks) - len(todo), desc="tracks", unit="track",
               disable=not settings.progress)  # fmt: skip
    workers = settings.num_workers
    if workers > 0 and _on_cuda(estimator):
        # a CUDA model must not be shipped to (spawned) worker processes: each would hold its
        # own CUDA context and copy of the weights on the same GPU
        log.warning(
            "eval.num_workers=%d ignored: the model runs on CUDA, so tracks are separated one "
            "at a time in this process",
            workers,
        )
        workers = 0
    with logging_redirect_tqdm(), bar:
        if workers > 0 and len(todo) > 1:
            threads = max(1, torch.get_num_threads() // workers)
            ctx = multiprocessing.get_context("spawn")
            with futures.ProcessPoolExecutor(
                max_workers=workers,
                mp_context=ctx,
                initializer=_init_worker,
                initargs=(estimator, threads),
            ) as pool:
                jobs = [pool.submit(_worker_track, t, job) for t in todo]
                try:
                    for future in futures.as_completed(jobs):
                        record(*future.result())
                        bar.update(1)
                except BaseException:
                    for future in jobs:
                        future.cancel()
                    raise
        else:
            for track in todo:
                t0 = time.perf_counter()
                scores = process_track(track, estimator, job)
                record(track.name, scores, time.perf_counter() - t0)
                bar.update(1)

    per_track = {n: results.rows[n] for n in names}
    metrics = list(settings.metric_names)
    return EvalResult(model, metrics[0], list(estimator.targets), per_track, metrics=metrics)


def run_evaluation(
    data: DataSettings,
    settings: EvalSettings,
    chunking: ChunkSettings,
    out_dir: str | os.PathLike,
    model_name: str,
    targets: Sequence[str] | None,
    model_options: Mapping[str, Any] | None = None,
    seed: int | None = None,
    model_dir: str | os.PathLike | None = None,
) -> EvalResult:
    """The whole test-set evaluation of ``evaluate.py``.

    Separates the tracks of ``data``'s ``settings.subset`` with the checkpoints in
    ``<out_dir>/<model_name>/`` (or, with ``baseline="mixture"``, takes the mixture as every
    estimate, under the model name ``mixture``), writes per-track scores to
    ``<out_dir>/<model>/test_results_<type>.csv`` (resumable) and the aggregate to
    ``<out_dir>/test_results_<type>.csv``.

    ``model_dir``: a folder of self-describing checkpoints instead
    (:func:`~bsrnn.model_folder.load_separator`, no preset needed; ``targets`` None or
    empty: every stem it provides); the model is named after the folder, its per-track scores
    go to ``<model_dir>/test_results_<type>.csv``.
    """
    targets = list(targets or [])
    if not targets and (model_dir is None or settings.baseline is not None):
        raise ConfigError("no targets to evaluate (targets=[...])")
    threads = set_num_threads(settings.num_threads)
    tracks = data.tracks(settings.subset)
    identity: dict[str, Any] = {"chunking": chunking.to_mapping(), "mixture": data.mixture}
    identity.update(settings.separation_identity())
    results_dir = Path(out_dir) / model_name
    if settings.baseline is not None:
        model_name, identity = settings.baseline, {"mixture": data.mixture}
        results_dir = Path(out_dir) / model_name
        estimator: Estimator = MixtureEstimator(targets)
    elif model_dir is not None:
        results_dir = Path(model_dir)
        model_name = results_dir.resolve().name
        separator = load_separator(
            model_dir, targets or None, chunking=chunking, **settings.separator_options()
        )
        targets = list(separator.targets)
        identity["chunking"] = separator.chunking.to_mapping()  # the model's segment resolved
        identity["precision"] = separator.resolve_precision()
        identity["checkpoints"] = {
            ", ".join(key): file_digest(path) for key, path in separator.checkpoints.items()
        }
        estimator = SeparatorEstimator(separator)
    else:
        ckpt_dir = Path(out_dir) / model_name
        if seed is not None:
            torch.manual_seed(int(seed))
        separator = load_separator(
            ckpt_dir,
            targets,
            preset=model_options,
            allow_random=settings.allow_random_weights,
            chunking=chunking,
            **settings.separator_options(),
        )
        identity["chunking"] = separator.chunking.to_mapping()
        identity["precision"] = separator.resolve_precision()
        identity["checkpoints"] = {
            ", ".join(m.targets): _checkpoint_identity(ckpt_dir, m.targets, seed, model_options)
            for m in separator.models
        }
        estimator = SeparatorEstimator(separator)

    kind = settings.metric_names[0]
    if settings.metric_names != (settings.sdr_type,):
        identity["metrics"] = list(settings.metric_names)
    identity.update(
        model=model_name,
        targets=targets,
        sdr_type=kind,
        sdr_win=settings.sdr_win,
        sdr_hop=settings.sdr_hop,
        data_dir=str(Path(data.data_dir).resolve()),
        subset=settings.subset,
    )
    columns = [result_column(t, m, kind) for m in settings.metric_names for t in targets]
    results = ResultsFile(results_dir / f"test_results_{kind}.csv", targets, identity, columns)
    log.info(
        "evaluating %s on %d %s track(s) of %s: %s, targets %s, %d thread(s)",
        model_name,
        len(tracks),
        settings.subset,
        data.data_dir,
        ", ".join(
            f"cSDR ({settings.museval_backend})" if m == CSDR else METRIC_LABELS[m]
            for m in settings.metric_names
        ),
        ", ".join(targets),
        threads,
    )
    job = TrackJob(settings, tuple(data.sources), data.mixture, settings.rec_dir)
    result = evaluate_tracks(tracks, estimator, job, results, model=model_name)
    summary = update_summary(Path(out_dir) / f"test_results_{kind}.csv", result)
    log.info("results per track: %s; summary: %s\n%s", results.path, summary, result.table())
    return result


def _checkpoint_identity(
    ckpt_dir: Path, targets: Sequence[str], seed: int | None, options: Mapping[str, Any] | None
) -> str:
    """A checkpoint's digest, or what random weights were drawn from."""
    path = checkpoint_path(ckpt_dir, targets)
    if path.is_file():
        return file_digest(path)
    return f"random weights, seed {seed}, options {sorted(dict(options or {}).items())}"
