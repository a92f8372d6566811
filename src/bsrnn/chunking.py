"""Whole-track separation in chunks, shared by training validation, evaluation and inference.

Every chunking default lives here, in :class:`ChunkSettings` (built from the ``eval`` config by
:meth:`ChunkSettings.from_mapping`). Two schemes:

- linear fader (``hop_size=None``), in one of two layouts (``layout``; config key
  ``eval.fader_layout``):

  - ``"reference"`` (the default): the reference implementation's chunks and weights, sample for
    sample. With ``L = int(sample_rate * segment_len * (1 + overlap))`` and
    ``F = overlap * segment_len * sample_rate`` (a float), the first chunk is ``[0, L)``, the
    second starts at ``int(L - F)``, every later one ``L`` samples after the one before, and
    chunk ``k`` ends at ``(k + 1) * L`` (cut at the track's end): chunks after the first are
    ``L + ceil(F)`` samples long (10 s segments, 10 % overlap: 0-11, 10-22, 21-33, 32-... s).
    Chunks are taken while their start is before ``T - F``. Each chunk is weighted by linear
    ramps of ``int(F)`` samples, as ``torchaudio.transforms.Fade(fade_shape="linear")`` makes
    them: a fade-in ``linspace(0, 1, int(F))`` at its start (not on the first chunk) and a
    fade-out ``1 - linspace(0, 1, int(F))`` at its end (not on a chunk reaching the track's
    end); the weighted chunks are summed, without renormalisation. When ``F`` is a whole number
    (e.g. 44100 for 10 s segments with 10 % overlap at 44.1 kHz) the two ramps of an overlap
    cover the same samples and sum to 1. When it is not, the overlap is ``ceil(F)`` samples, one
    more than the ramps, and inside it the weights sum to ``1 + 1 / (int(F) - 1)``: the
    reference does the same.
  - ``"even"``: chunks of ``segment_len * (1 + overlap)`` seconds starting every
    ``segment_len * (1 + overlap) - overlap * segment_len`` seconds (each rounded to samples),
    so consecutive chunks overlap by ``overlap * segment_len``; linear ramps strictly inside
    ``(0, 1)`` over each overlap, and the sum divided by the summed weights (which therefore
    always add up to 1); the last chunk is cut at the track's end.

- overlap-add (``hop_size`` set): the track is zero-padded by ``segment_len`` at both ends and
  cut into rectangular windows of ``segment_len`` every ``hop_size`` seconds, each chunk scaled
  by ``hop_size / segment_len`` (chunks lying wholly in the padding are skipped). The result is
  divided by the summed weights, which is 1 wherever ``segment_len`` is a multiple of
  ``hop_size``; otherwise this averages the overlapping chunks instead of leaving a gain ripple.

A track no longer than one chunk is separated in one forward pass. Chunk outputs are added to
the result as they come (and, where the scheme normalises, normalised as soon as no later chunk
reaches a sample), so the memory beyond the output is bounded by a chunk, not the track; only
the chunks move to the compute device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import torch
from tqdm import tqdm

from bsrnn.errors import ConfigError

SeparateFn = Callable[[torch.Tensor], torch.Tensor]

FADER_LAYOUTS = ("reference", "even")
"""Values of :attr:`ChunkSettings.layout` (config key ``eval.fader_layout``)."""

_MAPPING_KEYS = {
    "segment_len": "segment_len",
    "overlap": "overlap",
    "hop_size": "hop_size",
    "batch_chunks": "batch_chunks",
    "fader_layout": "layout",
}


def _is_real(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class ChunkSettings:
    """How whole tracks are cut into chunks (see the module's documentation).

    ``segment_len``, ``overlap`` and ``hop_size`` are in seconds (``overlap`` a fraction of
    ``segment_len``); ``segment_len=None``: the networks' preferred segment
    (:func:`bsrnn.apply.resolve_chunking`), and where none is declared (or given to
    :func:`separate_in_chunks` unresolved) the whole track in one pass; ``hop_size=None``: the
    linear fader in ``layout`` (``"reference"`` or ``"even"``), else overlap-add.
    ``batch_chunks``: chunks per forward pass (``None``: 1 on the CPU, 4 on a GPU).
    Invalid values raise :class:`~bsrnn.errors.ConfigError` naming the ``eval.<key>`` setting.
    """

    segment_len: float | None = None
    overlap: float = 0.1
    hop_size: float | None = None
    batch_chunks: int | None = None
    layout: str = "reference"

    def __post_init__(self) -> None:
        seg, ov, hop = self.segment_len, self.overlap, self.hop_size
        if seg is not None:
            if not _is_real(seg) or not math.isfinite(seg) or not seg > 0:
                raise ConfigError(
                    f"eval.segment_len must be a number of seconds > 0 (or null: the model's "
                    f"preferred segment), got {seg!r}"
                )
            object.__setattr__(self, "segment_len", float(seg))
        if not _is_real(ov) or not 0 <= ov < 1:
            raise ConfigError(
                f"eval.overlap must be a fraction of the segment in [0, 1), got {ov!r}"
            )
        object.__setattr__(self, "overlap", float(ov))
        if hop is not None:
            if not _is_real(hop) or not math.isfinite(hop) or not hop > 0:
                raise ConfigError(
                    f"eval.hop_size must be a number of seconds > 0 (or null: the linear "
                    f"fader), got {hop!r}"
                )
            if seg is not None and hop > seg:
                raise ConfigError(
                    f"eval.hop_size ({hop} s) must not exceed eval.segment_len ({seg} s): "
                    "parts of the track would not be covered"
                )
            object.__setattr__(self, "hop_size", float(hop))
        bc = self.batch_chunks
        if bc is not None:
            if not isinstance(bc, Integral) or isinstance(bc, bool) or bc < 1:
                raise ConfigError(
                    f"eval.batch_chunks must be an integer >= 1 (or null: 1 on the CPU, 4 on "
                    f"a GPU), got {bc!r}"
                )
            object.__setattr__(self, "batch_chunks", int(bc))
        if self.layout not in FADER_LAYOUTS:
            raise ConfigError(
                f"eval.fader_layout must be one of {', '.join(map(repr, FADER_LAYOUTS))}, "
                f"got {self.layout!r}"
            )

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> ChunkSettings:
        """Settings from the plain ``eval`` config: its keys ``segment_len``, ``overlap``,
        ``hop_size``, ``batch_chunks`` and ``fader_layout`` (others are ignored; missing ones
        keep their defaults)."""
        if mapping is None:
            return cls()
        if not isinstance(mapping, Mapping):
            raise ConfigError(f"the eval config must be a mapping, got {type(mapping).__name__}")
        return cls(
            **{field: mapping[key] for key, field in _MAPPING_KEYS.items() if key in mapping}
        )

    @classmethod
    def config_keys(cls) -> tuple[str, ...]:
        """The ``eval`` config keys that :meth:`from_mapping` reads."""
        return tuple(_MAPPING_KEYS)

    def to_mapping(self) -> dict[str, Any]:
        """The ``eval`` config keys these settings come from (inverse of :meth:`from_mapping`)."""
        return {key: getattr(self, field) for key, field in _MAPPING_KEYS.items()}

    def chunks_per_pass(self, device: torch.device | str) -> int:
        """``batch_chunks``, or its default on ``device``: 1 on the CPU, 4 elsewhere (a GPU)."""
        if self.batch_chunks is not None:
            return self.batch_chunks
        return 1 if torch.device(device).type == "cpu" else 4


DEFAULT_CHUNKING = ChunkSettings()


@dataclass(frozen=True)
class _Chunk:
    start: int  # in track samples; may be < 0 or the stop > T (overlap-add windows)
    stop: int
    fade_in: int = 0  # reference fader ramps (samples)
    fade_out: int = 0


def _samples(seconds: float, sample_rate: int) -> int:
    return int(round(float(seconds) * sample_rate))


def _too_short(segment_len: float, sample_rate: int) -> ConfigError:
    return ConfigError(
        f"eval.segment_len ({segment_len} s) is too short at {sample_rate} Hz: "
        "its chunks would not advance by a whole sample"
    )


def _reference_plan(n: int, sample_rate: int, segment_len: float, overlap: float) -> list[_Chunk]:
    """The reference fader's chunks (none: one pass), see the module's documentation. The float
    expressions keep the reference's order of operations, so the truncations agree."""
    length = int(sample_rate * segment_len * (1 + overlap))
    fade = overlap * segment_len * sample_rate  # a float, compared as such
    ramp = int(fade)
    if length >= n:
        return []
    if int(length - fade) < 1:
        raise _too_short(segment_len, sample_rate)
    chunks: list[_Chunk] = []
    start, stop = 0, length
    while start < n - fade:
        chunks.append(
            _Chunk(
                start,
                min(stop, n),
                fade_in=ramp if start > 0 else 0,
                fade_out=ramp if stop < n else 0,
            )
        )
        start += int(length - fade) if start == 0 else length
        stop += length
    return chunks


def _reference_weight(chunk: _Chunk) -> torch.Tensor:
    """Fade-in ramp times fade-out ramp over the chunk, as torchaudio's linear ``Fade``."""
    size = chunk.stop - chunk.start
    fade_in = torch.cat([torch.linspace(0, 1, chunk.fade_in), torch.ones(size - chunk.fade_in)])
    fade_out = torch.cat(
        [torch.ones(size - chunk.fade_out), -torch.linspace(0, 1, chunk.fade_out) + 1]
    )
    return fade_in.clamp_(0, 1) * fade_out.clamp_(0, 1)


def _even_plan(n: int, sample_rate: int, segment_len: float, overlap: float) -> list[_Chunk]:
    """Chunks every ``segment_len``, ``segment_len * (1 + overlap)`` long, the last one cut at
    ``n`` (it is longer than the overlap); none: one pass."""
    length = _samples(segment_len * (1 + overlap), sample_rate)
    fade = min(_samples(segment_len * overlap, sample_rate), length - 1)
    if length >= n:
        return []
    stride = length - fade
    return [
        _Chunk(a, min(a + length, n), fade_in=fade, fade_out=fade)
        for a in range(0, max(n - fade, 1), stride)
    ]


def _even_weight(i: int, count: int, size: int, overlap: int) -> torch.Tensor:
    """Weights of chunk ``i`` of ``count`` (``size`` samples): linear ramps strictly inside
    (0, 1) over the overlaps with its neighbours, complementary to theirs."""
    weight = torch.ones(size)
    if overlap > 0:
        ramp = torch.arange(1, overlap + 1, dtype=torch.float32) / (overlap + 1)
        if i > 0:
            weight[:overlap] = ramp
        if i < count - 1:
            weight[size - overlap :] = 1.0 - ramp
    return weight


def _ola_plan(n: int, sample_rate: int, segment_len: float, hop_size: float) -> list[_Chunk]:
    """Windows of ``segment_len`` every ``hop_size`` over the track padded with ``segment_len``
    zeros at both ends, in track coordinates (they may reach past ``[0, n)``); none: one pass."""
    length = _samples(segment_len, sample_rate)
    hop = max(1, _samples(hop_size, sample_rate))
    if length >= n:
        return []
    # padded start 0 lies wholly in the padding: skipped
    return [_Chunk(p - length, p) for p in range(hop, n + length, hop)]


def _plan(n: int, sample_rate: int, chunking: ChunkSettings) -> list[_Chunk]:
    """The chunks of a track of ``n`` samples (none: one pass over the whole track)."""
    if not isinstance(chunking, ChunkSettings):
        raise TypeError(
            f"chunking must be a ChunkSettings (ChunkSettings.from_mapping(cfg.eval) builds one "
            f"from the config), got {type(chunking).__name__}"
        )
    if n <= 0:
        raise ValueError(f"cannot separate an empty mixture ({n} samples)")
    if not sample_rate > 0:
        raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
    seg = chunking.segment_len
    if seg is None:
        return []
    if _samples(seg, sample_rate) < 1:
        raise _too_short(seg, sample_rate)
    if chunking.hop_size is not None:
        return _ola_plan(n, sample_rate, seg, chunking.hop_size)
    if chunking.layout == "reference":
        return _reference_plan(n, sample_rate, seg, chunking.overlap)
    return _even_plan(n, sample_rate, seg, chunking.overlap)


def chunk_spans(
    n: int, sample_rate: int, chunking: ChunkSettings = DEFAULT_CHUNKING
) -> list[tuple[int, int]]:
    """``(start, stop)`` of the chunks that :func:`separate_in_chunks` gives its ``fn`` for a
    track of ``n`` samples, in the order it gives them (``[(0, n)]``: one pass). Overlap-add
    windows may start before 0 or stop after ``n``: those samples are zero padding."""
    return [(c.start, c.stop) for c in _plan(n, sample_rate, chunking)] or [(0, n)]


def separate_in_chunks(
    fn: SeparateFn,
    mixture: torch.Tensor,
    sample_rate: int,
    chunking: ChunkSettings = DEFAULT_CHUNKING,
    device: torch.device | str | None = None,
    progress: bool | str = False,
) -> torch.Tensor:
    """Separate a whole track chunk by chunk, as ``chunking`` says (see the module's
    documentation). ``progress``: a bar over the chunks (a string: the bar's label).

    ``fn`` maps a mixture chunk ``[n, C, t]`` (on ``device``; default: the mixture's) to
    estimates ``[n, S, C, t]``. ``mixture`` is ``[B, C, T]`` at ``sample_rate``; returns
    ``[B, S, C, T]`` float32 on the mixture's device. Consecutive chunks of equal length go
    through ``fn`` together, ``chunking.chunks_per_pass(device)`` at a time. Runs without
    gradients.
    """
    if mixture.dim() != 3:
        raise ValueError(
            f"expected a mixture [batch, channels, samples], got shape {tuple(mixture.shape)}"
        )
    device = torch.device(device) if device is not None else mixture.device
    batch, channels, n = mixture.shape
    chunks = _plan(n, sample_rate, chunking)  # empty: one pass over the whole track
    seg = chunking.segment_len

    with torch.no_grad():
        if not chunks:  # one chunk: a plain forward pass
            out = fn(mixture.to(device))
            _check_output(out, batch, channels, n)
            return out.to(mixture.device, torch.float32)

        if chunking.hop_size is not None:
            scale = float(chunking.hop_size) / float(seg)

            def weight(i: int) -> torch.Tensor:
                return torch.full((chunks[i].stop - chunks[i].start,), scale)

        elif chunking.layout == "reference":

            def weight(i: int) -> torch.Tensor:
                return _reference_weight(chunks[i])

        else:

            def weight(i: int) -> torch.Tensor:
                c = chunks[i]
                return _even_weight(i, len(chunks), c.stop - c.start, c.fade_in)

        normalise = chunking.hop_size is not None or chunking.layout == "even"
        return _accumulate(
            fn,
            mixture,
            chunks,
            weight,
            normalise,
            device,
            chunking.chunks_per_pass(device),
            progress,
        )


def _accumulate(
    fn: SeparateFn,
    mixture: torch.Tensor,
    chunks: list[_Chunk],
    weight: Callable[[int], torch.Tensor],
    normalise: bool,
    device: torch.device,
    per_pass: int,
    progress: bool | str,
) -> torch.Tensor:
    """Sum of the weighted chunk outputs (divided by the summed weights if ``normalise``)."""
    batch, channels, n = mixture.shape
    groups = list(_groups(chunks, per_pass))
    out: torch.Tensor | None = None
    # Running weight: out[..., :done] is final; wsum holds the summed weights from `done` on.
    done, wsum = 0, torch.zeros(0)
    label = progress if isinstance(progress, str) else "chunks"
    bar = tqdm(total=len(chunks), desc=label, unit="chunk", disable=not progress, leave=False)
    try:
        for g, group in enumerate(groups):
            first = chunks[group[0]]
            x = torch.cat([crop(mixture, chunks[i].start, chunks[i].stop) for i in group])
            y = fn(x.to(device))  # [k*B, S, C, t]
            _check_output(y, x.shape[0], channels, first.stop - first.start)
            y = y.to(mixture.device, torch.float32)
            if out is None:
                out = torch.zeros(
                    (batch, y.shape[1], channels, n), dtype=torch.float32, device=mixture.device
                )
            for k, i in enumerate(group):
                a, b = chunks[i].start, chunks[i].stop
                lo, hi = max(a, 0), min(b, n)
                w = weight(i)[lo - a : hi - a]
                part = y[k * batch : (k + 1) * batch, ..., lo - a : hi - a]
                out[..., lo:hi].add_(part * w.to(mixture.device))
                if normalise:
                    if hi - done > wsum.numel():
                        wsum = torch.cat([wsum, torch.zeros(hi - done - wsum.numel())])
                    wsum[lo - done : hi - done] += w
            if normalise:
                # samples before the next chunk's start receive nothing more: normalise them
                final = n if g == len(groups) - 1 else max(chunks[groups[g + 1][0]].start, 0)
                if final > done:
                    norm = wsum[: final - done].clamp_min(torch.finfo(torch.float32).tiny)
                    out[..., done:final].div_(norm.to(mixture.device))
                    wsum, done = wsum[final - done :], final
            bar.update(len(group))
    finally:
        bar.close()
    assert out is not None
    return out


def _groups(chunks: list[_Chunk], size: int) -> Iterator[list[int]]:
    """Indices of consecutive runs of at most ``size`` chunks of equal length."""
    group: list[int] = []
    for i, c in enumerate(chunks):
        head = chunks[group[0]] if group else None
        if head is not None and (len(group) == size or c.stop - c.start != head.stop - head.start):
            yield group
            group = []
        group.append(i)
    if group:
        yield group


def crop(mixture: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """``mixture[..., start:stop]`` with zeros where the window leaves ``[0, T)``."""
    n = mixture.shape[-1]
    if start >= 0 and stop <= n:
        return mixture[..., start:stop]
    piece = mixture.new_zeros((*mixture.shape[:-1], stop - start))
    lo, hi = max(start, 0), min(stop, n)
    piece[..., lo - start : hi - start] = mixture[..., lo:hi]
    return piece


def _check_output(y: torch.Tensor, batch: int, channels: int, n: int) -> None:
    if y.dim() != 4 or y.shape[0] != batch or y.shape[2] != channels or y.shape[3] != n:
        raise ValueError(
            f"the separation function must map [n, C, t] to [n, S, C, t]: for an input of "
            f"[{batch}, {channels}, {n}] it returned {tuple(y.shape)}"
        )
