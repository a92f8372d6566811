"""Chunk plans for whole-track separation, in plain Python and numpy (no torch): which
chunks a track is cut into and how each is weighted, for every scheme of
:mod:`bsrnn.chunking` (whose documentation describes them). ``bsrnn.chunking`` runs a plan
with torch, ``bsrnn.onnx_runtime`` with numpy: both read it from here.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

import bsrnn.checks as checks
from bsrnn.errors import ConfigError

FADER_LAYOUTS = ("reference", "even")
"""Values of :attr:`ChunkSettings.layout` (config key ``eval.fader_layout``)."""

_MAPPING_KEYS = {
    "segment_len": "segment_len",
    "overlap": "overlap",
    "hop_size": "hop_size",
    "batch_chunks": "batch_chunks",
    "fader_layout": "layout",
}


@dataclass(frozen=True)
class ChunkSettings:
    """How whole tracks are cut into chunks (see the module's documentation).

    ``segment_len``, ``overlap`` and ``hop_size`` are in seconds (``overlap`` a fraction of
    ``segment_len``); ``segment_len=None``: the networks' preferred segment
    (:func:`bsrnn.apply.resolve_chunking`), and where none is declared (or given to
    :func:`bsrnn.chunking.separate_in_chunks` unresolved) the whole track in one pass;
    ``hop_size=None``: the
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
        set_ = functools.partial(object.__setattr__, self)
        seg = checks.number(
            "eval.segment_len",
            self.segment_len,
            above=0,
            optional=True,
            expected="seconds > 0 (null: the model's preferred segment)",
        )
        set_("segment_len", seg)
        set_(
            "overlap",
            checks.number(
                "eval.overlap",
                self.overlap,
                minimum=0,
                below=1,
                expected="a fraction of the segment in [0, 1)",
            ),
        )
        hop = checks.number(
            "eval.hop_size",
            self.hop_size,
            above=0,
            optional=True,
            expected="seconds > 0 (null: the linear fader)",
        )
        if hop is not None and seg is not None and hop > seg:
            checks.fail(
                "eval.hop_size",
                hop,
                f"at most eval.segment_len={seg} s (else parts of the track are not covered)",
            )
        set_("hop_size", hop)
        checks.integer(
            "eval.batch_chunks",
            self.batch_chunks,
            minimum=1,
            optional=True,
            expected="an integer >= 1 (null: 1 on the CPU, 4 on a GPU)",
        )
        checks.choice("eval.fader_layout", self.layout, FADER_LAYOUTS)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> ChunkSettings:
        """Settings from the plain ``eval`` config: its keys ``segment_len``, ``overlap``,
        ``hop_size``, ``batch_chunks`` and ``fader_layout`` (others are ignored; missing ones
        keep their defaults)."""
        if mapping is None:
            return cls()
        if not isinstance(mapping, Mapping):
            checks.fail("eval", mapping, "a mapping")
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

    def chunks_per_pass(self, device: Any) -> int:
        """``batch_chunks``, or its default on ``device`` (a torch device or its name): 1 on
        the CPU, 4 elsewhere (a GPU)."""
        if self.batch_chunks is not None:
            return self.batch_chunks
        return 1 if str(device).split(":")[0] == "cpu" else 4


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


def linspace(start: float, end: float, steps: int) -> np.ndarray:
    """``torch.linspace(start, end, steps)`` in float32, value for value: torch's CPU kernel
    counts the first half up from ``start`` and the second down from ``end`` with a float32
    step, each value one fused multiply-add (emulated exactly in float64: the product of two
    float32 values is exact there)."""
    if steps == 1:
        return np.full(1, start, dtype=np.float32)
    step = np.float64((np.float32(end) - np.float32(start)) / np.float32(steps - 1))
    idx = np.arange(steps, dtype=np.float64)
    up = np.float64(np.float32(start)) + step * idx
    down = np.float64(np.float32(end)) - step * (steps - 1 - idx)
    return np.where(idx < steps // 2, up, down).astype(np.float32)


def _reference_weight(chunk: _Chunk) -> np.ndarray:
    """Fade-in ramp times fade-out ramp over the chunk, as torchaudio's linear ``Fade``."""
    size = chunk.stop - chunk.start
    ones = np.ones
    fade_in = np.concatenate([linspace(0, 1, chunk.fade_in), ones(size - chunk.fade_in)])
    fade_out = np.concatenate(
        [ones(size - chunk.fade_out), -linspace(0, 1, chunk.fade_out) + np.float32(1)]
    )
    return (np.clip(fade_in, 0, 1) * np.clip(fade_out, 0, 1)).astype(np.float32)


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


def _even_weight(i: int, count: int, size: int, overlap: int) -> np.ndarray:
    """Weights of chunk ``i`` of ``count`` (``size`` samples): linear ramps strictly inside
    (0, 1) over the overlaps with its neighbours, complementary to theirs."""
    weight = np.ones(size, dtype=np.float32)
    if overlap > 0:
        ramp = np.arange(1, overlap + 1, dtype=np.float32) / np.float32(overlap + 1)
        if i > 0:
            weight[:overlap] = ramp
        if i < count - 1:
            weight[size - overlap :] = np.float32(1.0) - ramp
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


def chunk_weights(chunks: list[_Chunk], chunking: ChunkSettings) -> list[np.ndarray]:
    """The weight ``[stop - start]`` (float32) of every chunk of a plan."""
    if chunking.hop_size is not None:
        scale = np.float32(float(chunking.hop_size) / float(chunking.segment_len))
        return [np.full(c.stop - c.start, scale, dtype=np.float32) for c in chunks]
    if chunking.layout == "reference":
        return [_reference_weight(c) for c in chunks]
    return [_even_weight(i, len(chunks), c.stop - c.start, c.fade_in) for i, c in enumerate(chunks)]


def normalises(chunking: ChunkSettings) -> bool:
    """Whether the weighted sum is divided by the summed weights (overlap-add, even fader)."""
    return chunking.hop_size is not None or chunking.layout == "even"


def chunk_spans(
    n: int, sample_rate: int, chunking: ChunkSettings = DEFAULT_CHUNKING
) -> list[tuple[int, int]]:
    """``(start, stop)`` of the chunks that :func:`bsrnn.chunking.separate_in_chunks` gives
    its ``fn`` for a track of ``n`` samples, in the order it gives them (``[(0, n)]``: one
    pass). Overlap-add windows may start before 0 or stop after ``n``: those samples are zero
    padding."""
    return [(c.start, c.stop) for c in _plan(n, sample_rate, chunking)] or [(0, n)]
