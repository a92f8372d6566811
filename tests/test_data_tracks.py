"""Track discovery, the validation split and the errors for bad datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bsrnn.data import (
    MUSDB_STEMS,
    MUSDB_VALIDATION_TRACKS,
    DatasetError,
    DataSettings,
    discover_tracks,
    read_track_audio,
    split_track_names,
)
from bsrnn.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
STEMS = ("mixture", *MUSDB_STEMS)


def write_track(
    folder: Path,
    frames: int = 2205,
    sr: int = 44100,
    channels: int = 2,
    skip: tuple[str, ...] = (),
    odd: dict[str, tuple[int, int, int]] | None = None,
) -> None:
    """A track folder with noise stems; ``odd`` gives a stem other (frames, sr, channels)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(folder.name))
    for stem in STEMS:
        if stem in skip:
            continue
        n, rate, ch = (odd or {}).get(stem, (frames, sr, channels))
        sf.write(folder / f"{stem}.wav", 0.1 * rng.standard_normal((n, ch)), rate, subtype="FLOAT")


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    for name in ("a", "b", "c", "d", "e"):
        write_track(tmp_path / "train" / name)
    for name in ("t1", "t2"):
        write_track(tmp_path / "test" / name, frames=3000)
    return tmp_path


def test_discovery_and_validation_split(dataset: Path) -> None:
    valid = ["d", "b"]
    train = discover_tracks(dataset, "train", validation_tracks=valid)
    assert [t.name for t in train] == ["a", "c", "e"]
    val = discover_tracks(dataset, "valid", validation_tracks=valid)
    assert [t.name for t in val] == ["b", "d"]
    test = discover_tracks(dataset, "test", validation_tracks=valid)
    assert [t.name for t in test] == ["t1", "t2"]
    t = test[0]
    assert (t.sample_rate, t.channels, t.frames) == (44100, 2, 3000)
    assert t.stem_path("vocals") == dataset / "test" / "t1" / "vocals.wav"
    # a count takes the first tracks in sorted order
    assert split_track_names(dataset, "valid", 2) == ["a", "b"]
    assert split_track_names(dataset, "train", 2) == ["c", "d", "e"]
    with pytest.raises(ValueError, match="valid splits"):
        split_track_names(dataset, "validation", 2)


def test_musdb_validation_tracks_in_one_place(tmp_path: Path) -> None:
    """The 14 names live in MUSDB_VALIDATION_TRACKS only; the config says `musdb`."""
    assert len(MUSDB_VALIDATION_TRACKS) == 14 == len(set(MUSDB_VALIDATION_TRACKS))
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose("config", overrides=["dset=musdb18hq"])
    assert cfg.dset.validation_tracks == "musdb"
    for path in (REPO / "conf").rglob("*.yaml"):
        assert MUSDB_VALIDATION_TRACKS[0] not in path.read_text(), path
    for name in [*MUSDB_VALIDATION_TRACKS, "x - other"]:
        write_track(tmp_path / "train" / name, frames=100)
    assert split_track_names(tmp_path, "valid", "musdb") == sorted(MUSDB_VALIDATION_TRACKS)
    assert split_track_names(tmp_path, "train") == ["x - other"]  # musdb by default
    settings = DataSettings(data_dir=tmp_path)
    assert settings.validation_tracks == "musdb"
    assert [t.name for t in settings.tracks("valid")] == sorted(MUSDB_VALIDATION_TRACKS)
    assert DataSettings(validation_tracks=["b", "a"]).validation_tracks == ("b", "a")
    with pytest.raises(ConfigError, match="validation_tracks='a': expected 'musdb'"):
        split_track_names(tmp_path, "valid", "a")


def test_missing_root_says_where_and_how(tmp_path: Path) -> None:
    root = tmp_path / "musdb18hq"
    with pytest.raises(DatasetError) as err:
        discover_tracks(root, "train")
    msg = str(err.value)
    assert str(root) in msg
    assert "zenodo.org/records/3338373" in msg
    assert "python prep_dataset.py dset=toy" in msg
    (root / "train").mkdir(parents=True)
    write_track(root / "train" / "x")
    with pytest.raises(DatasetError, match=r"no test/ folder"):
        discover_tracks(root, "test")


def test_missing_stem_names_track_and_file(dataset: Path) -> None:
    (dataset / "train" / "c" / "bass.wav").unlink()
    with pytest.raises(DatasetError, match=r"track 'c'.*missing bass\.wav"):
        discover_tracks(dataset, "train", validation_tracks=["a"])


