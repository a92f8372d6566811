"""evaluate.py and bsrnn.evaluation on a small stand-in test set.

Expected values never come from the code under test: the model's masks are set to pass the
mixture through (so its estimate is the mixture, up to the STFT round trip), uSDR is recomputed
here with numpy from its definition, and cSDR comes from museval's own bss_eval.
"""

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

from bsrnn.audio import read_audio, write_audio
from bsrnn.checkpoints import save_model
from bsrnn.chunking import ChunkSettings
from bsrnn.data import DataSettings
from bsrnn.errors import ConfigError, SilentSourceError
from bsrnn.evaluation import EvalSettings, run_evaluation
from bsrnn.metrics import load_museval_metrics
from bsrnn.models import build_model

REPO = Path(__file__).resolve().parents[1]
TARGETS = ["vocals", "bass"]
STEMS = ["vocals", "bass", "drums", "other"]
SR = 44100
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}


def load_entry(name: str):
    spec = importlib.util.spec_from_file_location(f"_entry_{name}", REPO / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pass_through_model(target: str):
    """A tiny network whose masks are 1 + 0j: its estimate is the mixture."""
    model = build_model(dict(target=target, feature_dim=8, num_repeat=1))
    with torch.no_grad():
        for masker in model.maskers:
            for weight, bias in zip(masker.out_weights, masker.out_biases):
                weight.zero_()
                w = bias.shape[-1] // 4  # (value, gate) x (real, imag) x bins
                bias.zero_()
                bias[..., :w] = 1.0  # value: real 1, imag 0
                bias[..., 2 * w :] = 30.0  # gate: sigmoid(30) = 1 - 1e-13
    return model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """3 test tracks of 1.5 s whose mixture.wav is NOT the sum of the stems (x0.5), plus a
    fourth whose bass is silent; pass-through checkpoints in out/bsrnn-tiny/."""
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    t = np.arange(int(1.5 * SR)) / SR
    for i in range(4):
        stems = {
            "vocals": 0.2 * np.sin(2 * np.pi * (300 + 50 * i) * t) * np.ones((2, 1)),
            "bass": 0.3 * np.sin(2 * np.pi * (60 + 10 * i) * t) * np.array([[1.0], [0.8]]),
            "drums": 0.05 * rng.standard_normal((2, t.size)),
            "other": 0.1 * np.sin(2 * np.pi * 1000 * t + i) * np.ones((2, 1)),
        }
        if i == 3:
            stems["bass"] = np.zeros_like(stems["bass"])
        folder = root / "data" / "test" / f"track{i}"
        for name, audio in stems.items():
            write_audio(folder / f"{name}.wav", audio.astype(np.float32), SR, "FLOAT")
        mix = 0.5 * sum(a.astype(np.float32) for a in stems.values())
        write_audio(folder / "mixture.wav", mix, SR, "FLOAT")
    for target in TARGETS:
        save_model(pass_through_model(target), root / "out" / "bsrnn-tiny" / f"{target}.ckpt")
    return root


def track_audio(root: Path, name: str, mixture: str = "stems") -> tuple[np.ndarray, np.ndarray]:
    folder = root / "data" / "test" / name
    stems = np.stack([read_audio(folder / f"{s}.wav")[0] for s in STEMS]).astype(np.float64)
    mix = stems.sum(0) if mixture == "stems" else read_audio(folder / "mixture.wav")[0]
    return np.asarray(mix, dtype=np.float64), stems[: len(TARGETS)]


def usdr_by_definition(ref: np.ndarray, est: np.ndarray) -> np.ndarray:
    num = np.square(ref).sum(axis=(-2, -1)) + 1e-7
    return 10 * np.log10(num / (np.square(est - ref).sum(axis=(-2, -1)) + 1e-7))


def overrides(root: Path, *extra: str) -> list[str]:
    return [
        "dset=musdb18hq",
        f"dset.data_dir={root / 'data'}",
        f"out_dir={root / 'out'}",
        "src_mod=bsrnn-tiny",
        "targets=[vocals,bass]",
        "eval.segment_len=1.0",
        "eval.device=cpu",
        "eval.progress=false",
        "eval.num_threads=1",
        *extra,
    ]


def flat(per_track: dict[str, dict[str, float]]) -> dict[str, float]:
    return {f"{k}/{t}": v for k, scores in per_track.items() for t, v in scores.items()}


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def evaluate(root: Path, out_dir: Path | None = None, mixture: str = "stems", **settings):
    out_dir = out_dir or root / "out"
    for target in TARGETS:  # the pass-through checkpoints, in this run's folder
        path = out_dir / "bsrnn-tiny" / f"{target}.ckpt"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes((root / "out" / "bsrnn-tiny" / f"{target}.ckpt").read_bytes())
    return run_evaluation(
        data=DataSettings(data_dir=root / "data", mixture=mixture),
        settings=EvalSettings(**{"progress": False, "device": "cpu", "num_threads": 1, **settings}),
        chunking=ChunkSettings(segment_len=1.0),
        out_dir=out_dir,
        model_name="bsrnn-tiny",
        targets=TARGETS,
    )


@pytest.mark.slow
def test_evaluate_script_usdr_of_the_sum_of_stems(setup):
    """The seed's command as a subprocess: per-track CSV, summary, printed table."""
    root = setup
    cmd = [sys.executable, "evaluate.py", *overrides(root, f"hydra.run.dir={root / 'hydra'}")]
    proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "| vocals" in log and "| average" in log and "uSDR - bsrnn-tiny" in log
    rows = read_rows(root / "out" / "bsrnn-tiny" / "test_results_usdr.csv")
    assert [r["track"] for r in rows] == ["track0", "track1", "track2", "track3"]
    want = {}
    for row in rows:
        mix, refs = track_audio(root, row["track"])  # the estimate is the sum of the stems
        want[row["track"]] = usdr_by_definition(refs, np.stack([mix, mix]))
        np.testing.assert_allclose([float(row[t]) for t in TARGETS], want[row["track"]], atol=1e-3)
    summary = read_rows(root / "out" / "test_results_usdr.csv")
    mean = np.mean(list(want.values()), axis=0)
    np.testing.assert_allclose([float(summary[0][t]) for t in TARGETS], mean, atol=1e-3)
    assert float(summary[0]["average"]) == pytest.approx(mean.mean(), abs=1e-3)


def test_mixture_file_is_an_option(setup, tmp_path):
    result = evaluate(setup, tmp_path / "out", mixture="file")
    for name, scores in result.per_track.items():
        mix, refs = track_audio(setup, name, mixture="file")  # mixture.wav = half the sum
        want = usdr_by_definition(refs, np.stack([mix, mix]))
        np.testing.assert_allclose([scores[t] for t in TARGETS], want, atol=1e-3)


def test_csdr_equals_museval_and_lists_the_excluded_track(setup, tmp_path):
    root = setup
    entry = load_entry("evaluate")
    rec = tmp_path / "rec"
    from hydra import compose, initialize_config_dir

    from bsrnn.cli import register_schemas

    register_schemas()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose("config", overrides(root, "eval.sdr_type=museval", f"eval.rec_dir={rec}"))
        result = entry.run(cfg)
        base = entry.run(compose("config", overrides(root, "eval.sdr_type=csdr",
                                                     "eval.baseline=mixture")))  # fmt: skip
    metrics = load_museval_metrics()
    for name in ("track0", "track1", "track2"):
        mix, refs = track_audio(root, name)
        est = np.stack([read_audio(rec / name / f"{t}.wav")[0] for t in TARGETS])
        sdr = metrics.bss_eval(
            np.swapaxes(refs, 1, 2), np.swapaxes(est, 1, 2), window=SR, hop=SR,
            compute_permutation=False, framewise_filters=False, bsseval_sources_version=False,
        )[0]  # fmt: skip
        want = np.nanmedian(sdr, axis=1)
        np.testing.assert_allclose([result.per_track[name][t] for t in TARGETS], want, atol=1e-3)
    # track3 has a silent bass: museval refuses it; it is excluded and named, not dropped silently
    assert result.excluded == ["track3"] and np.isnan(result.per_track["track3"]["vocals"])
    assert "1 of 4 track(s) excluded" in result.table() and "track3" in result.table()
    summary = {r["model"]: r for r in read_rows(root / "out" / "test_results_csdr.csv")}
    assert summary["bsrnn-tiny"]["excluded"] == "track3" and summary["bsrnn-tiny"]["tracks"] == "3"
    assert sorted(p.name for p in (rec / "track1").iterdir()) == ["bass.wav", "vocals.wav"]
    assert base.model == "mixture" and (root / "out" / "mixture" / "test_results_csdr.csv").exists()


def test_strict_makes_a_refused_track_an_error(setup, tmp_path):
    with pytest.raises(SilentSourceError, match="track3.*eval.strict=true"):
        evaluate(setup, tmp_path / "out", sdr_type="csdr", strict=True)


def test_resume_skips_finished_tracks(setup, tmp_path, caplog):
    root = setup
    out = tmp_path / "out"
    first = evaluate(root, out)
    per_track = out / "bsrnn-tiny" / "test_results_usdr.csv"
    rows = read_rows(per_track)
    with per_track.open("w", newline="") as f:  # an interruption after two tracks
        writer = csv.DictWriter(f, fieldnames=["track", *TARGETS], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows[:2])
    with caplog.at_level(logging.INFO, logger="bsrnn"):
        second = evaluate(root, out)
    done = [r.getMessage() for r in caplog.records if r.getMessage().startswith("track")]
    assert [d.split(":")[0] for d in done] == ["track2", "track3"]
    assert any("resuming: 2 track(s)" in r.getMessage() for r in caplog.records)
    assert flat(second.per_track) == pytest.approx(flat(first.per_track))
    # another configuration does not mix with these rows: it starts over
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bsrnn"):
        run_evaluation(
            data=DataSettings(data_dir=root / "data"),
            settings=EvalSettings(progress=False, device="cpu", num_threads=1),
            chunking=ChunkSettings(segment_len=0.5),
            out_dir=out,
            model_name="bsrnn-tiny",
            targets=TARGETS,
        )
    assert any("differs in: chunking" in r.getMessage() for r in caplog.records)
    assert (per_track.parent / "test_results_usdr.csv.old").exists()


@pytest.mark.slow
def test_parallel_workers_give_the_same_scores(setup, tmp_path):
    kwargs = dict(sdr_type="csdr", baseline="mixture")
    serial = evaluate(setup, tmp_path / "a", **kwargs)
    parallel = evaluate(setup, tmp_path / "b", num_workers=2, **kwargs)
    assert flat(parallel.per_track) == pytest.approx(flat(serial.per_track), nan_ok=True)


def test_missing_checkpoint_exits_with_one_line(setup, tmp_path):
    cmd = [
        sys.executable,
        "evaluate.py",
        *overrides(setup, f"out_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'hydra'}"),
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"evaluate.py: error: checkpoint not found: {tmp_path / 'bsrnn-tiny' / 'vocals.ckpt'} "
        "(train the model first, or place the published checkpoint there; allow random weights "
        "only for pipeline checks)"
    )


def test_model_dir_evaluates_a_folder_without_a_preset(setup, tmp_path):
    """run_evaluation(model_dir=...): every stem of the folder's checkpoints, results beside
    them, the model named after the folder; the same scores as through the preset."""
    root = setup
    folder = tmp_path / "my-model"
    folder.mkdir()
    for target in TARGETS:
        (folder / f"{target}.ckpt").write_bytes((root / "out" / "bsrnn-tiny" / f"{target}.ckpt")
                                                .read_bytes())  # fmt: skip
    kwargs = dict(
        data=DataSettings(data_dir=root / "data"),
        settings=EvalSettings(progress=False, device="cpu", num_threads=1),
        chunking=ChunkSettings(segment_len=1.0),
        out_dir=tmp_path / "out",
    )
    result = run_evaluation(**kwargs, model_name="ignored", targets=None, model_dir=folder)
    assert result.model == "my-model" and result.targets == TARGETS
    assert (folder / "test_results_usdr.csv").exists()
    assert "my-model" in (tmp_path / "out" / "test_results_usdr.csv").read_text()
    want = evaluate(root, tmp_path / "preset")
    assert flat(result.per_track) == pytest.approx(flat(want.per_track))
    only = run_evaluation(**kwargs, model_name="x", targets=["bass"], model_dir=folder)
    assert only.targets == ["bass"]


def test_tta_and_wiener_settings_reach_the_separator_and_the_identity(setup, tmp_path):
    result = evaluate(setup, tmp_path / "out", tta=True, wiener_iterations=1)
    assert np.isfinite(flat(result.per_track)["track0/vocals"])
    meta = next((tmp_path / "out" / "bsrnn-tiny").glob("test_results_usdr*.json"), None)
    text = meta.read_text() if meta else ""
    assert '"tta": true' in text and '"wiener_iterations": 1' in text
    with pytest.raises(ConfigError, match="wiener_iterations"):
        EvalSettings(wiener_iterations=-1)
    assert EvalSettings(tta=True).separator_options()["tta"] is True


def test_more_metrics_add_columns_and_resume(setup, tmp_path, caplog):
    """eval.metrics: every metric's columns in the per-track file, the summary and the table;
    the values are those of bsrnn.metrics (checked against MSST's own in test_metrics)."""
    from bsrnn import metrics

    names = ["usdr", "si_sdr", "bleedless", "fullness", "l1_freq", "museval"]
    rec = tmp_path / "rec"
    result = evaluate(setup, tmp_path / "out", metrics=names, rec_dir=str(rec))
    assert result.metrics == ["usdr", "si_sdr", "bleedless", "fullness", "l1_freq", "csdr"]
    for name in ("track0", "track2"):
        mix, refs = track_audio(setup, name)
        est = np.stack([read_audio(rec / name / f"{t}.wav")[0] for t in TARGETS])
        row = result.per_track[name]
        np.testing.assert_allclose([row[t] for t in TARGETS], usdr_by_definition(refs, est),
                                   atol=1e-3)  # fmt: skip
        for j, t in enumerate(TARGETS):
            assert row[f"{t}.si_sdr"] == pytest.approx(metrics.si_sdr(refs[j], est[j]), abs=1e-4)
            bleedless, fullness = metrics.bleedless_fullness(refs[j], est[j], SR)
            assert row[f"{t}.bleedless"] == pytest.approx(bleedless, rel=1e-4)
            assert row[f"{t}.fullness"] == pytest.approx(fullness, rel=1e-4)
            assert row[f"{t}.l1_freq"] == pytest.approx(metrics.l1_freq(refs[j], est[j]), rel=1e-4)
    # means over tracks, except cSDR (median); track3 (silent bass) has no cSDR only
    si = [result.per_track[n]["vocals.si_sdr"] for n in sorted(result.per_track)]
    assert result.aggregates["si_sdr"]["vocals"] == pytest.approx(np.mean(si))
    assert np.isnan(result.per_track["track3"]["bass.csdr"]) and result.excluded == ["track3"]
    table = result.table()
    for head in ("uSDR - bsrnn-tiny", "SI-SDR - bsrnn-tiny", "bleedless - bsrnn-tiny",
                 "fullness - bsrnn-tiny", "L1Freq - bsrnn-tiny", "cSDR - bsrnn-tiny"):  # fmt: skip
        assert head in table
    rows = read_rows(tmp_path / "out" / "bsrnn-tiny" / "test_results_usdr.csv")
    assert list(rows[0]) == ["track", "vocals", "bass", *(f"{t}.{m}" for m in result.metrics[1:]
                                                         for t in TARGETS)]  # fmt: skip
    summary = read_rows(tmp_path / "out" / "test_results_usdr.csv")[0]
    assert float(summary["bass.fullness"]) == pytest.approx(result.aggregates["fullness"]["bass"])
    assert float(summary["average.si_sdr"]) == pytest.approx(result.averages["si_sdr"])
    # a second run resumes every column; another list of metrics starts over
    with caplog.at_level(logging.INFO):
        again = evaluate(setup, tmp_path / "out", metrics=names, rec_dir=str(rec))
    assert "resuming: 4 track(s)" in caplog.text
    assert again.aggregates["si_sdr"] == result.aggregates["si_sdr"]
    fewer = evaluate(setup, tmp_path / "out", metrics=["usdr", "si_sdr"])
    assert fewer.metrics == ["usdr", "si_sdr"]
    assert (tmp_path / "out" / "bsrnn-tiny" / "test_results_usdr.csv.old").is_file()


def test_unknown_metric_is_one_line():
    with pytest.raises(ConfigError, match=r"eval.metrics entry 'psnr'.*usdr, csdr, si_sdr"):
        EvalSettings(metrics=["usdr", "psnr"])
    with pytest.raises(ConfigError, match="eval.metrics"):
        EvalSettings(metrics="si_sdr")
