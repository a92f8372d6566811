"""Tabulate the validation results of every training run logged under ``tb_dir``.

    python display_tbresults.py                     # every run under tb_logs/
    python display_tbresults.py tb_dir=other_logs/ +monitor=sdr +csv_path=results.csv

For each run (``<tb_dir>/<model>-<target>/<version>``) the event files give the validation
scalars and the run's hyperparameters. The epoch is picked by the run's monitored quantity
(``optim.monitor_val``: best ``val/loss`` (min) or ``val/usdr`` (max); ``+monitor=loss|sdr``
overrides it for all runs). The table holds the hyperparameters that differ between runs, the
epoch (0-based, as Lightning counts), its validation uSDR and loss; it is printed and written
(atomically) to ``<out_dir>/val_results.csv`` (or ``+csv_path``).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import yaml
from omegaconf import DictConfig

from bsrnn.callbacks import flatten
from bsrnn.cli import register_schemas, run_entry
from bsrnn.errors import ConfigError
from bsrnn.results import render_table
from bsrnn.settings import MONITORS

log = logging.getLogger("display_tbresults")
register_schemas()
#: where things go, not what is trained: never a variant column
IGNORED_KEYS = ("out_dir", "tb_dir", "tb_version", "dset.data_dir", "dset.sad_dir", "ckpt_path",
                "overrides")  # fmt: skip


@dataclass
class RunResult:
    """One training run: its folder, hyperparameters and validation curve."""

    run: str  # "<model>-<target>/<version>"
    hparams: dict[str, Any]
    val: dict[int, dict[str, float]] = field(default_factory=dict)  # epoch -> {tag: value}


def _hparams_from_events(acc: Any) -> dict[str, Any]:
    from tensorboard.plugins.hparams import plugin_data_pb2

    try:
        content = acc.PluginTagToContent("hparams").get("_hparams_/session_start_info")
    except KeyError:  # no hyperparameters in this run's events
        return {}
    if content is None:
        return {}
    data = plugin_data_pb2.HParamsPluginData.FromString(content)
    out: dict[str, Any] = {}
    for key, value in data.session_start_info.hparams.items():
        kind = value.WhichOneof("kind")
        out[key] = getattr(value, kind) if kind else None
        if kind == "number_value" and float(out[key]).is_integer():
            out[key] = int(out[key])
    return out


def read_run(folder: Path, tb_dir: Path) -> RunResult | None:
    """Read one run folder (its event files); None when it holds no validation scalars."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = set(acc.Tags().get("scalars", []))
    if not tags & {"val/loss", "val/usdr"}:
        return None
    step_epoch = {e.step: int(e.value) for e in acc.Scalars("epoch")} if "epoch" in tags else {}
    val: dict[int, dict[str, float]] = {}
    for tag in ("val/loss", "val/usdr"):
        if tag in tags:
            for event in acc.Scalars(tag):
                epoch = step_epoch.get(event.step, event.step)
                val.setdefault(epoch, {})[tag] = float(event.value)
    hparams = _hparams_from_events(acc)
    if not hparams and (folder / "config.yaml").is_file():  # fall back on the run's record
        record = yaml.safe_load((folder / "config.yaml").read_text()) or {}
        hparams = flatten(record.get("config", {}))
        hparams.update({f"choice/{k}": v for k, v in (record.get("choices") or {}).items()})
    return RunResult(run=folder.relative_to(tb_dir).as_posix(), hparams=hparams, val=val)


def collect_runs(tb_dir: str | os.PathLike) -> list[RunResult]:
    """Every run folder under ``tb_dir`` that holds validation scalars, sorted by path."""
    root = Path(tb_dir)
    if not root.is_dir():
        raise ConfigError(f"no TensorBoard folder at {root} (set tb_dir=...)")
    folders = sorted({p.parent for p in root.rglob("events.out.tfevents.*")})
    runs = []
    for folder in folders:
        result = read_run(folder, root)
        if result is None:
            log.warning("%s: no validation results yet, skipped", folder)
        else:
            runs.append(result)
    return runs


