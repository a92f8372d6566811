"""Whole-track separation in chunks, shared by training validation, evaluation and inference.

Every chunking default lives in :class:`ChunkSettings` (built from the ``eval`` config by
:meth:`ChunkSettings.from_mapping`); the plans and weights are computed in the torch-free
:mod:`bsrnn.chunk_plan`, which ``bsrnn.onnx_runtime`` shares. Two schemes:

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

from collections.abc import Callable, Iterator

import torch
from tqdm import tqdm

from bsrnn.chunk_plan import (
    DEFAULT_CHUNKING,
    FADER_LAYOUTS,
    ChunkSettings,
    _Chunk,
    _plan,
    chunk_spans,
    chunk_weights,
    normalises,
)

__all__ = [
    "DEFAULT_CHUNKING",
    "FADER_LAYOUTS",
    "ChunkSettings",
    "chunk_spans",
    "crop",
    "separate_in_chunks",
]

SeparateFn = Callable[[torch.Tensor], torch.Tensor]


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

    with torch.no_grad():
        if not chunks:  # one chunk: a plain forward pass
            out = fn(mixture.to(device))
            _check_output(out, batch, channels, n)
            return out.to(mixture.device, torch.float32)

        weights = chunk_weights(chunks, chunking)

        def weight(i: int) -> torch.Tensor:
            return torch.from_numpy(weights[i])

        normalise = normalises(chunking)
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
