"""display_tbresults.py on TensorBoard runs written the way training writes them."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import display_tbresults as dtb  # noqa: E402
from bsrnn.errors import ConfigError  # noqa: E402

# the two runs differ in loss domain and monitor: only those columns, never locations (out_dir)
VARIANT_HEADER = [
    "run", "optim.loss_domain", "optim.monitor_val", "monitor", "epoch", "val_usdr", "val_loss",
]  # fmt: skip


def write_run(
    folder: Path,
    params: dict,
    val: list[tuple[float, float]],
    first_epoch: int = 0,
    steps_per_epoch: int = 10,
    with_hparams: bool = True,
) -> None:
    """Events like a training run: per epoch ``epoch``, ``val/loss``, ``val/usdr`` at the step
    of the epoch's end, plus the run's hyperparameters (as RunRecorder writes them)."""
    writer = SummaryWriter(str(folder))
    if with_hparams:
        for summary in hparams(params, {"val/loss": 0.0, "val/usdr": 0.0}):
            writer.file_writer.add_summary(summary)
    for i, (loss, sdr) in enumerate(val):
        epoch = first_epoch + i
        step = (epoch + 1) * steps_per_epoch - 1
        writer.add_scalar("train/loss", loss + 0.1, step - 1)
        writer.add_scalar("epoch", epoch, step - 1)
        writer.add_scalar("val/loss", loss, step)
        writer.add_scalar("val/usdr", sdr, step)
        writer.add_scalar("epoch", epoch, step)
    writer.close()


BASE = {
    "optim.lr": 0.0005,
    "optim.loss_domain": "t+tf",
    "optim.monitor_val": "loss",
    "src_mod.feature_dim": 64,
    "out_dir": "outputs/variants/a",
    "dset.data_dir": "data/musdb18hq",
    "choice/src_mod": "bsrnn",
}


@pytest.fixture
def tb(tmp_path) -> Path:
    root = tmp_path / "tb"
    # run 1: best loss at epoch 1 (SDR is best at epoch 2, but the run monitors the loss)
    write_run(root / "bsrnn-vocals" / "version_0", BASE, [(0.9, 3.0), (0.5, 4.0), (0.6, 4.5)])
    # run 2: another loss domain, monitored by SDR: best at epoch 0
    params = dict(
        BASE,
        **{
            "optim.loss_domain": "t",
            "optim.monitor_val": "sdr",
            "out_dir": "outputs/variants/b",
            "dset.data_dir": "/scratch/musdb18hq",
        },
    )
    write_run(root / "bsrnn-vocals" / "version_1", params, [(0.8, 5.0), (0.7, 4.9)])
    # run 3: bass, no validation yet -> skipped
    write_run(root / "bsrnn-bass" / "version_0", BASE, [])
    return root


def test_variant_table_picks_the_monitored_epoch(tb):
    runs = dtb.collect_runs(tb)
    assert [r.run for r in runs] == ["bsrnn-vocals/version_0", "bsrnn-vocals/version_1"]
    header, rows = dtb.variant_table(runs)
    # only hyperparameters that differ, never locations (out_dir)
    assert header == VARIANT_HEADER
    table = {row[0]: row for row in rows}
    assert table["bsrnn-vocals/version_0"][1:] == [
        "t+tf",
        "loss",
        "loss",
        1,
        4.0,
        pytest.approx(0.5),
    ]
    assert table["bsrnn-vocals/version_1"][1:] == ["t", "sdr", "sdr", 0, 5.0, pytest.approx(0.8)]
    # best SDR first within a model-target
    assert [row[0] for row in rows] == ["bsrnn-vocals/version_1", "bsrnn-vocals/version_0"]

    # one monitor for all runs
    _, rows = dtb.variant_table(runs, monitor="sdr")
    assert {row[0]: row[4] for row in rows} == {
        "bsrnn-vocals/version_0": 2,
        "bsrnn-vocals/version_1": 0,
    }
    with pytest.raises(ValueError, match="loss, sdr"):
        dtb.variant_table(runs, monitor="acc")


def test_resumed_run_and_fallback_record(tmp_path):
    root = tmp_path / "tb"
    folder = root / "bsrnn-drums" / "version_0"
    write_run(folder, BASE, [(1.0, 1.0), (0.8, 2.0)])
    # resumed in the same folder (second event file) from epoch 1: epoch 1 is redone
    write_run(folder, BASE, [(0.4, 6.0), (0.3, 7.0)], first_epoch=1, with_hparams=False)
    (run,) = dtb.collect_runs(root)
    assert sorted(run.val) == [0, 1, 2]
    assert run.val[1] == {"val/loss": pytest.approx(0.4), "val/usdr": pytest.approx(6.0)}
    assert run.hparams["optim.loss_domain"] == "t+tf"

    # a run without the hparams summary falls back on its config.yaml record
    other = root / "bsrnn-drums" / "version_1"
    write_run(other, {}, [(0.5, 3.0)], with_hparams=False)
    (other / "config.yaml").write_text(
        "config:\n  optim:\n    loss_domain: tf\n    monitor_val: sdr\n"
    )
    runs = dtb.collect_runs(root)
    assert runs[1].hparams == {"optim.loss_domain": "tf", "optim.monitor_val": "sdr"}
    header, rows = dtb.variant_table(runs)
    assert "optim.loss_domain" in header and len(rows) == 2


def test_nan_values_are_never_picked(tmp_path):
    root = tmp_path / "tb"
    write_run(root / "m" / "version_0", BASE, [(math.nan, math.nan), (0.7, 2.0)])
    _, rows = dtb.variant_table(dtb.collect_runs(root))
    assert rows[0][-3:] == [1, 2.0, pytest.approx(0.7)]


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no TensorBoard folder"):
        dtb.collect_runs(tmp_path / "nowhere")


def test_script_prints_and_writes_the_csv(tb, tmp_path):
    out = tmp_path / "outputs"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "display_tbresults.py"),
            f"tb_dir={tb}",
            f"out_dir={out}",
            f"hydra.run.dir={tmp_path / 'hydra'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split() == VARIANT_HEADER
    assert lines[2].split() == ["bsrnn-vocals/version_1", "t", "sdr", "sdr", "0", "5.000", "0.800"]
    csv_lines = (out / "val_results.csv").read_text().splitlines()
    assert csv_lines[1] == "bsrnn-vocals/version_1,t,sdr,sdr,0,5.000,0.800"
    assert len(csv_lines) == 3
    assert [p.name for p in out.iterdir()] == ["val_results.csv"]  # no temp file left

    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "display_tbresults.py"),
            f"tb_dir={tmp_path / 'none'}",
            f"hydra.run.dir={tmp_path / 'hydra2'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith(
        f"no TensorBoard folder at {tmp_path / 'none'} (set tb_dir=...)"
    )


def test_small_hyperparameters_keep_their_value():
    # a learning rate of 5e-4 must not print as 0.001 (the two would look like the same run)
    assert dtb._cell(5e-4) == "0.0005"
    assert dtb._cell(2.5e-4) == "0.00025"
    assert dtb._cell(7.1234) == "7.123"
    assert dtb._cell(dtb.Score(7.1)) == "7.100"
    assert dtb._cell("lstm") == "lstm"
