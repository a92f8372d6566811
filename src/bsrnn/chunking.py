"""Whole-track separation in chunks, shared by training validation, evaluation and inference.

Two schemes, both accumulating weighted chunk outputs into the result with a running weight
(memory is bounded by a chunk, not the track; only the chunk moves to the compute device):

- linear fader (``hop_size=None``): chunks of ``segment_len * (1 + overlap)`` seconds start
  every ``segment_len`` seconds, so consecutive chunks overlap by ``overlap * segment_len``
  seconds, where they are cross-faded linearly (the first chunk does not fade in, the last does
  not fade out; the last chunk is shorter when the track ends inside it).
- overlap-add (``hop_size`` set): the track is zero-padded by ``segment_len`` at both ends and
  cut into rectangular windows of ``segment_len`` every ``hop_size`` seconds, each chunk scaled
  by ``hop_size / segment_len`` (chunks lying wholly in the padding are skipped). The result is
  divided by the summed weights, which is 1 wherever ``segment_len`` is a multiple of
  ``hop_size``; otherwise this averages the overlapping chunks instead of leaving a gain ripple.

A track no longer than one chunk is separated in one forward pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import torch
from tqdm import tqdm

log = logging.getLogger(__name__)

SeparateFn = Callable[[torch.Tensor], torch.Tensor]


def _samples(seconds: float, sample_rate: int) -> int:
    return int(round(float(seconds) * sample_rate))


def _check_params(
    segment_len: float | None, overlap: float, hop_size: float | None, batch_chunks: int
) -> None:
    if segment_len is not None and not segment_len > 0:
        raise ValueError(f"segment_len must be > 0 seconds (or None: whole track), got {segment_len}")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if hop_size is not None and not hop_size > 0:
        raise ValueError(f"hop_size must be > 0 seconds (or None: linear fader), got {hop_size}")
    if hop_size is not None and segment_len is not None and hop_size > segment_len:
        raise ValueError(
            f"hop_size ({hop_size} s) must not exceed segment_len ({segment_len} s): "
            "parts of the track would not be covered"
        )
    if int(batch_chunks) < 1:
        raise ValueError(f"batch_chunks must be >= 1, got {batch_chunks}")


def _fader_chunks(n: int, length: int, overlap: int) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield ``(start, stop, weight [stop - start])`` of the linear fader's chunks."""
    stride = length - overlap
    starts = list(range(0, max(n - overlap, 1), stride))
    ramp = torch.arange(1, overlap + 1, dtype=torch.float32) / (overlap + 1)  # in (0, 1)
    for i, start in enumerate(starts):
        stop = min(start + length, n)
        weight = torch.ones(stop - start)
        if i > 0:
            weight[:overlap] = ramp
        if i < len(starts) - 1:
            weight[-overlap:] = 1.0 - ramp if overlap else weight[-overlap:]
        yield start, stop, weight


def _ola_chunks(n: int, length: int, hop: int) -> Iterator[tuple[int, int]]:
    """Yield ``(start, stop)`` in track coordinates (may extend past ``[0, n)``) of the
    overlap-add windows over the track padded with ``length`` zeros at both ends."""
    for padded_start in range(hop, n + length, hop):  # padded start 0 is all padding
        start = padded_start - length
        yield start, start + length


def separate_in_chunks(
    fn: SeparateFn,
    mixture: torch.Tensor,
    sample_rate: int,
    segment_len: float | None = 10.0,
    overlap: float = 0.1,
    hop_size: float | None = None,
    device: torch.device | str | None = None,
    batch_chunks: int = 1,
    progress: bool = False,
) -> torch.Tensor:
    """Separate a whole track chunk by chunk.

    ``fn`` maps a mixture chunk ``[n, C, t]`` (on ``device``) to estimates ``[n, S, C, t]``.
    ``mixture`` is ``[B, C, T]``; returns ``[B, S, C, T]`` float32 on the mixture's device.
    ``segment_len``/``overlap``/``hop_size`` are in seconds at ``sample_rate``
    (``segment_len=None``: the whole track at once). ``batch_chunks`` chunks of equal length go
    through ``fn`` together. Runs without gradients.
    """
    if mixture.dim() != 3:
        raise ValueError(
            f"expected a mixture [batch, channels, samples], got shape {tuple(mixture.shape)}"
        )
    _check_params(segment_len, overlap, hop_size, batch_chunks)
    device = torch.device(device) if device is not None else mixture.device
    batch, channels, n = mixture.shape
    if n == 0:
        raise ValueError("cannot separate an empty mixture (0 samples)")

    if hop_size is None:
        length = n if segment_len is None else _samples(segment_len * (1 + overlap), sample_rate)
        fade = 0 if segment_len is None else _samples(segment_len * overlap, sample_rate)
        fade = min(fade, length - 1)
    else:
        length = n if segment_len is None else _samples(segment_len, sample_rate)
        hop = max(1, _samples(hop_size, sample_rate))

    with torch.no_grad():
        if n <= length:  # one chunk: a plain forward pass
            out = fn(mixture.to(device))
            _check_output(out, mixture.shape[0], channels, n)
            return out.to(mixture.device, torch.float32)

        if hop_size is None:
            chunks = [(a, b, w) for a, b, w in _fader_chunks(n, length, fade)]
        else:
            scale = float(hop_size) / float(segment_len)
            chunks = [(a, b, torch.full((b - a,), scale)) for a, b in _ola_chunks(n, length, hop)]

        out: torch.Tensor | None = None
        total = torch.zeros(n, dtype=torch.float32)  # summed weights per sample
        bar = tqdm(total=len(chunks), desc="chunks", unit="chunk", disable=not progress, leave=False)
        try:
            for group in _groups(chunks, int(batch_chunks)):
                seg_len = group[0][1] - group[0][0]
                pieces = [_crop(mixture, a, b) for a, b, _ in group]
                x = torch.cat(pieces, dim=0).to(device)  # [k*B, C, t]
                y = fn(x)
                _check_output(y, x.shape[0], channels, seg_len)
                y = y.to(mixture.device, torch.float32)
                if out is None:
                    out = torch.zeros(
                        (batch, y.shape[1], channels, n), dtype=torch.float32, device=mixture.device
                    )
                for k, (a, b, w) in enumerate(group):
                    lo, hi = max(a, 0), min(b, n)
                    part = y[k * batch : (k + 1) * batch, ..., lo - a : hi - a]
                    wk = w[lo - a : hi - a].to(mixture.device)
                    out[..., lo:hi].add_(part * wk)
                    total[lo:hi] += wk.cpu()
                bar.update(len(group))
        finally:
            bar.close()
        assert out is not None
        out.div_(total.clamp_min(torch.finfo(torch.float32).tiny).to(mixture.device))
        return out


def _groups(
    chunks: list[tuple[int, int, torch.Tensor]], size: int
) -> Iterator[list[tuple[int, int, torch.Tensor]]]:
    """Consecutive runs of at most ``size`` chunks of equal length."""
    group: list[tuple[int, int, torch.Tensor]] = []
    for chunk in chunks:
        if group and (len(group) == size or chunk[1] - chunk[0] != group[0][1] - group[0][0]):
            yield group
            group = []
        group.append(chunk)
    if group:
        yield group


def _crop(mixture: torch.Tensor, start: int, stop: int) -> torch.Tensor:
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
