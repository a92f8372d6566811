"""bsrnn-separate: an MP3, a 22.05 kHz mono FLAC and a broken WAV -> 24-bit FLAC stems at each
input's rate, channels and length, one line for the broken file, a non-zero exit; a second run
skips; --tta and --wiener change the stems; errors are one line; --list-models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from bsrnn.checkpoints import save_model
from bsrnn.models import build_model
from bsrnn.separate_cli import main, track_names

REPO = Path(__file__).resolve().parents[1]
STEMS = ["vocals", "bass", "drums", "other"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def tone(seconds: float, sr: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)
    gains = [1.0, 0.6][:channels]
    return np.stack([g * x for g in gains], axis=1).astype(np.float32)  # [n, C]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("separate")
    torch.manual_seed(0)
    model = build_model(dict(targets=STEMS, feature_dim=8, num_repeat=1, subtract_last_trgt=True))
    save_model(model.eval(), root / "models" / "tiny" / "separator.ckpt")
    save_model(model.eval(), root / "models" / "tiny" / "separator-last.ckpt")  # not used
    songs = root / "songs"
    songs.mkdir()
    assert "MP3" in sf.available_formats()
    sf.write(songs / "a.mp3", tone(1.3, 44100, 2, 0), 44100, format="MP3")
    sf.write(songs / "b_22k_mono.flac", tone(1.0, 22050, 1, 1), 22050)
    (songs / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really a wav file")
    return root


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = main([*map(str, args), "--no-progress", "-j", "1"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_separates_good_files_names_the_broken_one_and_skips_on_rerun(files, capsys):
    songs, out = files / "songs", files / "out"
    inputs = [songs / "a.mp3", songs / "b_22k_mono.flac", songs / "broken.wav"]
    code, text = run_cli(capsys, "-m", files / "models" / "tiny", *inputs,
                         "--format", "flac", "--bits", "24", "-o", out)  # fmt: skip
    assert code != 0
    broken = [line for line in text.splitlines() if "broken.wav" in line]
    assert len(broken) == 1 and "cannot read" in broken[0], text
    assert "Traceback" not in text
    assert "2 file(s) separated, 0 skipped, 1 failed" in text
    for name in ("a.mp3", "b_22k_mono.flac"):
        info_in = sf.info(songs / name)
        for stem in STEMS:
            info = sf.info(out / Path(name).stem / f"{stem}.flac")
            assert info.format == "FLAC" and info.subtype == "PCM_24"
            assert (info.samplerate, info.channels, info.frames) == (
                info_in.samplerate,
                info_in.channels,
                info_in.frames,
            )
    assert not (out / "broken").exists()
    assert sorted(p.name for p in (out / "a").iterdir()) == sorted(f"{s}.flac" for s in STEMS)
    stamp = (out / "a" / "vocals.flac").stat().st_mtime_ns

    code, text = run_cli(capsys, "-m", files / "models" / "tiny", *inputs,
                         "--format", "flac", "--bits", "24", "-o", out)  # fmt: skip
    assert code != 0 and "0 file(s) separated, 2 skipped, 1 failed" in text
    assert (out / "a" / "vocals.flac").stat().st_mtime_ns == stamp

    code, text = run_cli(capsys, "-m", files / "models" / "tiny", songs / "a.mp3", "--force",
                         "--format", "flac", "--bits", "24", "-o", out)  # fmt: skip
    assert code == 0 and "1 file(s) separated, 0 skipped, 0 failed" in text


def test_tta_and_wiener_change_the_stems(files, capsys):
    song = files / "songs" / "a.mp3"
    model = files / "models" / "tiny"
    results = {}
    for name, extra in {"plain": [], "tta": ["--tta"], "wiener": ["--wiener", "1"]}.items():
        out = files / f"opt-{name}"
        code, text = run_cli(capsys, "-m", model, song, "-o", out, "--stems", "vocals,bass",
                             "--precision", "fp32", *extra)  # fmt: skip
        assert code == 0, text
        assert sorted(p.name for p in (out / "a").iterdir()) == ["bass.wav", "vocals.wav"]
        results[name] = np.stack([sf.read(out / "a" / f"{s}.wav")[0] for s in ("vocals", "bass")])
        assert sf.info(out / "a" / "vocals.wav").subtype == "FLOAT"  # WAV default: 32-bit float
    plain = results["plain"]
    scale = np.abs(plain).max()
    for name in ("tta", "wiener"):
        diff = np.abs(results[name] - plain).max()
        assert diff > 1e-4 * scale, name
        assert np.isfinite(results[name]).all()


def test_folder_inputs_and_default_output(files, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "in"
    folder.mkdir()
    sf.write(folder / "c.wav", tone(0.5, 16000, 2, 3), 16000)
    (folder / "notes.txt").write_text("not audio")
    code, text = run_cli(capsys, "-m", files / "models" / "tiny", folder, "--stems", "drums")
    assert code == 0, text
    assert (tmp_path / "separated" / "tiny" / "c" / "drums.wav").is_file()


def test_errors_are_one_line(files, capsys):
    model = files / "models" / "tiny"
    song = files / "songs" / "a.mp3"
    code, text = run_cli(capsys, "-m", model, song, "--format", "flac", "--bits", "32")
    assert code == 1 and text.strip().startswith("bsrnn-separate: error: FLAC cannot hold 32")
    code, text = run_cli(capsys, "-m", model, song, "--stems", "piano")
    assert code == 1 and len(text.strip().splitlines()) == 1
    assert "no model for piano" in text and "vocals, bass, drums, other" in text
    code, text = run_cli(capsys, "-m", "no-such-model", "--out-dir", files / "models", song)
    assert code == 1 and "bsrnn-separate: error: model 'no-such-model'" in text


def test_preset_names_and_list_models(files, capsys):
    code, text = run_cli(capsys, "--list-models", "--out-dir", files / "models")
    assert code == 0
    assert "simo-bsrnn-tiny" in text and "bsrnn-tiny" in text  # the presets of conf/src_mod
    line = next(x for x in text.splitlines() if x.strip().startswith("tiny "))
    assert "vocals, bass, drums, other" in line and "separator.ckpt" in line
    code, text = run_cli(capsys, "-m", "tiny", "--out-dir", files / "models",
                         files / "songs" / "b_22k_mono.flac", "-o", files / "by-name")  # fmt: skip
    assert code == 0, text
    code, text = run_cli(capsys, "-m", "simo-bsrnn", "--out-dir", files / "models",
                         files / "songs" / "a.mp3")  # fmt: skip
    assert code == 1 and "has no trained model" in text


def test_python_dash_m_runs_the_command(files):
    proc = subprocess.run(
        [sys.executable, "-m", "bsrnn.separate", "-m", str(files / "nowhere"), "x.wav"],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("bsrnn-separate: error: model")


def test_track_names_stay_apart():
    files = [Path("a.mp3"), Path("x/a.wav"), Path("s1/mixture.wav"), Path("s2/mixture.wav"),
             Path("b.flac")]  # fmt: skip
    assert track_names(files) == {
        Path("a.mp3"): "a",
        Path("x/a.wav"): "x-a",
        Path("s1/mixture.wav"): "s1-mixture",
        Path("s2/mixture.wav"): "s2-mixture",
        Path("b.flac"): "b",
    }
