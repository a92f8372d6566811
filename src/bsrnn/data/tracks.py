"""Track discovery for a dataset in the MUSDB18-HQ layout.

The layout is ``<data_dir>/{train,test}/<track name>/{mixture,vocals,bass,drums,other}.wav``.
The validation split is a set of tracks taken out of ``train/`` (by default the 14 tracks that
musdb lists as ``validation_tracks``); the training split is the rest of ``train/``.
:func:`read_track_audio` reads a track's stems and the mixture the model separates.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bsrnn.audio import audio_info, read_audio
from bsrnn.errors import AudioError, ConfigError, DatasetError

MIXTURE = "mixture"
MUSDB_STEMS: tuple[str, ...] = ("vocals", "bass", "drums", "other")
SPLITS: tuple[str, ...] = ("train", "valid", "test")
# What a validation/evaluation mixture is: the sum of the stems (as the reference separates) or
# the track's mixture.wav (they differ on some MUSDB18-HQ tracks).
MIXTURES: tuple[str, ...] = ("stems", "file")
# The config's `validation_tracks: musdb` stands for MUSDB_VALIDATION_TRACKS.
MUSDB_VALIDATION = "musdb"

# musdb's `validation_tracks` (musdb/configs/mus.yaml): 14 tracks of MUSDB18's training set.
MUSDB_VALIDATION_TRACKS: tuple[str, ...] = (
    "Actions - One Minute Smile",
    "Clara Berry And Wooldog - Waltz For My Victims",
    "Johnny Lokke - Promises & Lies",
    "Patrick Talbot - A Reason To Leave",
    "Triviul - Angelsaint",
    "Alexander Ross - Goodbye Bolero",
    "Fergessen - Nos Palpitants",
    "Leaf - Summerghost",
    "Skelpolu - Human Mistakes",
    "Young Griffo - Pennies",
    "ANiMAL - Rockshow",
    "James May - On The Line",
    "Meaxic - Take A Step",
    "Traffic Experiment - Sirens",
)


@dataclass(frozen=True)
class Track:
    """One track folder whose stems all share ``sample_rate``, ``channels`` and ``frames``."""

    name: str
    folder: Path
    sample_rate: int
    channels: int
    frames: int

    def stem_path(self, stem: str) -> Path:
        """Path of ``<stem>.wav`` (``"mixture"`` or a source name) in this track's folder."""
        return self.folder / f"{stem}.wav"

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def missing_dataset_message(data_dir: str | os.PathLike, what: str) -> str:
    """The error text for a dataset that is not where the configuration says it is."""
    root = Path(data_dir)
    return (
        f"{what} (dset.data_dir={str(data_dir)!r}, resolved to {root.resolve()}). "
        "Expected the MUSDB18-HQ layout: train/ and test/ folders holding one folder per track "
        "with mixture.wav, vocals.wav, bass.wav, drums.wav and other.wav. "
        "Get MUSDB18-HQ from https://zenodo.org/records/3338373 and unzip it into data/musdb18hq "
        "(or point dset.data_dir=... at it), or create the small synthetic stand-in with "
        "`python prep_dataset.py dset=toy` (written to data/toy/)."
    )


