"""Datasets of training examples and of full tracks, and the epoch-aware example sampler.

Training examples are drawn from *excerpts*: whole tracks (``sampling="random"``, the
``musdb18hq`` dataset) or active segments of the activity index (``sampling="activity"``, the
``musdb18hq_sad`` dataset). Each example is a pure function of ``(seed, rank, epoch, index)``:
its random generator is seeded from those four numbers, so a seeded run is reproducible,
DataLoader workers never repeat each other (they get different indices) and the result does not
depend on the number of workers. :class:`EpochSampler` hands the dataset ``(epoch, index)`` keys.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from bsrnn.audio import read_audio
from bsrnn.data.activity import Segment
from bsrnn.data.augment import SourceAugmenter, crop_start
from bsrnn.data.tracks import MIXTURE, DatasetError, Track

SILENCE_RMS = 1e-4  # a mixture quieter than this (about -80 dBFS) is redrawn
MAX_DRAWS = 100


class TrainingExamples(Dataset):
    """Training examples ``(mixture [C, T], sources [S, C, T])``, float32 tensors.

    The mixture is the sum of the (augmented, normalised) sources; sources follow the order
    of ``sources``. A key is an index or an ``(epoch, index)`` pair (from :class:`EpochSampler`).

    Args:
        excerpts: for each source, the excerpts its audio may be drawn from.
        sources: source names, in output order.
        target: the source whose excerpts are used when sources are not mixed across tracks.
        seq_len: samples per example.
        length: examples per epoch.
        augmenter: the configured augmentations (``randomcrop`` decides the crop position).
        random_track_mix: draw each source from its own random excerpt (else all sources are
            read at one excerpt of ``target``, as in the real song).
        peak_normalize: divide the sources (hence the mixture) by the mixture's peak.
        deterministic: no randomness at all: example ``i`` is the centred crop of excerpt
            ``i`` of ``target``, no augmentation (``fast_tr``).
        seed, rank: seed of the run and rank of this process (distributed training).
    """

    def __init__(
        self,
        excerpts: Mapping[str, Sequence[Segment]],
        sources: Sequence[str],
        target: str,
        seq_len: int,
        length: int,
        augmenter: SourceAugmenter,
        random_track_mix: bool = True,
        peak_normalize: bool = False,
        deterministic: bool = False,
        seed: int = 42,
        rank: int = 0,
    ) -> None:
        if target not in sources:
            raise ValueError(f"target {target!r} is not among the sources {list(sources)}")
        needed = list(sources) if random_track_mix and not deterministic else [target]
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
            raise ValueError(f"examples per epoch must be positive, got {length}")
        self.excerpts = {k: list(v) for k, v in excerpts.items()}
        self.sources = list(sources)
        self.target = target
        self.seq_len = int(seq_len)
        self.length = int(length)
        self.augmenter = augmenter
        self.random_track_mix = random_track_mix
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
        """Sources ``[S, C, T]`` of one draw (``rng`` None: deterministic excerpt ``index``)."""
        crop_rng = rng if self.augmenter.random_crop else None
        if rng is not None and self.random_track_mix:
            stems = []
            for source in self.sources:
                pool = self.excerpts[source]
                seg = pool[int(rng.integers(len(pool)))]
                stems.append(
                    self._read(seg, source, crop_start(seg.frames, self.seq_len, crop_rng))
                )
        else:
            pool = self.excerpts[self.target]
            seg = pool[index % len(pool) if rng is None else int(rng.integers(len(pool)))]
            offset = crop_start(seg.frames, self.seq_len, crop_rng)
            stems = [self._read(seg, source, offset) for source in self.sources]
        if rng is not None:
            stems = [self.augmenter(audio, rng) for audio in stems]
        return np.stack(stems)

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
            if float(np.sqrt(np.mean(np.square(mixture, dtype=np.float64)))) >= SILENCE_RMS:
                return torch.from_numpy(mixture), torch.from_numpy(sources)
        raise DatasetError(
            f"no non-silent mixture in {MAX_DRAWS} draws for example {index} (epoch {epoch}): "
            "are the tracks silent?"
        )


class TrackDataset(Dataset):
    """Full tracks ``(mixture [C, T], sources [S, C, T])``, float32 tensors.

    The mixture is read from ``mixture.wav``; ``seq_len`` (optional) keeps the first samples.
    """

    def __init__(
        self, tracks: Sequence[Track], sources: Sequence[str], seq_len: int | None = None
    ) -> None:
        self.tracks = list(tracks)
        self.sources = list(sources)
        self.seq_len = seq_len

    def __len__(self) -> int:
        return len(self.tracks)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        track = self.tracks[index]
        stop = track.frames if self.seq_len is None else min(self.seq_len, track.frames)
        mixture, _ = read_audio(track.stem_path(MIXTURE), 0, stop)
        sources = np.stack([read_audio(track.stem_path(s), 0, stop)[0] for s in self.sources])
        return torch.from_numpy(mixture), torch.from_numpy(sources)


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
