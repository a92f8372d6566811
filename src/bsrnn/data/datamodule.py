"""LightningDataModule for MUSDB18-HQ-layout datasets (MUSDB18-HQ itself or the stand-in)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, SequentialSampler, Subset

from bsrnn.data.activity import ActivityParams, Segment, build_activity_index, load_activity_index
from bsrnn.data.augment import AugmentationParams, SourceAugmenter
from bsrnn.data.datasets import EpochSampler, TrackDataset, TrainingExamples
from bsrnn.data.toy import ToyParams, prepare_toy_dataset
from bsrnn.data.tracks import MUSDB_VALIDATION_TRACKS, Track, discover_tracks

log = logging.getLogger(__name__)

SAMPLINGS = ("random", "activity")


class MusdbDataModule(L.LightningDataModule):
    """Training, validation and test data of a dataset in the MUSDB18-HQ layout.

    ``train.py`` builds it from the ``dset`` config group::

        dm = hydra.utils.instantiate(cfg.dset, target=cfg.src_mod.target, fast_tr=cfg.fast_tr)

    so the keyword arguments are exactly the keys of ``conf/dset/*.yaml`` plus ``target`` and
    ``fast_tr``. Batches:

    - train: ``(mixture [B, C, T], sources [B, S, C, T])`` float32, ``T = seq_duration * sr``,
      ``S`` in the order of ``sources``, ``mixture == sources.sum(1)``; ``B = batch_size`` per
      device (under DDP each rank draws its own examples).
    - validation / test: one full track per batch, ``(mixture [1, C, T], sources [1, S, C, T])``
      with the mixture read from ``mixture.wav`` (validation cropped to ``eval_seq_duration``).

    Args:
        name: the config's name (``dset=<name>``), used in messages.
        data_dir: dataset root with ``train/`` and ``test/``.
        sad_dir: folder of the activity index (None: ``<data_dir>/sad``).
        sample_rate: expected sample rate of the audio.
        sources: source names; batches stack them in this order.
        sampling: ``"random"`` (random chunks of whole training tracks, ``musdb18hq``) or
            ``"activity"`` (chunks of active segments from the activity index,
            ``musdb18hq_sad``).
        seq_duration: seconds per training example.
        samples_per_track: examples per training track and epoch (used when ``n_samples`` is
            None).
        n_samples: examples per epoch (None: ``samples_per_track`` × tracks; with both None and
            ``sampling="activity"``, the size of the target's index).
        random_track_mix: each source from its own random track / segment.
        augmentations: names among ``randomcrop``, ``rescale``, ``rescale_db``, ``channelswap``,
            ``silentsource`` (unknown names raise).
        rescale_min, rescale_max: linear gain range of ``rescale``.
        rescale_db_min, rescale_db_max: gain range of ``rescale_db`` in dB.
        p_channelswap: probability of ``channelswap``.
        p_silentsource: probability of ``silentsource``.
        peak_normalize: divide each example by its mixture's peak.
        validation_tracks: names of the validation tracks (taken out of ``train/``) or a count
            (the first tracks in sorted order).
        eval_seq_duration: crop validation tracks to this many seconds (None: full tracks).
        batch_size: training examples per batch and device.
        num_workers: DataLoader worker processes.
        seed: seed of the random draws.
        activity: parameters of :class:`~bsrnn.data.activity.ActivityParams`.
        toy: parameters of :class:`~bsrnn.data.toy.ToyParams` when ``data_dir`` is the synthetic
            stand-in (``prepare_dataset`` then generates it if missing), else None.
        target: the source being trained (draws segments from its activity index).
        fast_tr: overfit one batch: no augmentation, no random mixing, the same examples always.
    """

    def __init__(
        self,
        *,
        name: str = "musdb18hq",
        data_dir: str = "data/musdb18hq/",
        sad_dir: str | None = None,
        sample_rate: int = 44100,
        sources: Sequence[str] = ("vocals", "bass", "drums", "other"),
        sampling: str = "random",
        seq_duration: float = 3.0,
        samples_per_track: int | None = 256,
        n_samples: int | None = None,
        random_track_mix: bool = True,
        augmentations: Sequence[str] = ("randomcrop", "rescale", "channelswap"),
        rescale_min: float = 0.25,
        rescale_max: float = 1.25,
        rescale_db_min: float = -10.0,
        rescale_db_max: float = 10.0,
        p_channelswap: float = 0.5,
        p_silentsource: float = 0.1,
        peak_normalize: bool = False,
        validation_tracks: Sequence[str] | int = MUSDB_VALIDATION_TRACKS,
        eval_seq_duration: float | None = None,
        batch_size: int = 2,
        num_workers: int = 4,
        seed: int = 42,
        activity: Mapping[str, Any] | None = None,
        toy: Mapping[str, Any] | None = None,
        target: str = "vocals",
        fast_tr: bool = False,
    ) -> None:
        super().__init__()
        self.sources = [str(s) for s in sources]
        if len(set(self.sources)) != len(self.sources) or not self.sources:
            raise ValueError(f"sources must be distinct names, got {self.sources}")
        if target not in self.sources:
            raise ValueError(f"target {target!r} is not among the sources {self.sources}")
        if sampling not in SAMPLINGS:
            raise ValueError(f"unknown sampling {sampling!r}; valid: {', '.join(SAMPLINGS)}")
        if seq_duration <= 0:
            raise ValueError(f"seq_duration must be positive, got {seq_duration}")
        if n_samples is None and samples_per_track is None and sampling == "random":
            raise ValueError("set n_samples or samples_per_track (examples per epoch)")
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"batch_size={batch_size}, num_workers={num_workers}: out of range")
        self.name = name
        self.data_dir = Path(data_dir)
        self.sad_dir = Path(sad_dir) if sad_dir is not None else self.data_dir / "sad"
        self.sample_rate = int(sample_rate)
        self.sampling = sampling
        self.seq_duration = float(seq_duration)
        self.seq_len = int(round(self.seq_duration * self.sample_rate))
        self.samples_per_track = samples_per_track
        self.n_samples = n_samples
        self.random_track_mix = bool(random_track_mix)
        self.augmenter = SourceAugmenter(
            list(augmentations),
            AugmentationParams(
                rescale_min=float(rescale_min),
                rescale_max=float(rescale_max),
                rescale_db_min=float(rescale_db_min),
                rescale_db_max=float(rescale_db_max),
                p_channelswap=float(p_channelswap),
                p_silentsource=float(p_silentsource),
            ),
        )
        self.peak_normalize = bool(peak_normalize)
        if isinstance(validation_tracks, str):
            validation_tracks = [validation_tracks]
        self.validation_tracks = (
            validation_tracks if isinstance(validation_tracks, int) else list(validation_tracks)
        )
        self.eval_seq_len = (
            None if eval_seq_duration is None else int(round(eval_seq_duration * self.sample_rate))
        )
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.activity = _make_params(ActivityParams, activity, "activity")
        self.toy = None if toy is None else _make_params(ToyParams, toy, "toy")
        self.target = target
        self.fast_tr = bool(fast_tr)
        self.prep_hint = f"python prep_dataset.py dset={name}"
        self._train: TrainingExamples | None = None
        self._valid: Dataset | None = None
        self._test: TrackDataset | None = None

    # ------------------------------------------------------------------ tracks and examples
    def tracks(self, split: str) -> list[Track]:
        """Checked tracks of ``split`` (``train``, ``valid``, ``test``)."""
        return discover_tracks(
            self.data_dir, split, self.sources, self.validation_tracks, self.sample_rate
        )

    def _excerpts(self, tracks: list[Track]) -> dict[str, list[Segment]]:
        if self.sampling == "random":
            whole = [Segment(t, 0, t.frames) for t in tracks]
            return {s: whole for s in self.sources}
        wanted = self.sources if self.random_track_mix and not self.fast_tr else [self.target]
        return {
            s: load_activity_index(
                self.sad_dir, s, "train", tracks, self.activity, self.seq_len, self.prep_hint
            )
            for s in wanted
        }

    def _epoch_length(self, n_tracks: int, excerpts: dict[str, list[Segment]]) -> int:
        if self.n_samples is not None:
            return int(self.n_samples)
        if self.samples_per_track is not None:
            return int(self.samples_per_track) * n_tracks
        return len(excerpts[self.target])

    def build_train_dataset(self, rank: int = 0) -> TrainingExamples:
        """The training examples of this configuration (reads headers and the index only)."""
        tracks = self.tracks("train")
        excerpts = self._excerpts(tracks)
        return TrainingExamples(
            excerpts,
            self.sources,
            self.target,
            seq_len=self.seq_len,
            length=self._epoch_length(len(tracks), excerpts),
            augmenter=SourceAugmenter() if self.fast_tr else self.augmenter,
            random_track_mix=self.random_track_mix and not self.fast_tr,
            peak_normalize=self.peak_normalize,
            deterministic=self.fast_tr,
            seed=self.seed,
            rank=rank,
        )

    # ------------------------------------------------------------------ Lightning hooks
    def prepare_data(self) -> None:
        """Check that the dataset (and the activity index when needed) is there."""
        self.tracks("train")
        self.tracks("valid")
        if self.sampling == "activity":
            self._excerpts(self.tracks("train"))

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets the stage needs (once)."""
        if stage in (None, "fit") and self._train is None:
            self._train = self.build_train_dataset(rank=self._rank()[0])
        if stage in (None, "fit", "validate") and self._valid is None:
            if self.fast_tr:
                train = self._train or self.build_train_dataset(rank=self._rank()[0])
                self._valid = Subset(train, range(min(self.batch_size, len(train))))
            else:
                self._valid = TrackDataset(self.tracks("valid"), self.sources, self.eval_seq_len)
        if stage in (None, "test") and self._test is None:
            self._test = TrackDataset(self.tracks("test"), self.sources)

    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def _loader(
        self, dataset: Dataset, batch_size: int, sampler: Sampler, persistent: bool = False
    ) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=persistent and self.num_workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        if self._train is None:
            self.setup("fit")
        if self.fast_tr:  # the same first examples every epoch (Lightning keeps this sampler)
            sampler = SequentialSampler(self._train)
        else:
            rank, world = self._rank()
            sampler = EpochSampler(self._train, num_replicas=world, rank=rank)
        return self._loader(self._train, self.batch_size, sampler, persistent=True)

    def val_dataloader(self) -> DataLoader:
        if self._valid is None:
            self.setup("validate")
        return self._loader(self._valid, 1, SequentialSampler(self._valid))

    def test_dataloader(self) -> DataLoader:
        if self._test is None:
            self.setup("test")
        return self._loader(self._test, 1, SequentialSampler(self._test))

    # ------------------------------------------------------------------ prep_dataset.py
    def prepare_dataset(self, progress: bool = True) -> dict[str, Path]:
        """What ``prep_dataset.py`` does: generate the stand-in dataset when ``toy`` is set and
        it is missing or incomplete, then compute the activity index of every source for the
        train and valid splits into ``sad_dir``. Returns ``{"<source>_<split>": csv path}``."""
        if self.toy is not None:
            prepare_toy_dataset(self.data_dir, self.toy, self.sample_rate, progress=progress)
        paths = {}
        for split in ("train", "valid"):
            tracks = self.tracks(split)
            if not tracks:
                continue
            built = build_activity_index(
                tracks, self.sources, split, self.sad_dir, self.activity, progress=progress
            )
            paths.update({f"{source}_{split}": p for source, p in built.items()})
        return paths


def _make_params(cls: type, values: Mapping[str, Any] | None, key: str):
    """Build a parameter dataclass from a config mapping, naming unknown keys."""
    values = dict(values or {})
    fields = cls.__dataclass_fields__
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown key(s) {', '.join(unknown)} in {key}; valid keys: {', '.join(fields)}"
        )
    try:
        return cls(**values)
    except TypeError as err:
        raise ValueError(f"bad {key} parameters {values}: {err}") from err
