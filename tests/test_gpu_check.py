"""benchmarks/gpu_check.py runs on the CPU with --quick as a smoke test of itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_quick_on_cpu_writes_every_section(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore",
               PYTHONPATH=str(REPO / "src"))  # fmt: skip
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "gpu_check.py"),
            "--device",
            "cpu",
            "--quick",
            "--out",
            str(tmp_path),
        ],  # fmt: skip
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    for section in ("environment", "precision_matrix", "train_step", "gpu_vs_cpu",
                    "train_epoch", "ddp_one_device"):  # fmt: skip
        assert section in report and "error" not in report[section], section
    matrix = {(r["preset"], r["precision"]): r for r in report["precision_matrix"]}
    for preset in ("bsrnn-tiny", "simo-bsrnn-tiny", "bs-roformer-tiny"):
        for precision in ("fp32", "bf16-mixed", "16-mixed"):
            row = matrix[(preset, precision)]
            assert "error" not in row, row
            assert row["waveforms_dtype"] == "torch.float32" and row["grads_finite"]
    assert all("step_s" in r or "skipped" in r for r in report["train_step"])
    assert all(report["train_epoch"][k]["ok"] for k in ("prep_dataset", "train", "evaluate"))
    assert report["ddp_one_device"]["ok"]
    assert report["gpu_vs_cpu"]["max_abs_diff"] == 0.0  # CPU against itself
    assert (tmp_path / "gpu_check.md").read_text().startswith("# GPU check:")
