"""LightningDataModule for MUSDB18-HQ-layout datasets (MUSDB18-HQ itself or the stand-in)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, SequentialSampler, Subset

from bsrnn.data.activity import Segment, load_activity_index
from bsrnn.data.datasets import (
    EpochSampler,
    ShardSampler,
    TrackDataset,
    TrainingExamples,
    check_targets,
)
from bsrnn.data.prepare import prepare_dataset
from bsrnn.data.settings import DataSettings
from bsrnn.data.tracks import Track
from bsrnn.errors import ConfigError

log = logging.getLogger(__name__)


class MusdbDataModule(L.LightningDataModule):
    """Training, validation and test data of a dataset in the MUSDB18-HQ layout.

    ``train.py`` builds it from the ``dset`` config group and the model's targets::

        settings = DataSettings.from_mapping(OmegaConf.to_container(cfg.dset, resolve=True))
        datamodule = MusdbDataModule(settings, targets=model.targets, fast_tr=bool(cfg.fast_tr))

    Every batch is ``(mixture [B, C, T], references [B, n_t, C, T])`` float32, the references
    holding ``targets`` in the order of ``targets`` (whatever the order of
    ``settings.sources``), so nothing downstream needs a source index:

    - train: ``T = seq_duration * sr``; the mixture is the sum of all ``settings.sources`` after
      augmentation (a target silenced by ``silenttarget`` is absent from it); ``B = batch_size``
      per device (under DDP each rank draws its own examples).
    - validation / test: one full track per batch (``B = 1``), the mixture per
      ``settings.mixture`` (validation cropped to ``eval_seq_duration``).

    Args:
        settings: the checked dataset settings.
        targets: the sources the model estimates (one for a per-target model, several for a
            multi-target model); each must be in ``settings.sources``. With
            ``sampling="activity"`` and sources not mixed across tracks, segments come from
            the first target's index.
        fast_tr: overfit one batch: no augmentation, no random mixing, centred crops, the same
            examples always; validation uses the same examples.
    """

    def __init__(
        self, settings: DataSettings, targets: Sequence[str], fast_tr: bool = False
    ) -> None:
        super().__init__()
        if not isinstance(settings, DataSettings):
            raise ConfigError(
                f"MusdbDataModule needs DataSettings (DataSettings.from_mapping(cfg.dset)), got "
                f"{type(settings).__name__}"
            )
        self.settings = settings
        self.targets = check_targets(targets, settings.sources)
        self.fast_tr = bool(fast_tr)
        self.augmenter = settings.augmenter()
        self._train: TrainingExamples | None = None
        self._valid: Dataset | None = None
        self._test: TrackDataset | None = None

    # ------------------------------------------------------------------ tracks and examples
    def tracks(self, split: str) -> list[Track]:
        """Checked tracks of ``split`` (``train``, ``valid``, ``test``)."""
        return self.settings.tracks(split)

    @property
    def random_track_mix(self) -> bool:
        """Whether training sources come from independent random tracks / segments."""
        return self.settings.random_track_mix and not self.fast_tr

    def _excerpts(self, tracks: list[Track]) -> dict[str, list[Segment]]:
        s = self.settings
        if s.sampling == "random":
            whole = [Segment(t, 0, t.frames) for t in tracks]
            return {name: whole for name in s.sources}
        wanted = s.sources if self.random_track_mix else [self.targets[0]]
        return {
            name: load_activity_index(
                s.sad_path, name, "train", tracks, s.activity, s.seq_len, s.prep_command
            )
            for name in wanted
        }

    def _epoch_length(self, n_tracks: int, excerpts: dict[str, list[Segment]]) -> int:
        s = self.settings
        if s.n_samples is not None:
            return s.n_samples
        if s.samples_per_track is not None:
            return s.samples_per_track * n_tracks
        return len(excerpts[self.targets[0]])

    def build_train_dataset(self, rank: int = 0) -> TrainingExamples:
        """The training examples of this configuration (reads headers and the index only)."""
        s = self.settings
        tracks = self.tracks("train")
        excerpts = self._excerpts(tracks)
        return TrainingExamples(
            excerpts,
            s.sources,
            self.targets,
            seq_len=s.seq_len,
            length=self._epoch_length(len(tracks), excerpts),
            augmenter=self.augmenter,
            random_track_mix=self.random_track_mix,
            peak_normalize=s.peak_normalize,
            deterministic=self.fast_tr,
            seed=s.seed,
            rank=rank,
        )

    # ------------------------------------------------------------------ Lightning hooks
    def prepare_data(self) -> None:
        """Check that the dataset (and the activity index when needed) is there."""
        self.tracks("train")
        self.tracks("valid")
        if self.settings.sampling == "activity":
            self._excerpts(self.tracks("train"))

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets the stage needs (once)."""
        if stage in (None, "fit") and self._train is None:
            self._train = self.build_train_dataset(rank=self._rank()[0])
        if stage in (None, "fit", "validate") and self._valid is None:
            if self.fast_tr:
                train = self._train or self.build_train_dataset(rank=self._rank()[0])
                self._valid = Subset(train, range(min(self.settings.batch_size, len(train))))
            else:
                self._valid = self._tracks_dataset("valid", self.settings.eval_seq_len)
        if stage in (None, "test") and self._test is None:
            self._test = self._tracks_dataset("test")

    def _tracks_dataset(self, split: str, seq_len: int | None = None) -> TrackDataset:
        s = self.settings
        return TrackDataset(self.tracks(split), s.sources, self.targets, s.mixture, seq_len)

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
            num_workers=self.settings.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=persistent and self.settings.num_workers > 0,
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
        return self._loader(self._train, self.settings.batch_size, sampler, persistent=True)

    def val_dataloader(self) -> DataLoader:
        if self._valid is None:
            self.setup("validate")
        rank, world = self._rank()  # each track on one rank only, none repeated
        return self._loader(
            self._valid, 1, ShardSampler(self._valid, num_replicas=world, rank=rank)
        )

    def test_dataloader(self) -> DataLoader:
        if self._test is None:
            self.setup("test")
        rank, world = self._rank()
        return self._loader(self._test, 1, ShardSampler(self._test, num_replicas=world, rank=rank))

    # ------------------------------------------------------------------ prep_dataset.py
    def prepare_dataset(self, progress: bool = True) -> dict[str, Path]:
        """:func:`~bsrnn.data.prepare.prepare_dataset` of these settings (what
        ``prep_dataset.py`` does; it needs no target)."""
        return prepare_dataset(self.settings, progress=progress)
