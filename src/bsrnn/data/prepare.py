"""What ``prep_dataset.py`` does: make the stand-in dataset if needed, then the activity index.

Needs no target and no Lightning: the index covers every source of the dataset.
"""

from __future__ import annotations

from pathlib import Path

from bsrnn.data.activity import build_activity_index
from bsrnn.data.settings import DataSettings
from bsrnn.data.toy import prepare_toy_dataset


def prepare_dataset(settings: DataSettings, progress: bool = True) -> dict[str, Path]:
    """Generate the stand-in dataset when ``settings.toy`` is set and ``data_dir`` is missing,
    empty or an incomplete stand-in (never another folder: see
    :func:`~bsrnn.data.toy.generate_toy_dataset`), then compute the activity index of every
    source for the train and valid splits into ``settings.sad_path``.

    Returns ``{"<source>_<split>": index csv path}``.
    """
    if settings.toy is not None:
        prepare_toy_dataset(
            settings.data_dir, settings.toy, settings.sample_rate, progress=progress
        )
    paths = {}
    for split in ("train", "valid"):
        tracks = settings.tracks(split)
        if not tracks:
            continue
        built = build_activity_index(
            tracks, settings.sources, split, settings.sad_path, settings.activity, progress
        )
        paths.update({f"{source}_{split}": path for source, path in built.items()})
    return paths