@pytest.mark.parametrize(
    ("odd", "what"),
    [((2000, 44100, 2), "2000 frames"), ((2205, 22050, 2), "22050 Hz"), ((2205, 44100, 1), "1 ch")],
)
def test_mismatched_stem_names_track_and_file(tmp_path: Path, odd: tuple, what: str) -> None:
    write_track(tmp_path / "train" / "good")
    write_track(tmp_path / "train" / "Bad Track", odd={"drums": odd})
    with pytest.raises(DatasetError) as err:
        discover_tracks(tmp_path, "train", validation_tracks=0)
    msg = str(err.value)
    assert "'Bad Track'" in msg and "drums.wav" in msg and what in msg


def test_sample_rate_must_match_config(dataset: Path) -> None:
    with pytest.raises(DatasetError, match=r"44100 Hz but sample_rate is 48000"):
        discover_tracks(dataset, "test", sample_rate=48000)


def test_validation_tracks_missing_from_train_are_listed(dataset: Path) -> None:
    with pytest.raises(DatasetError) as err:
        discover_tracks(dataset, "train", validation_tracks=["a", "zz top", "Nope"])
    msg = str(err.value)
    assert "2 validation track(s)" in msg and "'zz top'" in msg and "'Nope'" in msg
    assert "'a'" not in msg
    # MUSDB's default list on a dataset that is not MUSDB18-HQ
    with pytest.raises(DatasetError, match="Actions - One Minute Smile"):
        discover_tracks(dataset, "valid")
    with pytest.raises(DatasetError, match="none would be left"):
        discover_tracks(dataset, "valid", validation_tracks=["a", "b", "c", "d", "e"])
    with pytest.raises(DatasetError, match="between 0 and 4"):
        discover_tracks(dataset, "valid", validation_tracks=7)


def test_read_track_audio_mixture_from_stems_or_file(tmp_path: Path) -> None:
    """mixture="stems" sums the sources (what the reference separates); "file" reads
    mixture.wav; they differ here as on some MUSDB18-HQ test tracks."""
    write_track(tmp_path / "test" / "t", frames=500)
    folder = tmp_path / "test" / "t"
    stems = {s: sf.read(folder / f"{s}.wav", dtype="float32")[0].T for s in MUSDB_STEMS}
    file_mix = sf.read(folder / "mixture.wav", dtype="float32")[0].T
    (track,) = discover_tracks(tmp_path, "test")
    order = ["drums", "vocals", "other", "bass"]
    mixture, got = read_track_audio(track, order)
    assert mixture.shape == (2, 500) and got.shape == (4, 2, 500) and got.dtype == np.float32
    np.testing.assert_array_equal(got, np.stack([stems[s] for s in order]))
    np.testing.assert_allclose(mixture, sum(stems.values()), rtol=0, atol=1e-6)
    assert not np.allclose(mixture, file_mix, atol=1e-3)
    mixture, got = read_track_audio(track, ["bass"], mixture="file", stop=200)
    np.testing.assert_array_equal(mixture, file_mix[:, :200])
    np.testing.assert_array_equal(got, stems["bass"][None, :, :200])
    with pytest.raises(ConfigError, match="mixture='sum': expected one of stems, file"):
        read_track_audio(track, ["bass"], mixture="sum")


def test_datamodule_validation_mixture_setting(tmp_path: Path) -> None:
    """dset.mixture picks the validation/test mixture: stems (default) or mixture.wav."""
    from bsrnn.data import MusdbDataModule

    for name in ("a", "b"):
        write_track(tmp_path / "train" / name, frames=400)
    write_track(tmp_path / "test" / "t", frames=300)
    folder = tmp_path / "train" / "a"
    stems = sum(sf.read(folder / f"{s}.wav", dtype="float32")[0].T for s in MUSDB_STEMS)
    file_mix = sf.read(folder / "mixture.wav", dtype="float32")[0].T
    got = {}
    for mixture in ("stems", "file"):
        settings = DataSettings(
            data_dir=tmp_path, validation_tracks=1, mixture=mixture, num_workers=0
        )
        dm = MusdbDataModule(settings, targets=["vocals"])
        got[mixture], references = next(iter(dm.val_dataloader()))
        assert references.shape == (1, 1, 2, 400)
    np.testing.assert_allclose(got["stems"][0].numpy(), stems, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got["file"][0].numpy(), file_mix)
    with pytest.raises(ConfigError, match="dset.mixture='mix': expected one of stems, file"):
        DataSettings(mixture="mix")
