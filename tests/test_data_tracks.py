"""Track discovery, the validation split and the errors for bad datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from omegaconf import OmegaConf

from bsrnn.data import (
    MUSDB_STEMS,
    MUSDB_VALIDATION_TRACKS,
    DatasetError,
    discover_tracks,
    split_track_names,
)

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


def test_musdb_validation_tracks_in_configs() -> None:
    assert len(MUSDB_VALIDATION_TRACKS) == 14 == len(set(MUSDB_VALIDATION_TRACKS))
    for name in ("musdb18hq", "musdb18hq_sad"):
        cfg = OmegaConf.load(REPO / "conf" / "dset" / f"{name}.yaml")
        assert tuple(cfg.validation_tracks) == MUSDB_VALIDATION_TRACKS


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