def list_track_names(data_dir: str | os.PathLike, subset: str) -> list[str]:
    """Sorted names of the track folders in ``<data_dir>/<subset>`` (``train`` or ``test``)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(missing_dataset_message(data_dir, "dataset folder not found"))
    folder = root / subset
    if not folder.is_dir():
        raise DatasetError(
            missing_dataset_message(
                data_dir, f"no {subset}/ folder in the dataset: looked for {folder}"
            )
        )
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise DatasetError(missing_dataset_message(data_dir, f"no track folders in {folder}"))
    return names


def resolve_validation_tracks(
    train_names: Sequence[str], validation_tracks: Sequence[str] | int, train_folder: Path
) -> list[str]:
    """Names of the validation tracks among ``train_names``.

    ``validation_tracks`` is ``"musdb"`` (:data:`MUSDB_VALIDATION_TRACKS`), a list of names
    (each must be in ``train_folder``) or a count ``n`` (the first ``n`` tracks in sorted order).
    """
    if validation_tracks == MUSDB_VALIDATION:
        validation_tracks = MUSDB_VALIDATION_TRACKS
    if isinstance(validation_tracks, (bool, str)) or not isinstance(
        validation_tracks, (int, Sequence)
    ):
        raise ConfigError(
            f"validation_tracks={validation_tracks!r}: expected {MUSDB_VALIDATION!r}, a list of "
            "track names or a count"
        )
    if isinstance(validation_tracks, int):
        if not 0 <= validation_tracks < len(train_names):
            raise DatasetError(
                f"validation_tracks={validation_tracks} must be between 0 and "
                f"{len(train_names) - 1} (there are {len(train_names)} tracks in {train_folder})"
            )
        return sorted(train_names)[:validation_tracks]
    names = list(dict.fromkeys(str(n) for n in validation_tracks))
    present = set(train_names)
    missing = [n for n in names if n not in present]
    if missing:
        raise DatasetError(
            f"{len(missing)} validation track(s) not found in {train_folder}: "
            + ", ".join(repr(n) for n in missing)
            + ". Check the dataset (MUSDB18-HQ has them in train/) or the validation_tracks key."
        )
    if len(names) >= len(train_names):
        raise DatasetError(
            f"validation_tracks takes all {len(train_names)} tracks of {train_folder}: "
            "none would be left for training"
        )
    return sorted(names)


def read_track(
    folder: str | os.PathLike,
    sources: Sequence[str] = MUSDB_STEMS,
    sample_rate: int | None = None,
) -> Track:
    """Check one track folder: ``mixture.wav`` and each source exist and agree in sample rate,
    channel count and length (and match ``sample_rate`` when given)."""
    folder = Path(folder)
    stems = [MIXTURE, *[s for s in sources if s != MIXTURE]]
    missing = [f"{s}.wav" for s in stems if not (folder / f"{s}.wav").is_file()]
    if missing:
        raise DatasetError(
            f"track {folder.name!r} ({folder}): missing {', '.join(missing)} "
            f"(every track needs {', '.join(s + '.wav' for s in stems)})"
        )
    infos = {}
    for stem in stems:
        try:
            infos[stem] = audio_info(folder / f"{stem}.wav")
        except AudioError as err:
            raise DatasetError(f"track {folder.name!r}: {err}") from err
    ref = infos[MIXTURE]
    for stem, info in infos.items():
        got = (info.sample_rate, info.channels, info.frames)
        want = (ref.sample_rate, ref.channels, ref.frames)
        if got != want:
            raise DatasetError(
                f"track {folder.name!r}: {stem}.wav has {info.frames} frames, {info.channels} "
                f"channel(s) at {info.sample_rate} Hz but mixture.wav has {ref.frames} frames, "
                f"{ref.channels} channel(s) at {ref.sample_rate} Hz; all stems of a track must "
                f"match ({folder / (stem + '.wav')})"
            )
    if sample_rate is not None and ref.sample_rate != sample_rate:
        raise DatasetError(
            f"track {folder.name!r}: the audio is at {ref.sample_rate} Hz but sample_rate is "
            f"{sample_rate} Hz ({ref.path})"
        )
    return Track(folder.name, folder, ref.sample_rate, ref.channels, ref.frames)


def split_track_names(
    data_dir: str | os.PathLike,
    split: str,
    validation_tracks: str | Sequence[str] | int = MUSDB_VALIDATION,
) -> list[str]:
    """Sorted track names of ``split``: ``train`` (train/ minus validation), ``valid``, ``test``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    if split == "test":
        return list_track_names(data_dir, "test")
    names = list_track_names(data_dir, "train")
    valid = resolve_validation_tracks(names, validation_tracks, Path(data_dir) / "train")
    if split == "valid":
        return valid
    held_out = set(valid)
    return [n for n in names if n not in held_out]


def discover_tracks(
    data_dir: str | os.PathLike,
    split: str,
    sources: Sequence[str] = MUSDB_STEMS,
    validation_tracks: str | Sequence[str] | int = MUSDB_VALIDATION,
    sample_rate: int | None = None,
) -> list[Track]:
    """The checked tracks of ``split`` (``train``, ``valid`` or ``test``), sorted by name.

    Raises :class:`DatasetError` for a missing dataset, a missing or mismatched stem (naming the
    track and file) or validation tracks absent from ``train/``.
    """
    subset = "test" if split == "test" else "train"
    names = split_track_names(data_dir, split, validation_tracks)
    return [read_track(Path(data_dir) / subset / n, sources, sample_rate) for n in names]


def read_track_audio(
    track: Track, sources: Sequence[str], mixture: str = "stems", stop: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``stop`` frames (None: all) of a track: ``(mixture [C, T], stems [S, C, T])``,
    float32, stems in the order of ``sources``.

    ``mixture="stems"``: the mixture is the sum of ``sources`` (what the reference separates);
    ``mixture="file"``: it is read from ``mixture.wav``.
    """
    if mixture not in MIXTURES:
        raise ConfigError(f"mixture={mixture!r}: expected one of {', '.join(MIXTURES)}")
    if isinstance(sources, str) or not sources:
        raise ConfigError(f"sources={sources!r}: expected a non-empty list of stem names")
    stop = track.frames if stop is None else min(int(stop), track.frames)
    stems = np.stack([read_audio(track.stem_path(s), 0, stop)[0] for s in sources])
    if mixture == "stems":
        mix = stems.sum(axis=0, dtype=np.float32)
    else:
        mix, _ = read_audio(track.stem_path(MIXTURE), 0, stop)
    return mix, stems
