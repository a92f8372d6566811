"""evaluate.py and bsrnn.evaluation on a small stand-in test set with tiny checkpoints."""

from __future__ import annotations

import csv
import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from bsrnn import BSRNN
from bsrnn.audio import write_audio
from bsrnn.checkpoints import save_model
from bsrnn.evaluation import ScoreSettings, run_evaluation
from bsrnn.metrics import csdr, usdr
from bsrnn.separator import Separator

REPO = Path(__file__).resolve().parents[1]
TARGETS = ["vocals", "bass"]
SR = 44100
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}


def load_entry(name: str):
    spec = importlib.util.spec_from_file_location(f"_entry_{name}", REPO / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """3 test tracks of 1.5 s (distinct stems) and tiny checkpoints in out/bsrnn-tiny/."""
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    t = np.arange(int(1.5 * SR)) / SR
    for i in range(3):
        stems = {
            "vocals": 0.2 * np.sin(2 * np.pi * (300 + 50 * i) * t) * np.ones((2, 1)),
            "bass": 0.3 * np.sin(2 * np.pi * (60 + 10 * i) * t) * np.array([[1.0], [0.8]]),
            "drums": 0.05 * rng.standard_normal((2, t.size)),
            "other": 0.1 * np.sin(2 * np.pi * 1000 * t + i) * np.ones((2, 1)),
        }
        folder = root / "data" / "test" / f"track{i}"
        for name, audio in stems.items():
            write_audio(folder / f"{name}.wav", audio.astype(np.float32), SR, "FLOAT")
        mix = sum(a.astype(np.float32) for a in stems.values())
        write_audio(folder / "mixture.wav", mix, SR, "FLOAT")
    torch.manual_seed(0)
    for target in TARGETS:
        model = BSRNN(target=target, feature_dim=8, num_repeat=1)
        save_model(model, root / "out" / "bsrnn-tiny" / f"{target}.ckpt")
    return root


def overrides(root: Path, *extra: str) -> list[str]:
    return [
        f"data_dir={root / 'data'}",
        f"out_dir={root / 'out'}",
        "src_mod=bsrnn-tiny",
        "targets=[vocals,bass]",
        "eval.segment_len=1.0",
        "eval.device=cpu",
        "eval.progress=false",
        *extra,
    ]


def flat(per_track: dict[str, dict[str, float]]) -> dict[str, float]:
    return {f"{k}/{t}": v for k, scores in per_track.items() for t, v in scores.items()}


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def expected_scores(root: Path, kind: str) -> dict[str, np.ndarray]:
    """Scores recomputed here from the Separator and the metrics."""
    sep = Separator.from_dir(root / "out" / "bsrnn-tiny", TARGETS, segment_len=1.0)
    from bsrnn.audio import read_audio

    out = {}
    for folder in sorted((root / "data" / "test").iterdir()):
        mix, _ = read_audio(folder / "mixture.wav")
        refs = np.stack([read_audio(folder / f"{t}.wav")[0] for t in TARGETS])
        est = sep.separate_stacked(torch.from_numpy(mix)[None])[0].numpy()
        out[folder.name] = usdr(refs, est) if kind == "usdr" else csdr(refs, est, SR, SR)
    return out


@pytest.mark.slow
def test_evaluate_script_usdr(setup):
    """The seed's command as a subprocess: per-track CSV, summary, printed table."""
    root = setup
    cmd = [sys.executable, "evaluate.py", *overrides(root, f"hydra.run.dir={root / 'hydra'}")]
    proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "| vocals" in log and "| average" in log and "uSDR - bsrnn-tiny" in log
    rows = read_rows(root / "out" / "bsrnn-tiny" / "test_results_usdr.csv")
    assert [r["track"] for r in rows] == ["track0", "track1", "track2"]
    want = expected_scores(root, "usdr")
    for row in rows:
        got = [float(row[t]) for t in TARGETS]
        np.testing.assert_allclose(got, want[row["track"]], atol=1e-4)
    summary = read_rows(root / "out" / "test_results_usdr.csv")
    assert [r["model"] for r in summary] == ["bsrnn-tiny"]
    mean = np.mean([want[k] for k in want], axis=0)
    np.testing.assert_allclose([float(summary[0][t]) for t in TARGETS], mean, atol=1e-4)
    assert float(summary[0]["average"]) == pytest.approx(mean.mean(), abs=1e-4)


def test_csdr_baseline_and_estimates(setup, tmp_path):
    """eval.sdr_type=museval via the composed config; the mixture baseline; rec_dir."""
    root = setup
    entry = load_entry("evaluate")
    rec = tmp_path / "rec"
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose("config", overrides(root, "eval.sdr_type=museval", f"eval.rec_dir={rec}"))
        result = entry.run(cfg)
        base_cfg = compose("config", overrides(root, "eval.sdr_type=csdr", "eval.baseline=mixture"))
        base = entry.run(base_cfg)
    from bsrnn.audio import read_audio

    want = {}  # cSDR recomputed from the written estimates and the references
    for name in result.per_track:
        refs = np.stack(
            [read_audio(root / "data" / "test" / name / f"{t}.wav")[0] for t in TARGETS]
        )
        est = np.stack([read_audio(rec / name / f"{t}.wav")[0] for t in TARGETS])
        want[name] = csdr(refs, est, SR, SR)
    for name, scores in result.per_track.items():
        np.testing.assert_allclose([scores[t] for t in TARGETS], want[name], atol=1e-4)
    np.testing.assert_allclose(
        list(result.aggregate.values()), np.median([want[k] for k in want], axis=0), atol=1e-4
    )
    assert sorted(p.name for p in (rec / "track1").iterdir()) == ["bass.wav", "vocals.wav"]
    summary = read_rows(root / "out" / "test_results_csdr.csv")
    assert [r["model"] for r in summary] == ["bsrnn-tiny", "mixture"]
    # the mixture baseline: its estimate of every target is the mixture
    assert base.model == "mixture" and (root / "out" / "mixture" / "test_results_csdr.csv").exists()
    assert all(v < result.aggregate[t] + 30 for t, v in base.aggregate.items())


def test_resume_skips_finished_tracks(setup, tmp_path, caplog):
    root = setup
    out = tmp_path / "out"
    (out / "bsrnn-tiny").mkdir(parents=True)
    for target in TARGETS:
        (out / "bsrnn-tiny" / f"{target}.ckpt").write_bytes(
            (root / "out" / "bsrnn-tiny" / f"{target}.ckpt").read_bytes()
        )
    kwargs = dict(
        data_dir=root / "data",
        out_dir=out,
        model_name="bsrnn-tiny",
        targets=TARGETS,
        settings=ScoreSettings("usdr"),
        segment_len=1.0,
        device="cpu",
        progress=False,
    )
    first = run_evaluation(**kwargs)
    per_track = out / "bsrnn-tiny" / "test_results_usdr.csv"
    rows = read_rows(per_track)
    # simulate an interruption after two tracks: drop the last row
    with per_track.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["track", *TARGETS], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows[:2])
    with caplog.at_level(logging.INFO, logger="bsrnn.evaluation"):
        second = run_evaluation(**kwargs)
    done = [r.getMessage() for r in caplog.records if r.getMessage().startswith("track")]
    assert len(done) == 1 and done[0].startswith("track2:")
    assert any("resuming: 2 track(s)" in r.getMessage() for r in caplog.records)
    assert flat(second.per_track) == pytest.approx(flat(first.per_track))
    assert len(read_rows(per_track)) == 3
    # another configuration does not mix with these rows: it starts over
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bsrnn.evaluation"):
        run_evaluation(**{**kwargs, "segment_len": 0.5})
    assert any("differs in: chunking" in r.getMessage() for r in caplog.records)
    assert sum(r.getMessage().startswith("track") for r in caplog.records) == 3
    assert (per_track.parent / "test_results_usdr.csv.old").exists()


@pytest.mark.slow
def test_parallel_workers_give_the_same_scores(setup, tmp_path):
    root = setup
    kwargs = dict(
        data_dir=root / "data",
        model_name="mixture",
        targets=TARGETS,
        settings=ScoreSettings("csdr"),
        baseline="mixture",
        progress=False,
    )
    serial = run_evaluation(out_dir=tmp_path / "a", **kwargs)
    parallel = run_evaluation(out_dir=tmp_path / "b", num_workers=2, **kwargs)
    assert flat(parallel.per_track) == pytest.approx(flat(serial.per_track))


def test_missing_checkpoint_exits_with_one_line(setup, tmp_path):
    root = setup
    cmd = [
        sys.executable,
        "evaluate.py",
        *overrides(root, f"out_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'hydra'}"),
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text
    assert f"checkpoint not found: {tmp_path / 'bsrnn-tiny' / 'vocals.ckpt'}" in text