def _varying_keys(runs: list[RunResult]) -> list[str]:
    keys = sorted({k for r in runs for k in r.hparams})
    varying = []
    for key in keys:
        if key.split(".")[0] in IGNORED_KEYS or key in IGNORED_KEYS or key.startswith("hydra"):
            continue
        if len({str(r.hparams.get(key, "-")) for r in runs}) > 1:
            varying.append(key)
    return varying


def variant_table(
    runs: list[RunResult], monitor: str | None = None
) -> tuple[list[str], list[list[Any]]]:
    """``(header, rows)``: run, differing hyperparameters, monitor, epoch, val uSDR, val loss.

    Rows are sorted by run name (model-target) and then by validation uSDR (best first)."""
    if monitor is not None and monitor not in MONITORS:
        raise ConfigError(f"invalid monitor={monitor!r}: expected one of {', '.join(MONITORS)}")
    varying = _varying_keys(runs)
    header = ["run", *varying, "monitor", "epoch", "val_usdr", "val_loss"]
    rows = []
    for r in runs:
        mon = monitor or str(r.hparams.get("optim.monitor_val", "loss"))
        if mon not in MONITORS:
            mon = "loss"
        tag, mode = MONITORS[mon]
        best = min if mode == "min" else max
        scored = [
            (e, v[tag]) for e, v in sorted(r.val.items()) if tag in v and not math.isnan(v[tag])
        ]
        if not scored:
            log.warning("%s: no %s values, skipped", r.run, tag)
            continue
        epoch = best(scored, key=lambda item: item[1])[0]
        values = r.val[epoch]
        rows.append(
            [
                r.run,
                *(r.hparams.get(k, "-") for k in varying),
                mon,
                epoch,
                Score(values.get("val/usdr", math.nan)),
                Score(values.get("val/loss", math.nan)),
            ]
        )
    rows.sort(key=lambda row: (row[0].split("/")[0], -_num(row[-2])))
    return header, rows


def _num(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return -math.inf
    return -math.inf if math.isnan(v) else v


class Score(float):
    """A validation score: printed with 3 decimals (hyperparameters keep 4 significant digits)."""


def _cell(value: Any) -> str:
    if isinstance(value, Score):
        return f"{value:.3f}"
    if isinstance(value, float):  # so that a learning rate of 5e-4 stays 0.0005
        return f"{value:.4g}"
    return str(value)


def write_csv(path: str | os.PathLike, header: list[str], rows: list[list[Any]]) -> Path:
    """Write the table to ``path`` atomically (temp file + rename)."""
    from bsrnn.files import write_text_atomic

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows([[_cell(c) for c in row] for row in rows])
    return write_text_atomic(path, buf.getvalue())


def format_table(header: list[str], rows: list[list[Any]]) -> str:
    """Aligned plain-text table of the runs."""
    return render_table(header, [[_cell(c) for c in row] for row in rows])


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    for handler in logging.getLogger().handlers:  # stdout holds the table only
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)
    run_entry("display_tbresults.py", lambda: report(cfg))


def report(cfg: DictConfig) -> None:
    """Print the table of every run under ``cfg.tb_dir`` and write it as CSV."""
    runs = collect_runs(cfg.tb_dir)
    header, rows = variant_table(runs, monitor=cfg.get("monitor"))
    if not rows:
        raise ConfigError(f"no run with validation results under {cfg.tb_dir}")
    csv_path = cfg.get("csv_path") or Path(cfg.out_dir) / "val_results.csv"
    write_csv(csv_path, header, rows)
    print(format_table(header, rows))  # noqa: T201 - the table is this script's output
    log.info("%d runs -> %s", len(rows), csv_path)


if __name__ == "__main__":
    main()
