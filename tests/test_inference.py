"""inference.py: any readable file, rate and channel count in; stems aligned with it out."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir

from bsrnn.audio import AudioError, read_audio, resample, write_audio
from bsrnn.checkpoints import save_model
from bsrnn.cli import register_schemas
from bsrnn.errors import ConfigError
from bsrnn.model_folder import load_separator
from bsrnn.models import build_model
from bsrnn.separator import Separator

REPO = Path(__file__).resolve().parents[1]
ALL = ["vocals", "bass", "drums", "other"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
register_schemas()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("infer")
    torch.manual_seed(0)
    for target in ALL:
        save_model(
            build_model(dict(target=target, feature_dim=8, num_repeat=1)),
            root / "out" / "bsrnn-tiny" / f"{target}.ckpt",
        )
    simo = dict(targets=ALL, feature_dim=16, num_repeat=2, subtract_last_trgt=True)
    save_model(build_model(simo), root / "out" / "simo-bsrnn-tiny" / "separator.ckpt")
    t = np.arange(int(2.5 * 22050)) / 22050
    mono = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * np.sin(2 * np.pi * 3000 * t))[None]
    sf.write(root / "mono.flac", mono.T.astype(np.float32), 22050)
    rng = np.random.default_rng(0)
    stereo = (0.1 * rng.standard_normal((2, 3 * 44100))).astype(np.float32)
    write_audio(root / "stereo.wav", stereo, 44100, "FLOAT")
    return root


def load_inference():
    spec = importlib.util.spec_from_file_location("_entry_inference", REPO / "inference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_inference(root: Path, *extra: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose(
            "config",
            [
                f"out_dir={root / 'out'}",
                "src_mod=bsrnn-tiny",
                "eval.device=cpu",
                "eval.progress=false",
                *extra,
            ],
        )
    return load_inference().run(cfg)


def separator(root: Path, targets=ALL) -> Separator:
    return load_separator(root / "out" / "bsrnn-tiny", targets)


def separate(sep: Separator, mixture: np.ndarray) -> dict[str, np.ndarray]:
    """``{target: [C, T]}`` of a mixture ``[C, T]`` at the model's rate."""
    return dict(zip(sep.targets, sep.separate_audio(mixture, sep.sample_rate)))


def test_multi_target_preset_writes_all_four_stems(env, tmp_path):
    rec = tmp_path / "stems"
    written = run_inference(
        env, "src_mod=simo-bsrnn-tiny", f"+file_path={env / 'stereo.wav'}", f"+rec_dir={rec}"
    )
    assert sorted(written) == sorted(ALL)
    mix, _ = read_audio(env / "stereo.wav")
    stems = np.stack([read_audio(rec / f"{t}.wav")[0] for t in ALL])
    assert stems.shape == (4, *mix.shape)
    # the last target is the mixture minus the others (subtract_last_trgt), up to the STFT
    np.testing.assert_allclose(stems.sum(0), mix, atol=1e-4)


def test_a_10_sample_file_is_padded_and_separated(env, tmp_path):
    sf.write(tmp_path / "tiny.wav", (0.1 * np.ones((10, 2))).astype(np.float32), 44100)
    rec = tmp_path / "stems"
    run_inference(env, f"+file_path={tmp_path / 'tiny.wav'}", f"+rec_dir={rec}")
    stem, _ = read_audio(rec / "vocals.wav")
    assert stem.shape == (2, 10) and np.isfinite(stem).all()


def test_rec_dir_naming_a_file_is_refused_before_anything_runs(env, tmp_path):
    (tmp_path / "taken").write_text("mine")
    with pytest.raises(ConfigError, match=r"rec_dir=.*taken is an existing file"):
        run_inference(env, f"+file_path={env / 'stereo.wav'}", f"+rec_dir={tmp_path / 'taken'}")
    assert (tmp_path / "taken").read_text() == "mine"


