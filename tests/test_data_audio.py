"""Reading audio: NaN or infinite samples are refused, naming the file and the position."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bsrnn.audio import read_audio
from bsrnn.data import (
    DataSettings,
    Segment,
    SourceAugmenter,
    TrainingExamples,
    discover_tracks,
    prepare_dataset,
    read_track_audio,
)
from bsrnn.errors import AudioError

SR = 8000


def float_wav(path: Path, bad: dict[tuple[int, int], float] | None = None, frames: int = 800):
    """A stereo float WAV of noise, with ``bad`` ``{(frame, channel): value}`` planted."""
    audio = 0.1 * np.random.default_rng(0).standard_normal((frames, 2)).astype(np.float32)
    for (frame, channel), value in (bad or {}).items():
        audio[frame, channel] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, SR, subtype="FLOAT")
    return path


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_refused(tmp_path: Path, value: float) -> None:
    path = float_wav(tmp_path / "x.wav", {(600, 1): value, (700, 0): value, (400, 1): value})
    with pytest.raises(AudioError) as err:
        read_audio(path)
    msg = str(err.value)
    assert str(path) in msg and "sample 400 (0.050 s), channel 1" in msg
    assert "3 non-finite value(s)" in msg
    with pytest.raises(AudioError, match=r"sample 600 \(0.075 s\), channel 1"):
        read_audio(path, start=500)  # the position is in the file, not in the excerpt
    audio, sr = read_audio(path, start=0, stop=400)  # the frames before are fine
    assert audio.shape == (2, 400) and sr == SR and np.isfinite(audio).all()


def test_every_data_path_refuses_nan(tmp_path: Path) -> None:
    """Training examples and full tracks read through read_audio: a NaN stem stops them with
    the file's name instead of silently making every output NaN."""
    for name in ("a", "b"):
        folder = tmp_path / "train" / name
        for stem in ("mixture", "vocals", "bass", "drums", "other"):
            nan = name == "b" and stem in ("vocals", "mixture")
            float_wav(folder / f"{stem}.wav", {(10, 0): np.nan} if nan else None)
    bad = re.escape(str(tmp_path / "train" / "b" / "vocals.wav"))
    tracks = discover_tracks(tmp_path, "train", validation_tracks=0, sample_rate=SR)
    with pytest.raises(AudioError, match=bad):
        read_track_audio(tracks[1], ["vocals", "bass"])
    with pytest.raises(AudioError, match="mixture.wav holds non-finite"):
        read_track_audio(tracks[1], ["bass"], mixture="file")
    only_b = {s: [Segment(tracks[1], 0, tracks[1].frames)] for s in ("vocals", "bass")}
    data = TrainingExamples(only_b, ["vocals", "bass"], ["vocals"], 800, 2, SourceAugmenter())
    with pytest.raises(AudioError, match=bad):
        data[0]
    settings = DataSettings(
        data_dir=tmp_path, sample_rate=SR, validation_tracks=["b"], activity={"win_duration": 0.05}
    )
    with pytest.raises(AudioError, match=bad):
        prepare_dataset(settings, progress=False)  # the activity detector reads them too
