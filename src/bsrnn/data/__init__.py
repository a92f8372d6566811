"""Data: typed dataset settings, track discovery, activity detection, augmentations, datasets,
the DataModule and the synthetic stand-in dataset.

``MusdbDataModule`` is imported on first use, so that evaluation, inference and
``prep_dataset.py``, which need the settings and track reading only, do not import Lightning.
"""

from typing import Any

from bsrnn.data.activity import (
    ActivityParams,
    Segment,
    activity_index_path,
    build_activity_index,
    load_activity_index,
    track_active_segments,
    window_activity,
)
from bsrnn.data.augment import (
    AUGMENT_SETS,
    AUGMENTATIONS,
    AugmentationParams,
    Augmenter,
    SourceAugmenter,
)
from bsrnn.data.datasets import EpochSampler, TrackDataset, TrainingExamples
from bsrnn.data.msst_augment import MsstAugmenter
from bsrnn.data.prepare import prepare_dataset
from bsrnn.data.settings import DEFAULT_DATASET, SAMPLINGS, AugmentSettings, DataSettings
from bsrnn.data.toy import (
    ToyParams,
    generate_toy_dataset,
    prepare_toy_dataset,
    synthesize_track,
    toy_dataset_complete,
)
from bsrnn.data.tracks import (
    MIXTURES,
    MUSDB_STEMS,
    MUSDB_VALIDATION_TRACKS,
    DatasetError,
    Track,
    discover_tracks,
    read_track,
    read_track_audio,
    split_track_names,
)

__all__ = [
    "AUGMENTATIONS",
    "AUGMENT_SETS",
    "DEFAULT_DATASET",
    "MIXTURES",
    "MUSDB_STEMS",
    "MUSDB_VALIDATION_TRACKS",
    "SAMPLINGS",
    "ActivityParams",
    "AugmentSettings",
    "AugmentationParams",
    "Augmenter",
    "DataSettings",
    "DatasetError",
    "EpochSampler",
    "MsstAugmenter",
    "MusdbDataModule",
    "Segment",
    "SourceAugmenter",
    "ToyParams",
    "Track",
    "TrackDataset",
    "TrainingExamples",
    "activity_index_path",
    "build_activity_index",
    "discover_tracks",
    "generate_toy_dataset",
    "load_activity_index",
    "prepare_dataset",
    "prepare_toy_dataset",
    "read_track",
    "read_track_audio",
    "split_track_names",
    "synthesize_track",
    "toy_dataset_complete",
    "track_active_segments",
    "window_activity",
]


def __getattr__(name: str) -> Any:
    if name == "MusdbDataModule":
        from bsrnn.data.datamodule import MusdbDataModule

        return MusdbDataModule
    raise AttributeError(f"module 'bsrnn.data' has no attribute {name!r}")
