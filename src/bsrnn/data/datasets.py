"""Datasets of training examples and of full tracks, and the epoch-aware example sampler.

Training examples are drawn from *excerpts*: whole tracks (``sampling="random"``, the
``musdb18hq`` dataset) or active segments of the activity index (``sampling="activity"``, the
``musdb18hq_sad`` dataset). Each example is a pure function of ``(seed, rank, epoch, index)``:
its random generator is seeded from those four numbers, so a seeded run is reproducible,
DataLoader workers never repeat each other (they get different indices) and the result does not
depend on the number of workers. :class:`EpochSampler` hands the dataset ``(epoch, index)`` keys.

Every dataset here returns ``(mixture [C, T], references [n_t, C, T])``: the references are the
*targets* (the sources the model estimates) in the order of ``targets``, whatever the order of
``sources``; the mixture is the sum of all ``sources`` (training, ``mixture="stems"``) or the
track's ``mixture.wav`` (``mixture="file"``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import partial

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from bsrnn.audio import read_audio
from bsrnn.data.activity import Segment
from bsrnn.data.augment import Augmenter, crop_start
from bsrnn.data.tracks import Track, read_track_audio
from bsrnn.errors import ConfigError, DatasetError

SILENCE_RMS = 1e-4  # a mixture quieter than this (about -80 dBFS) is redrawn
MAX_DRAWS = 100


class TrainingExamples(Dataset):
    """Training examples ``(mixture [C, T], references [n_t, C, T])``, float32 tensors.

    The mixture is the sum of all (augmented, normalised) ``sources``; the references are the
    ``targets`` among them, in the order of ``targets``. A key is an index or an
    ``(epoch, index)`` pair (from :class:`EpochSampler`).

    Args:
        excerpts: for each source, the excerpts its audio may be drawn from.
        sources: source names; the mixture sums them all.
        targets: the sources returned as references, in this order; when sources are not mixed
            across tracks all of them are read at one excerpt of ``targets[0]``.
        seq_len: samples per example.
        length: examples per epoch.
        augmenter: the configured augmentations (:class:`~bsrnn.data.augment.Augmenter`):
            each source, then the stacked sources, then the mixture alone.
        random_track_mix: draw each source from its own random excerpt (else all sources are
            read at one excerpt of ``targets[0]``, as in the real song).
        peak_normalize: divide the sources (hence the mixture) by the mixture's peak.
        deterministic: no randomness at all: example ``i`` is the centred crop of excerpt
            ``i`` of ``targets[0]``, no augmentation (``fast_tr``). Otherwise the crop position
            is uniform inside the excerpt.
        seed, rank: seed of the run and rank of this process (distributed training).
    """

    def __init__(
        self,
        excerpts: Mapping[str, Sequence[Segment]],
        sources: Sequence[str],
        targets: Sequence[str],
        seq_len: int,
        length: int,
        augmenter: Augmenter,
        random_track_mix: bool = True,
        peak_normalize: bool = False,
        deterministic: bool = False,
        seed: int = 42,
        rank: int = 0,
    ) -> None:
        self.sources = list(sources)
        self.targets = check_targets(targets, self.sources)
        self.target_rows = [self.sources.index(t) for t in self.targets]
        self.random_track_mix = random_track_mix and not deterministic
        needed = self.sources if self.random_track_mix else [self.targets[0]]
        for name in needed:
            if not excerpts.get(name):
                raise DatasetError(f"no excerpt to draw source {name!r} from")
            short = [s for s in excerpts[name] if s.frames < seq_len]
            if short:
                raise DatasetError(
                    f"{len(short)} excerpt(s) of {name!r} are shorter than an example of "
                    f"{seq_len} samples, e.g. track {short[0].track.name!r} "
                    f"[{short[0].start}, {short[0].end})"
                )
        if length < 1:
            raise ConfigError(f"examples per epoch must be positive, got {length}")
        self.excerpts = {k: list(v) for k, v in excerpts.items()}
        self.seq_len = int(seq_len)
        self.length = int(length)
        self.augmenter = augmenter
        self.peak_normalize = peak_normalize
        self.deterministic = deterministic
        self.seed = int(seed)
        self.rank = int(rank)

    def __len__(self) -> int:
        return self.length

    def rng(self, epoch: int, index: int) -> np.random.Generator:
        """The random generator of example ``index`` at ``epoch``."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, self.rank, epoch, index]))

    def _read(self, segment: Segment, source: str, offset: int) -> np.ndarray:
        start = segment.start + offset
        audio, _ = read_audio(segment.track.stem_path(source), start, start + self.seq_len)
        return audio

    def _draw(self, rng: np.random.Generator | None, index: int) -> np.ndarray:
        """All sources ``[S, C, T]`` of one draw (``rng`` None: deterministic excerpt
        ``index``, centred crop, no augmentation)."""
        if rng is not None and self.random_track_mix:
            stems = []
            for source in self.sources:
                pool = self.excerpts[source]
                seg = pool[int(rng.integers(len(pool)))]
                stems.append(self._read(seg, source, crop_start(seg.frames, self.seq_len, rng)))
        else:
            pool = self.excerpts[self.targets[0]]
            seg = pool[index % len(pool) if rng is None else int(rng.integers(len(pool)))]
            offset = crop_start(seg.frames, self.seq_len, rng)
            stems = [self._read(seg, source, offset) for source in self.sources]
        if rng is None:
            return np.stack(stems)
        stems = np.stack(
            [
                self.augmenter.source(audio, name, rng, partial(self._read_random, name, rng))
                for name, audio in zip(self.sources, stems)
            ]
        )
        return self.augmenter.example(stems, self.target_rows, rng)

    def _read_random(self, source: str, rng: np.random.Generator) -> np.ndarray:
        """A crop ``[C, T]`` of ``source`` at a random excerpt (its own excerpts, or the first
        target's when sources share the target's excerpts)."""
        pool = self.excerpts.get(source) or self.excerpts[self.targets[0]]
        seg = pool[int(rng.integers(len(pool)))]
        return self._read(seg, source, crop_start(seg.frames, self.seq_len, rng))

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        rng = None if self.deterministic else self.rng(epoch, index)
        for attempt in range(MAX_DRAWS):
            sources = self._draw(rng, index + attempt)
            mixture = sources.sum(axis=0)
            if self.peak_normalize:
                peak = float(np.max(np.abs(mixture)))
                if peak > 0.0:
                    sources = sources / np.float32(peak)
                    mixture = sources.sum(axis=0)
            if rng is not None:
                mixture = self.augmenter.mixture(mixture, rng)
            if float(np.sqrt(np.mean(np.square(mixture, dtype=np.float64)))) >= SILENCE_RMS:
                references = np.ascontiguousarray(sources[self.target_rows])
                return torch.from_numpy(mixture), torch.from_numpy(references)
        raise DatasetError(
            f"no non-silent mixture in {MAX_DRAWS} draws for example {index} (epoch {epoch}): "
            "are the tracks silent?"
        )