def test_nan_samples_are_refused_naming_the_file(env, tmp_path):
    audio = (0.1 * np.ones((3000, 2))).astype(np.float32)
    audio[2000, 1] = np.nan
    sf.write(tmp_path / "nan.wav", audio, 44100, subtype="FLOAT")
    rec = tmp_path / "stems"
    with pytest.raises(AudioError, match=r"nan\.wav.*2000"):
        run_inference(env, f"+file_path={tmp_path / 'nan.wav'}", f"+rec_dir={rec}")
    assert not rec.exists()


def test_mono_flac_at_22khz(env, tmp_path):
    rec = tmp_path / "stems"
    written = run_inference(env, f"+file_path={env / 'mono.flac'}", f"+rec_dir={rec}")
    assert sorted(written) == sorted(ALL)
    assert sorted(p.name for p in rec.iterdir()) == sorted(f"{t}.wav" for t in ALL)
    mix, _ = read_audio(env / "mono.flac")
    x = np.repeat(resample(mix, 22050, 44100), 2, axis=0)  # the model sees stereo at 44.1 kHz
    est = separate(separator(env), x)
    for target in ALL:
        info = sf.info(rec / f"{target}.wav")
        assert (info.samplerate, info.channels, info.frames) == (22050, 1, mix.shape[1])
        stem, _ = read_audio(rec / f"{target}.wav")
        want = resample(est[target].mean(axis=0, keepdims=True), 44100, 22050)[:, : mix.shape[1]]
        np.testing.assert_allclose(stem, want, atol=1e-5)


def test_stereo_wav_offset_max_len_targets(env, tmp_path):
    rec = tmp_path / "stems"
    run_inference(
        env,
        f"+file_path={env / 'stereo.wav'}",
        f"+rec_dir={rec}",
        "offset=0.5",
        "max_len=1.25",
        "targets=[vocals,bass]",
    )
    assert sorted(p.name for p in rec.iterdir()) == ["bass.wav", "vocals.wav"]
    mix, _ = read_audio(env / "stereo.wav", start=22050, stop=22050 + 55125)
    est = separate(separator(env, ["vocals", "bass"]), mix)
    for target in ("vocals", "bass"):
        stem, sr = read_audio(rec / f"{target}.wav")
        assert sr == 44100 and stem.shape == (2, 55125)
        np.testing.assert_allclose(stem, est[target], atol=1e-6)


def test_bad_inputs_are_clear_errors_and_write_nothing(env, tmp_path):
    (tmp_path / "garbage.wav").write_bytes(b"this is not audio at all" * 10)
    sf.write(tmp_path / "empty.wav", np.zeros((0, 2), dtype=np.float32), 44100)
    cases = {
        "missing.wav": "not found",
        "garbage.wav": "cannot read",
        "empty.wav": "no audio",
    }
    for name, message in cases.items():
        rec = tmp_path / f"rec_{name}"
        with pytest.raises(AudioError, match=message):
            run_inference(env, f"+file_path={tmp_path / name}", f"+rec_dir={rec}")
        assert not rec.exists()
    rec = tmp_path / "rec_offset"
    with pytest.raises(AudioError, match="past the end"):
        run_inference(env, f"+file_path={env / 'stereo.wav'}", f"+rec_dir={rec}", "offset=3.0")
    assert not rec.exists()
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp dirs left


@pytest.mark.slow
def test_seed_command_and_exit_status(env, tmp_path):
    rec = tmp_path / "stems"
    base = [
        sys.executable,
        "inference.py",
        f"out_dir={env / 'out'}",
        "src_mod=bsrnn-tiny",
        f"hydra.run.dir={tmp_path / 'hydra'}",
    ]
    proc = subprocess.run(
        [*base, f"+file_path={env / 'stereo.wav'}", f"+rec_dir={rec}", "targets=[vocals,bass]"],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in rec.iterdir()) == ["bass.wav", "vocals.wav"]
    bad = subprocess.run(
        [*base, f"+file_path={tmp_path / 'nope.mp3'}", f"+rec_dir={tmp_path / 'x'}"],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    text = bad.stdout + bad.stderr
    assert bad.returncode == 1 and "Traceback" not in text
    assert f"audio file not found: {tmp_path / 'nope.mp3'}" in text
    assert not (tmp_path / "x").exists()
