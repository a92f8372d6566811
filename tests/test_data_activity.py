"""Source activity detection and the activity index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bsrnn.data import (
    DEFAULT_DATASET,
    ActivityParams,
    DatasetError,
    DataSettings,
    MusdbDataModule,
    build_activity_index,
    discover_tracks,
    load_activity_index,
    prepare_dataset,
    track_active_segments,
    window_activity,
)

SR = 8000  # a low rate keeps these tests fast; the detector works in seconds
P = ActivityParams()  # 6 s windows, 3 s hop, 10 chunks of 0.6 s


def noise(seconds: float, level: float = 0.1, channels: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (level * rng.standard_normal((channels, int(seconds * SR)))).astype(np.float32)


def test_windows_with_known_silent_and_active_parts() -> None:
    x = np.zeros((2, 20 * SR), np.float32)
    x[:, 3 * SR : 9 * SR] = noise(6)  # exactly window 1 ([3, 9) s)
    # windows: [0,6) half active, [3,9) active, [6,12) half, [9,15) and [12,18) silent
    np.testing.assert_array_equal(window_activity(x, SR, P), [0, 1, 0, 0, 0])
    x[:, 12 * SR : 12 * SR + int(3.6 * SR)] = noise(3.6, seed=1)  # 6 of the 10 chunks of [12, 18)
    np.testing.assert_array_equal(window_activity(x, SR, P), [0, 1, 0, 0, 1])
    assert P.n_windows(20 * SR, SR) == 5 and P.n_windows(5 * SR, SR) == 0


def test_activity_needs_every_channel_and_gamma() -> None:
    x = noise(6)
    assert window_activity(x, SR, P).tolist() == [True]
    x[1] = 0.0  # one silent channel
    assert window_activity(x, SR, P).tolist() == [False]
    # below gamma (RMS 1e-3) counts as silent; just above counts as active
    assert window_activity(noise(6, level=5e-4), SR, P).tolist() == [False]
    assert window_activity(noise(6, level=5e-3), SR, P).tolist() == [True]
    # quiet but non-silent music is active: the threshold is relative within the window
    quiet = noise(6, level=2e-3)
    quiet[:, : 2 * SR] *= 0.01
    assert window_activity(quiet, SR, P).tolist() == [True]


def test_streamed_detection_equals_whole_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x = noise(61, seed=4)
    for start in range(0, 61, 2):  # random on/off pattern in 2 s blocks
        if rng.random() < 0.4:
            x[:, start * SR : (start + 2) * SR] = 0.0
    path = tmp_path / "x.wav"
    sf.write(path, x.T, SR, subtype="FLOAT")
    segments = track_active_segments(path, x.shape[1], SR, P, block_windows=3)
    active = window_activity(x, SR, P)
    hop, win = P.hop_frames(SR), P.window_frames(SR)
    assert segments == [(i * hop, i * hop + win) for i in np.flatnonzero(active)]
    assert 0 < len(segments) < len(active)


def _dataset(root: Path, silent_other: bool = True) -> None:
    """3 train tracks of 11 s with known activity; vocals silent in the second half of 'b'."""
    for i, name in enumerate(["a", "b", "c, the third"]):
        folder = root / "train" / name
        folder.mkdir(parents=True)
        stems = {s: noise(11, seed=10 * i + j) for j, s in enumerate(["vocals", "bass", "drums"])}
        stems["other"] = noise(11, level=0.0 if silent_other else 0.1, seed=10 * i + 3)
        if name == "b":
            stems["vocals"][:, 6 * SR :] = 0.0
        stems["mixture"] = sum(stems.values())
        for stem, audio in stems.items():
            sf.write(folder / f"{stem}.wav", audio.T, SR, subtype="FLOAT")
    (root / "test").mkdir()


def test_index_files_and_idempotence(tmp_path: Path) -> None:
    _dataset(tmp_path)
    tracks = discover_tracks(tmp_path, "train", validation_tracks=[])
    sad = tmp_path / "sad"
    paths = build_activity_index(tracks, ["vocals", "other"], "train", sad, P, progress=False)
    lines = paths["vocals"].read_text().splitlines()
    hop = 3 * SR
    assert lines[0] == "track,start,end"
    assert lines[1:] == [
        f"a,0,{2 * hop}",
        f"a,{hop},{3 * hop}",
        f"b,0,{2 * hop}",  # b's vocals stop at 6 s
        f'"c, the third",0,{2 * hop}',
        f'"c, the third",{hop},{3 * hop}',
    ]
    assert paths["other"].read_text() == "track,start,end\n"  # silent everywhere
    before = {p.name: p.read_bytes() for p in sad.iterdir()}
    build_activity_index(tracks, ["vocals", "other"], "train", sad, P, progress=False)
    assert {p.name: p.read_bytes() for p in sad.iterdir()} == before  # identical, no temp files
    segs = load_activity_index(sad, "vocals", "train", tracks, P, min_frames=3 * SR)
    assert [(s.track.name, s.start, s.end) for s in segs][2] == ("b", 0, 2 * hop)
    with pytest.raises(DatasetError, match="no active segment of 'other'"):
        load_activity_index(sad, "other", "train", tracks, P, min_frames=3 * SR)
    with pytest.raises(DatasetError, match="shorter than the 48001 samples"):
        load_activity_index(sad, "vocals", "train", tracks, P, min_frames=6 * SR + 1)


def test_missing_or_stale_index_says_to_run_prep(tmp_path: Path) -> None:
    _dataset(tmp_path)
    tracks = discover_tracks(tmp_path, "train", validation_tracks=[])
    sad = tmp_path / "sad"
    hint = "python prep_dataset.py dset=musdb18hq_sad"
    with pytest.raises(DatasetError, match=f"activity index for 'vocals' not found.*{hint}"):
        load_activity_index(sad, "vocals", "train", tracks, P, 3 * SR, hint)
    build_activity_index(tracks, ["vocals"], "train", sad, P, progress=False)
    other = ActivityParams(win_duration=4.0)
    with pytest.raises(DatasetError, match=f"other parameters.*{hint}"):
        load_activity_index(sad, "vocals", "train", tracks, other, 3 * SR, hint)
    with pytest.raises(DatasetError, match=f"names track 'a', not in the train split.*{hint}"):
        load_activity_index(sad, "vocals", "train", tracks[1:], P, 3 * SR, hint)
    record = json.loads((sad / "activity.json").read_text())
    assert record["win_duration"] == 6.0 and record["sample_rate"] == SR


def sad_settings(root: Path, **kwargs) -> DataSettings:
    args = dict(
        name="musdb18hq_sad",
        data_dir=root,
        sample_rate=SR,
        sampling="activity",
        n_samples=10,
        validation_tracks=1,
        num_workers=0,
    )
    return DataSettings(**{**args, **kwargs})


def test_datamodule_without_index_raises(tmp_path: Path) -> None:
    """The error says which command makes the index: plain `python prep_dataset.py` for the
    default dataset, `python prep_dataset.py dset=<name>` for the others."""
    _dataset(tmp_path, silent_other=False)
    assert DEFAULT_DATASET == "musdb18hq_sad"
    dm = MusdbDataModule(sad_settings(tmp_path), targets=["vocals"])
    with pytest.raises(DatasetError, match=r"with `python prep_dataset.py` \(adding this run's"):
        dm.prepare_data()
    with pytest.raises(DatasetError, match=r"with `python prep_dataset.py` "):
        dm.setup("fit")
    for name in ("toy", "musdb18hq"):
        other = MusdbDataModule(sad_settings(tmp_path, name=name), targets=["vocals"])
        with pytest.raises(DatasetError, match=f"with `python prep_dataset.py dset={name}`"):
            other.prepare_data()
    prepare_dataset(sad_settings(tmp_path))  # what prep_dataset.py does: no target needed
    dm.setup("fit")
    mixture, references = dm.train_dataloader().dataset[0]
    assert mixture.shape == (2, 3 * SR) and references.shape == (1, 2, 3 * SR)
    assert (tmp_path / "sad" / "vocals_valid.csv").is_file()
    # a stale index names the same command
    stale = sad_settings(tmp_path, activity={"win_duration": 4.0})
    with pytest.raises(DatasetError, match=r"other parameters.*`python prep_dataset.py` "):
        MusdbDataModule(stale, targets=["vocals"]).prepare_data()


def test_several_targets_draw_from_the_first_targets_index_unless_mixed(tmp_path: Path) -> None:
    """Sources not mixed across tracks (random_track_mix false or fast_tr): segments come from
    the first target's index; mixed: each source from its own index."""
    _dataset(tmp_path)  # 'other' is silent everywhere: its index is empty
    prepare_dataset(sad_settings(tmp_path))
    unmixed = sad_settings(tmp_path, random_track_mix=False)
    dm = MusdbDataModule(unmixed, targets=["vocals", "other"])
    dm.setup("fit")
    mixture, references = dm.train_dataloader().dataset[0]
    assert references.shape == (2, 2, 3 * SR) and not references[1].any()
    for settings, fast_tr in ((unmixed, False), (sad_settings(tmp_path), True)):
        dm = MusdbDataModule(settings, targets=["other", "vocals"], fast_tr=fast_tr)
        with pytest.raises(DatasetError, match="no active segment of 'other'"):
            dm.setup("fit")
    mixed = MusdbDataModule(sad_settings(tmp_path), targets=["vocals", "bass"])
    with pytest.raises(DatasetError, match="no active segment of 'other'"):
        mixed.setup("fit")  # every source needs its own index
