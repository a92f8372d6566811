"""Evaluation results: the resumable per-track file, the aggregate over tracks, the tables.

Per-track scores go to a CSV (``track`` + one column per target), rewritten atomically after each
track; a JSON file beside it records the configuration that produced them (model, targets,
checkpoint digests, chunking and metric settings), so an interrupted run resumes where it stopped
and a different configuration never mixes with old rows. The aggregate (mean over tracks for
uSDR, median for cSDR; then the average over targets) goes to a summary CSV with one row per
model. A track without a score (museval refuses a track with a silent source) is excluded from
the aggregate, and the table and the summary say which.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bsrnn.errors import DatasetError
from bsrnn.files import write_text_atomic
from bsrnn.metrics import CSDR, METRIC_LABELS, USDR, aggregate_tracks, average_over_targets

log = logging.getLogger(__name__)

SDR_LABELS = {USDR: "uSDR", CSDR: "cSDR"}


def result_column(target: str, metric: str, primary: str) -> str:
    """A results file's column: the target's name for the primary metric (the files of a
    single metric keep their layout), ``<target>.<metric>`` for the others."""
    return target if metric == primary else f"{target}.{metric}"


# --------------------------------------------------------------------------------------------
# Per-track results file (resumable)
# --------------------------------------------------------------------------------------------
def _fmt(value: float) -> str:
    return "nan" if value is None or math.isnan(value) else repr(float(value))


class ResultsFile:
    """Per-track scores in ``path`` (CSV: ``track``, then ``columns``: the targets, and
    ``<target>.<metric>`` for more metrics) plus ``<stem>.meta.json`` holding the
    configuration identity they belong to."""

    def __init__(
        self,
        path: str | os.PathLike,
        targets: Sequence[str],
        identity: Mapping,
        columns: Sequence[str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.meta_path = self.path.with_name(self.path.stem + ".meta.json")
        self.targets = list(targets)
        self.columns = list(columns) if columns is not None else list(targets)
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
                    self.rows[row["track"]] = {c: float(row[c]) for c in self.columns}
                except (KeyError, TypeError, ValueError) as err:
                    raise DatasetError(
                        f"{self.path}: unreadable row {row!r} ({err}); "
                        "delete the file to start over"
                    ) from err
        if self.rows:
            log.info("resuming: %d track(s) already evaluated in %s", len(self.rows), self.path)
        return self.rows

    def add(self, track: str, scores: Mapping[str, float]) -> None:
        """Record one track and rewrite the file atomically (meta first)."""
        self.rows[track] = {c: float(scores[c]) for c in self.columns}
        write_text_atomic(self.meta_path, json.dumps(self.identity, indent=2, sort_keys=True))
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["track", *self.columns])
        for name in sorted(self.rows):
            writer.writerow([name, *(_fmt(self.rows[name][c]) for c in self.columns)])
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
    """Per-track scores, their aggregate per target, the average over targets, and the tracks
    excluded from the aggregate (no score: museval refuses a track with a silent source).

    ``sdr_type`` is the primary metric (``aggregate``/``average``); ``metrics`` (None: that one
    alone) every metric of the rows, whose aggregates are in ``aggregates``/``averages``
    (cSDR: median over tracks; the others: mean)."""

    model: str
    sdr_type: str
    targets: list[str]
    per_track: dict[str, dict[str, float]]
    aggregate: dict[str, float] = field(default_factory=dict)
    average: float = float("nan")
    excluded: list[str] = field(default_factory=list)
    metrics: list[str] | None = None
    aggregates: dict[str, dict[str, float]] = field(default_factory=dict)
    averages: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.metrics = list(self.metrics or [self.sdr_type])
        names = sorted(self.per_track)
        excluded: set[str] = set()
        for metric in self.metrics:
            cols = [result_column(t, metric, self.sdr_type) for t in self.targets]
            values = [[self.per_track[n][c] for c in cols] for n in names]
            agg = aggregate_tracks(np.asarray(values).reshape(-1, len(cols)), metric)
            self.aggregates[metric] = {t: float(v) for t, v in zip(self.targets, agg)}
            self.averages[metric] = average_over_targets(agg)
            excluded |= {n for n, row in zip(names, values) if any(math.isnan(v) for v in row)}
        self.aggregate = self.aggregates[self.sdr_type]
        self.average = self.averages[self.sdr_type]
        self.excluded = sorted(excluded)

    def table(self) -> str:
        """A Markdown table: one row per target and the average."""
        return format_table([self])


def render_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool = False
) -> str:
    """Columns of text cells aligned under ``header``: plain (two spaces between columns, a
    dashed rule under the header) or Markdown (``| a | b |``, numbers right-aligned)."""
    cells = [list(header)] + [list(row) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    if not markdown:
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)
    lines = []
    for row in cells:
        first, *rest = row
        lines.append(
            "| " + " | ".join([first.ljust(widths[0])]
                              + [c.rjust(w) for c, w in zip(rest, widths[1:])]) + " |"
        )  # fmt: skip
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def format_table(results: Sequence[EvalResult]) -> str:
    """Markdown table of one or more results side by side (e.g. a model and the mixture
    baseline): a row per target and the average, a column per result."""
    if not results:
        raise ValueError("no results to tabulate")
    targets = list(dict.fromkeys(t for r in results for t in r.targets))
    heads = [f"{METRIC_LABELS[m]} - {r.model}" for r in results for m in r.metrics]
    width = max(8, *(len(t) for t in targets))
    rows = []
    for name in [*targets, "average"]:
        cells = [name.ljust(width)]
        for r in results:
            for m in r.metrics:
                agg = r.aggregates[m]
                value = r.averages[m] if name == "average" else agg.get(name, float("nan"))
                cells.append(f"{value:.2f}")
        rows.append(cells)
    lines = [render_table([" " * width, *heads], rows, markdown=True)]
    for r in results:
        if r.excluded:
            lines.append(
                f"{r.model}: {len(r.excluded)} of {len(r.per_track)} track(s) excluded (no "
                f"{METRIC_LABELS[r.sdr_type]}): {', '.join(r.excluded)}"
            )
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
    for metric in result.metrics[1:]:
        for t, v in result.aggregates[metric].items():
            new[result_column(t, metric, result.sdr_type)] = _fmt(v)
    new["average"] = _fmt(result.average)
    for metric in result.metrics[1:]:
        new[f"average.{metric}"] = _fmt(result.averages[metric])
    new["tracks"] = str(len(result.per_track) - len(result.excluded))
    new["excluded"] = ";".join(result.excluded)
    rows.append(new)
    for key in new:
        if key not in columns:
            columns.append(key)
    tail = [c for c in columns if c == "average" or c.startswith("average.")]
    tail += [c for c in ("tracks", "excluded") if c in columns]
    columns = [c for c in columns if c not in tail] + tail  # keep these last
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())
    return path
