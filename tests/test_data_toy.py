"""The synthetic stand-in dataset and prep_dataset.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

import bsrnn.data.toy as toy_module
from bsrnn.data import (
    MUSDB_STEMS,
    DatasetError,
    ToyParams,
    discover_tracks,
    generate_toy_dataset,
    prepare_toy_dataset,
    synthesize_track,
    toy_dataset_complete,
)
from bsrnn.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SR = 44100
PARAMS = ToyParams(n_train=3, n_test=1, min_duration=8.0, max_duration=9.0, seed=11)


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    generate_toy_dataset(root, PARAMS, progress=False)
    return root


def test_layout(toy: Path) -> None:
    assert sorted(p.name for p in (toy / "train").iterdir()) == [
        "toy_train_00",
        "toy_train_01",
        "toy_train_02",
    ]
    tracks = discover_tracks(toy, "train", validation_tracks=1) + discover_tracks(toy, "test")
    assert len(tracks) == 3
    for track in tracks:
        assert track.sample_rate == SR and track.channels == 2
        assert 8.0 <= track.duration <= 9.0
        for stem in ("mixture", *MUSDB_STEMS):
            assert sf.info(str(track.stem_path(stem))).subtype == "FLOAT"
    assert toy_dataset_complete(toy, PARAMS)
    assert not toy_dataset_complete(toy, ToyParams(n_train=4, n_test=1, seed=11))


def test_mixture_is_sum_no_clipping_no_silent_stem(toy: Path) -> None:
    for split in ("train", "valid", "test"):
        for track in discover_tracks(toy, split, validation_tracks=1):
            stems = {s: sf.read(track.stem_path(s), dtype="float32")[0].T for s in MUSDB_STEMS}
            mixture = sf.read(track.stem_path("mixture"), dtype="float32")[0].T
            total = stems["vocals"] + stems["bass"] + stems["drums"] + stems["other"]
            np.testing.assert_array_equal(mixture, total)  # exact in this order
            np.testing.assert_allclose(mixture, sum(reversed(list(stems.values()))), atol=1e-6)
            assert 0.4 < np.abs(mixture).max() < 1.0
            for name, audio in stems.items():
                assert np.abs(audio).max() < 1.0
                rms = np.sqrt(np.mean(audio**2))
                assert rms > 0.01, (track.name, name, rms)
                # present across the song: every 2 s has some of it (vocals rest at times)
                blocks = audio[:, : audio.shape[1] // (2 * SR) * 2 * SR].reshape(2, -1, 2 * SR)
                active = np.sqrt(np.mean(blocks**2, axis=(0, 2))) > 1e-3
                assert active.mean() >= (0.5 if name == "vocals" else 1.0), (track.name, name)


def band_fraction(audio: np.ndarray, low: float, high: float) -> float:
    freqs, psd = signal.welch(audio.mean(0), SR, nperseg=4096)
    return float(psd[(freqs >= low) & (freqs < high)].sum() / psd.sum())


def test_stems_are_characteristic() -> None:
    """Each stem has its own spectral signature (over a few songs with different seeds)."""
    for seed in range(3):
        s = synthesize_track(seed, 6.0, SR)
        assert band_fraction(s["bass"], 30, 400) > 0.8
        assert band_fraction(s["vocals"], 150, 4000) > 0.8
        assert band_fraction(s["vocals"], 0, 100) < 0.02
        assert band_fraction(s["drums"], 30, 200) > 0.1  # kick
        assert band_fraction(s["drums"], 5000, 20000) > 0.005  # hats / cymbals
        assert band_fraction(s["other"], 100, 2000) > 0.5
        # vocals are harmonic and pitched in a singing range: strong periodicity
        v = s["vocals"].mean(0)
        frame = v[SR : SR + 4096] * np.hanning(4096)
        ac = np.correlate(frame, frame, "full")[4095:]
        lag_lo, lag_hi = SR // 1000, SR // 80
        assert ac[lag_lo:lag_hi].max() > 0.5 * ac[0] or not frame.any()


def test_deterministic_and_varied() -> None:
    a, b, c = synthesize_track(5, 3.0), synthesize_track(5, 3.0), synthesize_track(6, 3.0)
    for stem in a:
        np.testing.assert_array_equal(a[stem], b[stem])
        assert not np.allclose(a[stem], c[stem], atol=1e-3)


def test_complete_dataset_is_not_regenerated(tmp_path: Path) -> None:
    params = ToyParams(n_train=2, n_test=1, min_duration=3.0, max_duration=3.0, seed=2)
    assert prepare_toy_dataset(tmp_path, params, progress=False)
    files = sorted(tmp_path.rglob("*.wav"))
    assert len(files) == 15
    stamps = {p: p.stat().st_mtime_ns for p in files}
    content = {p: sf.read(p)[0] for p in files}
    assert not prepare_toy_dataset(tmp_path, params, progress=False)
    assert {p: p.stat().st_mtime_ns for p in files} == stamps
    victim = tmp_path / "train" / "toy_train_01" / "drums.wav"
    victim.unlink()
    assert prepare_toy_dataset(tmp_path, params, progress=False)  # the incomplete track again
    for p in files:  # the same audio (the float WAV header holds a time stamp)
        np.testing.assert_array_equal(sf.read(p)[0], content[p])
    assert (tmp_path / "train" / "toy_train_00" / "bass.wav").stat().st_mtime_ns == stamps[
        tmp_path / "train" / "toy_train_00" / "bass.wav"
    ]
    smaller = ToyParams(n_train=1, n_test=1, min_duration=3.0, max_duration=3.0, seed=2)
    prepare_toy_dataset(tmp_path, smaller, progress=False)
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["toy_train_00"]


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_users_folder_is_never_overwritten(tmp_path: Path) -> None:
    """A data_dir the generator did not make (no toy.json record) whose files fail validation
    is left untouched; the error names the folder and the broken file."""
    params = ToyParams(n_train=1, n_test=1, min_duration=2.0, max_duration=2.0, seed=4)
    root = tmp_path / "mine"
    generate_toy_dataset(root, params, progress=False)
    (root / "toy.json").unlink()  # e.g. the user's own copy of the tracks
    broken = root / "train" / "toy_train_00" / "bass.wav"
    broken.write_bytes(b"not a wav file")
    (root / "notes.txt").write_text("mine")
    before = snapshot(root)
    with pytest.raises(DatasetError) as err:
        prepare_toy_dataset(root, params, progress=False)
    msg = str(err.value)
    assert str(root) in msg and str(broken) in msg and "will not overwrite" in msg
    assert snapshot(root) == before
    # any non-empty folder without the record is refused, complete-looking or not
    other = tmp_path / "other"
    other.mkdir()
    (other / "song.wav").write_bytes(b"x")
    with pytest.raises(DatasetError, match="track folder .*toy_train_00 is missing"):
        generate_toy_dataset(other, params, progress=False)
    assert snapshot(other) == {other / "song.wav": b"x"}
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(DatasetError, match="is not a folder"):
        prepare_toy_dataset(afile, params, progress=False)
    # an empty or missing folder is filled
    (tmp_path / "empty").mkdir()
    for fresh in (tmp_path / "empty", tmp_path / "new" / "toy"):
        assert prepare_toy_dataset(fresh, params, progress=False)
        assert toy_dataset_complete(fresh, params)


def test_interrupted_generation_is_completed(tmp_path: Path, monkeypatch) -> None:
    """The record is written before any track, so the generator's own incomplete folder is
    recognised and completed (the finished tracks are kept)."""
    params = ToyParams(n_train=2, n_test=1, min_duration=2.0, max_duration=2.0, seed=5)
    real = toy_module.synthesize_track
    calls = []

    def failing(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(toy_module, "synthesize_track", failing)
    with pytest.raises(KeyboardInterrupt):
        prepare_toy_dataset(tmp_path, params, progress=False)
    monkeypatch.setattr(toy_module, "synthesize_track", real)
    assert (tmp_path / "toy.json").is_file() and not toy_dataset_complete(tmp_path, params)
    done = tmp_path / "train" / "toy_train_00" / "vocals.wav"
    stamp = done.stat().st_mtime_ns
    assert prepare_toy_dataset(tmp_path, params, progress=False)
    assert toy_dataset_complete(tmp_path, params)
    assert done.stat().st_mtime_ns == stamp  # not rewritten


def test_toy_params_checked() -> None:
    with pytest.raises(ConfigError, match="min_duration"):
        ToyParams(min_duration=5.0, max_duration=4.0)
    with pytest.raises(ConfigError, match="n_train"):
        ToyParams(n_train=0)
    with pytest.raises(ConfigError, match="dset.toy.seed=1.5: expected an integer"):
        ToyParams(seed=1.5)


@pytest.mark.slow
def test_prep_dataset_script(tmp_path: Path) -> None:
    """`python prep_dataset.py dset=toy` makes the stand-in and its index; a rerun keeps both."""
    root = tmp_path / "toy"
    cmd = [
        sys.executable,
        str(REPO / "prep_dataset.py"),
        "dset=toy",
        f"dset.data_dir={root}",
        "dset.toy.n_train=3",
        "dset.toy.n_test=1",
        "dset.toy.min_duration=7",
        "dset.toy.max_duration=7",
        "dset.validation_tracks=1",
        f"hydra.run.dir={tmp_path / 'hydra'}",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), *sys.path])}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    index = {p.name: p.read_bytes() for p in (root / "sad").iterdir()}
    assert set(index) == {"activity.json"} | {
        f"{s}_{split}.csv" for s in MUSDB_STEMS for split in ("train", "valid")
    }
    assert index["vocals_train.csv"].startswith(b"track,start,end\ntoy_train_01,0,264600\n")
    wav = root / "train" / "toy_train_00" / "vocals.wav"
    stamp = wav.stat().st_mtime_ns
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "not regenerating" in done.stdout + done.stderr
    assert wav.stat().st_mtime_ns == stamp
    assert {p.name: p.read_bytes() for p in (root / "sad").iterdir()} == index
    # a missing dataset: a clear error, no traceback
    bad = [*cmd[:2], f"dset.data_dir={tmp_path / 'none'}", f"hydra.run.dir={tmp_path / 'hydra'}"]
    done = subprocess.run(bad, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "zenodo.org/records/3338373" in done.stderr and "Traceback" not in done.stderr
    # a bad setting: one line naming the key, no traceback
    bad = [*cmd, "+dset.win_size=3"]
    done = subprocess.run(bad, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "unknown key(s) dset.win_size; valid keys of dset: name" in done.stderr
