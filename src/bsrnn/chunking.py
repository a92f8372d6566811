"""Whole-track separation in chunks, shared by training validation, evaluation and inference.

Two schemes, both accumulating weighted chunk outputs into the result with a running weight
that is normalised as soon as no later chunk reaches a sample (memory beyond the output is
bounded by a chunk, not the track; only the chunk moves to the compute device):

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

from collections.abc import Callable, Iterator

import torch
from tqdm import tqdm

SeparateFn = Callable[[torch.Tensor], torch.Tensor]


def _samples(seconds: float, sample_rate: int) -> int:
    return int(round(float(seconds) * sample_rate))


def _check_params(
    segment_len: float | None, overlap: float, hop_size: float | None, batch_chunks: int
) -> None:
    if segment_len is not None and not segment_len > 0:
        raise ValueError(
            f"segment_len must be > 0 seconds (or None: whole track), got {segment_len}"
        )
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


def _fader_spans(n: int, length: int, overlap: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the linear fader's chunks: every ``length - overlap`` samples, the
    last one cut at ``n`` (it is longer than ``overlap``)."""
    stride = length - overlap
    return [(a, min(a + length, n)) for a in range(0, max(n - overlap, 1), stride)]


def _fader_weight(i: int, count: int, size: int, overlap: int) -> torch.Tensor:
    """Weights of chunk ``i`` of ``count`` (``size`` samples): linear ramps over the overlaps
    with its neighbours, complementary to theirs (they sum to 1)."""
    weight = torch.ones(size)
    if overlap > 0:
        ramp = torch.arange(1, overlap + 1, dtype=torch.float32) / (overlap + 1)  # in (0, 1)
        if i > 0:
            weight[:overlap] = ramp
        if i < count - 1:
            weight[size - overlap :] = 1.0 - ramp
    return weight


def _ola_spans(n: int, length: int, hop: int) -> list[tuple[int, int]]:
    """``(start, stop)`` in track coordinates (may extend past ``[0, n)``) of the overlap-add
    windows over the track padded with ``length`` zeros at both ends."""
    # padded start 0 lies wholly in the padding: skipped
    return [(p - length, p) for p in range(hop, n + length, hop)]


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
            spans = _fader_spans(n, length, fade)

            def weight(i: int, size: int) -> torch.Tensor:
                return _fader_weight(i, len(spans), size, fade)

        else:
            spans = _ola_spans(n, length, hop)
            scale = float(hop_size) / float(segment_len)

            def weight(i: int, size: int) -> torch.Tensor:
                return torch.full((size,), scale)

        groups = list(_groups(spans, int(batch_chunks)))
        out: torch.Tensor | None = None
        # Running weight: out[..., :done] is final; wsum holds the summed weights from `done` on.
        done, wsum = 0, torch.zeros(0)
        bar = tqdm(total=len(spans), desc="chunks", unit="chunk", disable=not progress, leave=False)
        try:
            for g, group in enumerate(groups):
                a0, b0 = spans[group[0]]
                x = torch.cat([_crop(mixture, *spans[i]) for i in group], dim=0).to(device)
                y = fn(x)  # [k*B, S, C, t]
                _check_output(y, x.shape[0], channels, b0 - a0)
                y = y.to(mixture.device, torch.float32)
                if out is None:
                    out = torch.zeros(
                        (batch, y.shape[1], channels, n), dtype=torch.float32, device=mixture.device
                    )
                for k, i in enumerate(group):
                    a, b = spans[i]
                    lo, hi = max(a, 0), min(b, n)
                    w = weight(i, b - a)[lo - a : hi - a]
                    if hi - done > wsum.numel():
                        wsum = torch.cat([wsum, torch.zeros(hi - done - wsum.numel())])
                    wsum[lo - done : hi - done] += w
                    part = y[k * batch : (k + 1) * batch, ..., lo - a : hi - a]
                    out[..., lo:hi].add_(part * w.to(mixture.device))
                # samples before the next chunk's start receive nothing more: normalise them
                final = n if g == len(groups) - 1 else max(spans[groups[g + 1][0]][0], 0)
                if final > done:
                    norm = wsum[: final - done].clamp_min(torch.finfo(torch.float32).tiny)
                    out[..., done:final].div_(norm.to(mixture.device))
                    wsum, done = wsum[final - done :], final
                bar.update(len(group))
        finally:
            bar.close()
        assert out is not None
        return out


def _groups(spans: list[tuple[int, int]], size: int) -> Iterator[list[int]]:
    """Indices of consecutive runs of at most ``size`` chunks of equal length."""
    group: list[int] = []
    for i, (a, b) in enumerate(spans):
        if group and (len(group) == size or b - a != spans[group[0]][1] - spans[group[0]][0]):
            yield group
            group = []
        group.append(i)
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
