"""Chunked whole-track separation: seamless borders, one-shot equality, linear cross-fades."""

from __future__ import annotations

import pytest
import torch

from bsrnn.chunking import separate_in_chunks

SR = 1000  # samples per "second" in these tests


def pointwise(x: torch.Tensor) -> torch.Tensor:
    """[n, C, t] -> [n, 3, C, t]: identity, square, tanh (no dependence across time)."""
    return torch.stack([x, x.square(), torch.tanh(x)], dim=1)


class CountingFn:
    def __init__(self, fn):
        self.fn, self.calls, self.lengths, self.batches = fn, 0, [], []

    def __call__(self, x):
        self.calls += 1
        self.lengths.append(x.shape[-1])
        self.batches.append(x.shape[0])
        return self.fn(x)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(segment_len=1.0, overlap=0.1),
        dict(segment_len=0.7, overlap=0.25, batch_chunks=3),
        dict(segment_len=1.0, overlap=0.0),
        dict(segment_len=1.0, hop_size=0.5),
        dict(segment_len=0.9, hop_size=0.3, batch_chunks=4),
        dict(segment_len=1.0, hop_size=0.3),  # segment not a multiple of hop
    ],
)
def test_pointwise_fn_is_reproduced_everywhere(kwargs):
    torch.manual_seed(0)
    x = torch.randn(2, 2, 10_007)
    fn = CountingFn(pointwise)
    y = separate_in_chunks(fn, x, SR, **kwargs)
    assert y.shape == (2, 3, 2, 10_007) and y.dtype == torch.float32
    torch.testing.assert_close(y, pointwise(x), atol=2e-6, rtol=1e-6)
    assert fn.calls > 1  # really chunked
    assert max(fn.lengths) <= round(SR * kwargs["segment_len"] * (1 + kwargs.get("overlap", 0.1)))


@pytest.mark.parametrize("kwargs", [dict(segment_len=1.0), dict(segment_len=1.0, hop_size=0.25)])
def test_short_track_is_one_forward_pass(kwargs):
    torch.manual_seed(1)
    x = torch.randn(1, 2, 950)

    def fn(m):  # depends on the whole input: any chunking would change the result
        return (m - m.mean(dim=-1, keepdim=True)).unsqueeze(1)

    counting = CountingFn(fn)
    y = separate_in_chunks(counting, x, SR, **kwargs)
    assert counting.calls == 1 and counting.lengths == [950]
    torch.testing.assert_close(y, fn(x))


def test_fader_crossfades_linearly():
    """Each chunk outputs a constant (its start); the overlaps ramp linearly between them."""
    n, seg, ov = 3500, 1.0, 0.2  # chunks of 1200 samples every 1000, overlaps of 200
    x = torch.arange(n, dtype=torch.float32).view(1, 1, n)
    y = separate_in_chunks(
        lambda m: m[..., :1].expand_as(m).unsqueeze(1), x, SR, segment_len=seg, overlap=ov
    )[0, 0, 0]
    assert torch.all(y[:1000] == 0) and torch.all(y[1200:2000] == 1000)
    ramp = y[1000:1200]  # from chunk 0 (value 0) to chunk 1 (value 1000)
    steps = torch.diff(ramp)
    assert torch.all(steps > 0)
    torch.testing.assert_close(steps, torch.full_like(steps, steps[0].item()), atol=1e-3, rtol=0)
    torch.testing.assert_close(ramp[0] + ramp[-1], torch.tensor(1000.0), atol=1e-3, rtol=0)
    assert torch.all(y[3200:] == 3000)  # the last chunk [3000, 3500) does not fade out


def test_ola_averages_windows_and_pads_with_zeros():
    """Overlap-add: every sample is the mean of the segment/hop windows covering it; windows
    reaching past the track see zeros."""
    n = 2000
    x = torch.ones(1, 1, n)
    # fn returns the window's mean: windows overlapping the zero padding have smaller means
    y = separate_in_chunks(
        lambda m: m.mean(dim=-1, keepdim=True).expand_as(m).unsqueeze(1),
        x,
        SR,
        segment_len=1.0,
        hop_size=0.5,
    )[0, 0, 0]
    # sample 0 is covered by windows [-500, 500) (mean 0.5) and [0, 1000) (mean 1)
    torch.testing.assert_close(y[0], torch.tensor(0.75))
    torch.testing.assert_close(y[1000], torch.tensor(1.0))  # both windows inside
    torch.testing.assert_close(y[-1], torch.tensor(0.75))


def test_device_and_batching_of_chunks():
    torch.manual_seed(2)
    x = torch.randn(3, 2, 5_500)
    fn = CountingFn(pointwise)
    y = separate_in_chunks(fn, x, SR, segment_len=1.0, overlap=0.1, batch_chunks=2, device="cpu")
    torch.testing.assert_close(y, pointwise(x), atol=2e-6, rtol=1e-6)
    # 5 full chunks (1100 samples) batched by 2 with the batch of 3 tracks, and a last chunk
    assert fn.batches == [6, 6, 3, 3] and fn.lengths == [1100, 1100, 1100, 500]


def test_bad_arguments():
    x = torch.zeros(1, 2, 100)
    with pytest.raises(ValueError, match="mixture"):
        separate_in_chunks(pointwise, x[0], SR)
    with pytest.raises(ValueError, match="overlap"):
        separate_in_chunks(pointwise, x, SR, overlap=1.0)
    with pytest.raises(ValueError, match="hop_size"):
        separate_in_chunks(pointwise, x, SR, segment_len=1.0, hop_size=2.0)
    with pytest.raises(ValueError, match="must map"):
        separate_in_chunks(lambda m: m, x, SR)