class TrackDataset(Dataset):
    """Full tracks ``(mixture [C, T], references [n_t, C, T])``, float32 tensors.

    ``mixture="stems"``: the mixture is the sum of ``sources``; ``"file"``: ``mixture.wav``
    (see :func:`~bsrnn.data.tracks.read_track_audio`). The references are the ``targets`` in
    their order. ``seq_len`` (optional) keeps the first samples.
    """

    def __init__(
        self,
        tracks: Sequence[Track],
        sources: Sequence[str],
        targets: Sequence[str],
        mixture: str = "stems",
        seq_len: int | None = None,
    ) -> None:
        self.tracks = list(tracks)
        self.targets = check_targets(targets, sources)
        # stems: every source makes the mixture; file: only the targets need reading
        self.read = list(sources) if mixture == "stems" else list(self.targets)
        self.target_rows = [self.read.index(t) for t in self.targets]
        self.mixture = mixture
        self.seq_len = seq_len

    def __len__(self) -> int:
        return len(self.tracks)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        mixture, stems = read_track_audio(
            self.tracks[index], self.read, self.mixture, stop=self.seq_len
        )
        references = np.ascontiguousarray(stems[self.target_rows])
        return torch.from_numpy(mixture), torch.from_numpy(references)


def check_targets(targets: Sequence[str], sources: Sequence[str]) -> list[str]:
    """``targets`` as a list: non-empty, distinct, each among ``sources`` (else ConfigError)."""
    if isinstance(targets, str) or not isinstance(targets, Sequence):
        raise ConfigError(f"targets={targets!r}: expected a list of source names")
    targets = list(targets)
    if not targets or len(set(targets)) != len(targets):
        raise ConfigError(f"targets={targets}: expected distinct source names, at least one")
    missing = [t for t in targets if t not in sources]
    if missing:
        raise ConfigError(
            f"target(s) {', '.join(repr(t) for t in missing)} not among the dataset's sources "
            f"(dset.sources={list(sources)})"
        )
    return targets


class EpochSampler(DistributedSampler):
    """Yields ``(epoch, index)`` keys: this rank's share of ``range(len(dataset))``.

    ``set_epoch`` (called by Lightning at every epoch start) changes the keys, hence the random
    draws, each epoch. It subclasses ``DistributedSampler`` so that Lightning keeps it under
    DDP instead of replacing it: ranks get disjoint indices.
    """

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        epoch = int(self.epoch)
        return iter([(epoch, i) for i in range(self.rank, self.total_size, self.num_replicas)])


class ShardSampler(DistributedSampler):
    """Rank ``r`` of ``W`` takes items ``r, r + W, r + 2W, ...``: every item exactly once over
    the ranks, without the padding (repeated items) of ``DistributedSampler``; ranks may get
    different counts. A ``DistributedSampler`` subclass so that Lightning keeps it under DDP
    (validation and test: each track counted once whatever the number of devices).

    A rank left without an item (fewer items than ranks) gets one repeated item so that it
    still runs the loop and its epoch-end hooks (which take part in collectives); ``counted``
    is the number of its leading items to count (0 there)."""

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        n = len(dataset)  # type: ignore[arg-type]
        self.indices = list(range(rank, n, num_replicas))
        self.counted = len(self.indices)
        if not self.indices and n > 0:
            self.indices = [rank % n]  # run, but do not count
        self.num_samples = len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
