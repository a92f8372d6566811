"""Chunked whole-track separation: chunk layouts pinned by hand, fade weights, one-pass short
tracks, exact reconstruction, batching of chunks, settings validation.

Expected chunk boundaries are worked out by hand from each layout's rule and written as literal
sample indices. They are observed through the mixture: it holds ``index + 1`` (0 is the
zero padding of overlap-add), so each chunk tells ``fn`` where it lies in the track.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bsrnn.chunking import ChunkSettings, chunk_spans, separate_in_chunks
from bsrnn.errors import ConfigError

SR = 1000  # samples per "second" in most tests


def ref(**kwargs) -> ChunkSettings:
    return ChunkSettings(layout="reference", **kwargs)


def even(**kwargs) -> ChunkSettings:
    return ChunkSettings(layout="even", **kwargs)


def indexed(n: int, batch: int = 1, channels: int = 1) -> torch.Tensor:
    """A mixture whose every sample holds its index + 1 (exact in float32 below 2**24)."""
    return (torch.arange(n, dtype=torch.float32) + 1).expand(batch, channels, n).contiguous()


def span_of(chunk: torch.Tensor) -> tuple[int, int]:
    """``(start, stop)`` in the track of one chunk ``[C, t]`` of an :func:`indexed` mixture."""
    v = chunk[0]
    first = int(torch.nonzero(v > 0)[0, 0])  # leading zeros: padding before the track
    start = int(v[first].item()) - 1 - first
    return start, start + v.numel()


class Recorder:
    """Identity separation ``[n, C, t] -> [n, 1, C, t]`` recording the calls and the spans of
    the chunks it receives (for a mixture of batch size ``batch``)."""

    def __init__(self, batch: int = 1):
        self.batch, self.spans, self.calls = batch, [], []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        for k in range(0, x.shape[0], self.batch):
            self.spans.append(span_of(x[k]))
        return x.unsqueeze(1)


def pointwise(x: torch.Tensor) -> torch.Tensor:
    """[n, C, t] -> [n, 3, C, t]: identity, square, tanh (no dependence across time)."""
    return torch.stack([x, x.square(), torch.tanh(x)], dim=1)


def centred(x: torch.Tensor) -> torch.Tensor:
    """Depends on the whole chunk (its mean), separately for each item of the batch."""
    return (x - x.mean(dim=-1, keepdim=True)).unsqueeze(1)


# --------------------------------------------------------------------------------------------
# Chunk layouts, by hand
# --------------------------------------------------------------------------------------------
def test_reference_layout_of_a_35_3_s_track_at_44_1_khz():
    """The reference's rule, 10 s segments, 10 % overlap: chunk length int(44100 * 10 * 1.1) =
    485100, overlap 44100 samples. First chunk [0, 485100); the next starts 485100 - 44100 =
    441000 and ends 2 * 485100; each later one starts 485100 after the previous start and ends
    485100 after the previous end (0-11, 10-22, 21-33, 32-35.3 s); the last is cut at the end."""
    n = 1_556_730  # 35.3 s
    fn = Recorder()
    # BSRNN's segment (10 s) with the default layout and overlap (reference, 0.1)
    y = separate_in_chunks(fn, indexed(n), 44100, ChunkSettings(segment_len=10.0))
    assert fn.spans == [
        (0, 485_100),
        (441_000, 970_200),
        (926_100, 1_455_300),
        (1_411_200, 1_556_730),
    ]
    assert [c[-1] for c in fn.calls] == [485_100, 529_200, 529_200, 145_530]
    torch.testing.assert_close(y[:, 0], indexed(n), rtol=1e-6, atol=0.0)


def test_reference_fade_weights_of_the_35_3_s_track():
    """Each chunk's weights, read by giving chunk k ones in source k: linear ramps of 44100
    samples from exactly 1 to exactly 0 (and 0 to 1), no fade-in on the first chunk, no fade-out
    on the last, the overlapping ramps summing to 1."""
    n, ramp = 1_556_730, 44_100
    calls = []

    def tag(x):  # ones in source k for the k-th chunk
        out = torch.zeros(x.shape[0], 4, *x.shape[1:])
        out[:, len(calls)] = 1.0
        calls.append(x.shape[-1])
        return out

    ten = ChunkSettings(segment_len=10.0)
    w = separate_in_chunks(tag, torch.zeros(1, 1, n), 44100, ten)[0, :, 0]  # [4 chunks, n]
    down = 1.0 - torch.arange(ramp, dtype=torch.float64) / (ramp - 1)
    up = torch.arange(ramp, dtype=torch.float64) / (ramp - 1)

    def check(k, pieces):
        expected = torch.cat(
            [
                torch.full((b - a,), v, dtype=torch.float64) if not torch.is_tensor(v) else v
                for a, b, v in pieces
            ]
        )
        torch.testing.assert_close(w[k].double(), expected, atol=1e-6, rtol=0)

    check(0, [(0, 441_000, 1.0), (441_000, 485_100, down), (485_100, n, 0.0)])
    check(
        1,
        [
            (0, 441_000, 0.0),
            (441_000, 485_100, up),
            (485_100, 926_100, 1.0),
            (926_100, 970_200, down),
            (970_200, n, 0.0),
        ],
    )
    check(
        2,
        [
            (0, 926_100, 0.0),
            (926_100, 970_200, up),
            (970_200, 1_411_200, 1.0),
            (1_411_200, 1_455_300, down),
            (1_455_300, n, 0.0),
        ],
    )
    check(3, [(0, 1_411_200, 0.0), (1_411_200, 1_455_300, up), (1_455_300, n, 1.0)])
    # the ramps' ends are exact: 1 and 0 at the borders of every overlap
    assert w[0, 441_000] == 1 and w[0, 485_099] == 0 and w[1, 441_000] == 0
    assert w[1, 485_099] == 1
    torch.testing.assert_close(w.sum(0), torch.ones(n), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "chunking, n, expected",
    [
        # reference, L = int(1000 * 1.0 * 1.2) = 1200, overlap 200: starts 0, 1000, 2200, ...
        (ref(segment_len=1.0, overlap=0.2), 3500, [(0, 1200), (1000, 2400), (2200, 3500)]),
        # a chunk starting at 3400 would be past 3500 - 200: the last chunk covers the end
        (ref(segment_len=1.0, overlap=0.2), 3400, [(0, 1200), (1000, 2400), (2200, 3400)]),
        (ref(segment_len=1.0, overlap=0.2), 3401, [(0, 1200), (1000, 2400), (2200, 3401)]),
        (
            ref(segment_len=1.0, overlap=0.2),
            3700,
            [(0, 1200), (1000, 2400), (2200, 3600), (3400, 3700)],
        ),
        # L = 1100, overlap 100: a track one sample longer than a chunk
        (ref(segment_len=1.0, overlap=0.1), 1101, [(0, 1100), (1000, 1101)]),
        # no overlap: back-to-back chunks of 1000
        (ref(segment_len=1.0, overlap=0.0), 2500, [(0, 1000), (1000, 2000), (2000, 2500)]),
        # even: chunks of 1200 every 1000, the last cut at the end
        (
            even(segment_len=1.0, overlap=0.2),
            3500,
            [(0, 1200), (1000, 2200), (2000, 3200), (3000, 3500)],
        ),
        # overlap-add: windows of 1000 every 500 over the track padded by 1000 on both sides
        (
            ChunkSettings(segment_len=1.0, hop_size=0.5),
            2000,
            [(-500, 500), (0, 1000), (500, 1500), (1000, 2000), (1500, 2500)],
        ),
    ],
)
def test_chunk_spans_by_hand(chunking, n, expected):
    fn = Recorder()
    separate_in_chunks(fn, indexed(n), SR, chunking)
    assert fn.spans == expected
    assert chunk_spans(n, SR, chunking) == expected  # what fn gets, in the order it gets it


@pytest.mark.parametrize(
    "chunking, n",
    [
        (ref(segment_len=1.0), 1100),  # L = 1100 >= T: one pass
        (ref(segment_len=1.0), 950),
        (even(segment_len=1.0), 1100),
        (ChunkSettings(segment_len=1.0, hop_size=0.25), 1000),
        (ChunkSettings(segment_len=None), 5000),  # whole track
        (ChunkSettings(segment_len=None, hop_size=0.5), 5000),
    ],
)
def test_short_track_is_one_forward_pass(chunking, n):
    torch.manual_seed(1)
    x = torch.randn(2, 2, n)
    calls = []

    def fn(m):  # depends on the whole input: any chunking would change the result
        calls.append(tuple(m.shape))
        return centred(m)

    y = separate_in_chunks(fn, x, SR, chunking)
    assert calls == [(2, 2, n)]
    torch.testing.assert_close(y, centred(x))
    assert chunk_spans(n, SR, chunking) == [(0, n)]


# --------------------------------------------------------------------------------------------
# Reconstruction and weights
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "chunking",
    [
        ref(segment_len=1.0, overlap=0.1),
        ref(segment_len=0.5, overlap=0.2),  # overlap 100 samples
        ref(segment_len=1.0, overlap=0.25, batch_chunks=3),
        ref(segment_len=1.0, overlap=0.0),
        even(segment_len=1.0, overlap=0.1),
        even(segment_len=0.7, overlap=0.25, batch_chunks=3),
        even(segment_len=1.0, overlap=0.0),
        ChunkSettings(segment_len=1.0, hop_size=0.5),
        ChunkSettings(segment_len=0.9, hop_size=0.3, batch_chunks=4),
        ChunkSettings(segment_len=1.0, hop_size=0.3),  # segment not a multiple of hop
    ],
)
@pytest.mark.parametrize("n", [10_007, 3_333])
def test_pointwise_fn_is_reproduced_everywhere(chunking, n):
    """Weights summing to 1: an identity (or any pointwise) fn gives back the input."""
    torch.manual_seed(0)
    x = torch.randn(2, 2, n)
    calls = []

    def fn(m):
        calls.append(m.shape[-1])
        return pointwise(m)

    y = separate_in_chunks(fn, x, SR, chunking)
    assert y.shape == (2, 3, 2, n) and y.dtype == torch.float32
    torch.testing.assert_close(y, pointwise(x), atol=2e-6, rtol=1e-6)
    assert len(calls) > 1  # really chunked


def test_even_layout_crossfades_linearly_inside_0_1():
    """Each chunk outputs a constant (its start); the overlaps ramp linearly between them, with
    ramps strictly inside (0, 1)."""
    n = 3500  # chunks of 1200 samples every 1000, overlaps of 200
    x = indexed(n) - 1
    y = separate_in_chunks(
        lambda m: m[..., :1].expand_as(m).unsqueeze(1), x, SR, even(segment_len=1.0, overlap=0.2)
    )[0, 0, 0]
    assert torch.all(y[:1000] == 0) and torch.all(y[1200:2000] == 1000)
    ramp = y[1000:1200]  # from chunk 0 (value 0) to chunk 1 (value 1000)
    steps = torch.diff(ramp)
    assert torch.all(steps > 0)
    torch.testing.assert_close(steps, torch.full_like(steps, steps[0].item()), atol=1e-3, rtol=0)
    torch.testing.assert_close(ramp[0] + ramp[-1], torch.tensor(1000.0), atol=1e-3, rtol=0)
    assert 0 < ramp[0] < 10  # 1000 / 201: the ramp does not reach 0 or 1
    assert torch.all(y[3200:] == 3000)  # the last chunk [3000, 3500) does not fade out


def test_reference_layout_crossfades_linearly_from_1_to_0():
    """Constant chunk outputs (their start) over the reference layout: chunks [0, 1200),
    [1000, 2400), [2200, 3500); ramps of 200 samples linspace(0, 1, 200), ends included."""
    x = indexed(3500) - 1
    y = separate_in_chunks(
        lambda m: m[..., :1].expand_as(m).unsqueeze(1), x, SR, ref(segment_len=1.0, overlap=0.2)
    )[0, 0, 0]
    assert torch.all(y[:1000] == 0) and torch.all(y[1200:2200] == 1000)
    assert torch.all(y[2400:] == 2200)  # the last chunk does not fade out
    up = torch.arange(200, dtype=torch.float32) / 199
    torch.testing.assert_close(y[1000:1200], 1000 * up, atol=1e-3, rtol=0)
    torch.testing.assert_close(y[2200:2400], 1000 + 1200 * up, atol=1e-3, rtol=0)
    assert y[1000] == 0 and y[1199] == 1000 and y[2200] == 1000 and y[2399] == 2200


def test_reference_layout_with_a_fractional_overlap_keeps_the_reference_weights():
    """overlap * segment_len * SR = 150.5 samples: chunk length int(1150.5) = 1150, the second
    chunk starts at int(1150 - 150.5) = 999 (an overlap of 151 samples) and the ramps are
    int(150.5) = 150 samples: chunk 0 fades out over [1000, 1150), chunk 1 fades in over
    [999, 1149). As in the reference, the weights then sum to 1 + 1/149 inside the overlap."""
    n = 2000
    fn = Recorder()
    chunking = ref(segment_len=1.0, overlap=0.1505)
    separate_in_chunks(fn, indexed(n), SR, chunking)
    assert fn.spans == [(0, 1150), (999, 2000)]
    total = separate_in_chunks(
        lambda m: torch.ones_like(m).unsqueeze(1), torch.zeros(1, 1, n), SR, chunking
    )[0, 0, 0]
    assert torch.all(total[:999] == 1) and torch.all(total[1150:] == 1)
    assert total[999] == 1 and total[1149] == 1  # one ramp at 0 and the other at 1
    torch.testing.assert_close(total[1000:1149], torch.full((149,), 1 + 1 / 149), atol=1e-5, rtol=0)


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
        ChunkSettings(segment_len=1.0, hop_size=0.5),
    )[0, 0, 0]
    # sample 0 is covered by windows [-500, 500) (mean 0.5) and [0, 1000) (mean 1)
    torch.testing.assert_close(y[0], torch.tensor(0.75))
    torch.testing.assert_close(y[1000], torch.tensor(1.0))  # both windows inside
    torch.testing.assert_close(y[-1], torch.tensor(0.75))


# --------------------------------------------------------------------------------------------
# Batching of chunks and devices
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "settings",
    [
        dict(layout="reference", segment_len=1.0, overlap=0.1),
        dict(layout="even", segment_len=1.0, overlap=0.1),
        dict(segment_len=1.0, hop_size=0.5),
    ],
)
@pytest.mark.parametrize("batch_chunks", [2, 3, 16])
def test_batching_chunks_changes_nothing(settings, batch_chunks):
    torch.manual_seed(2)
    x = torch.randn(3, 2, 7_777)
    one = separate_in_chunks(centred, x, SR, ChunkSettings(batch_chunks=1, **settings))
    many = separate_in_chunks(centred, x, SR, ChunkSettings(batch_chunks=batch_chunks, **settings))
    torch.testing.assert_close(many, one, atol=1e-6, rtol=0)


def test_chunks_of_equal_length_go_through_together():
    """Reference layout, L = 1100: chunks [0, 1100) then 1200 long from 1000 on, every 1100,
    the last [4300, 5500) also 1200 long; batched by 2 (with the batch of 3 tracks) only where
    lengths agree."""
    fn = Recorder(batch=3)
    x = indexed(5_500, batch=3, channels=2)
    y = separate_in_chunks(fn, x, SR, ref(segment_len=1.0, overlap=0.1, batch_chunks=2), "cpu")
    torch.testing.assert_close(y[:, 0], x, rtol=1e-6, atol=0.0)
    assert fn.spans == [(0, 1100), (1000, 2200), (2100, 3300), (3200, 4400), (4300, 5500)]
    assert fn.calls == [(3, 2, 1100), (6, 2, 1200), (6, 2, 1200)]


def test_batch_chunks_default_depends_on_the_device():
    assert ChunkSettings().chunks_per_pass("cpu") == 1
    assert ChunkSettings().chunks_per_pass(torch.device("cuda")) == 4
    assert ChunkSettings(batch_chunks=3).chunks_per_pass("cpu") == 3
    fn = Recorder()
    separate_in_chunks(fn, indexed(5_000), SR, ref(segment_len=1.0), device="cpu")
    assert all(c[0] == 1 for c in fn.calls) and len(fn.calls) == 5


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------
def test_default_settings():
    assert ChunkSettings() == ChunkSettings(
        segment_len=None, overlap=0.1, hop_size=None, batch_chunks=None, layout="reference"
    )  # segment null: the model's (bsrnn.apply.resolve_chunking)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ChunkSettings().overlap = 0.2  # type: ignore[misc]


def test_from_mapping_picks_the_eval_keys():
    cfg = {
        "device": "auto",
        "segment_len": 3,
        "overlap": 0.25,
        "hop_size": 0.5,
        "batch_chunks": 2,
        "fader_layout": "even",
        "sdr_type": "usdr",
    }
    s = ChunkSettings.from_mapping(cfg)
    assert s == ChunkSettings(3.0, 0.25, 0.5, 2, "even")
    assert isinstance(s.segment_len, float)
    assert ChunkSettings.from_mapping({"device": "cpu"}) == ChunkSettings()
    assert ChunkSettings.from_mapping(None) == ChunkSettings()
    assert ChunkSettings.from_mapping(s.to_mapping()) == s
    assert set(ChunkSettings.config_keys()) == {
        "segment_len",
        "overlap",
        "hop_size",
        "batch_chunks",
        "fader_layout",
    }
    omegaconf = pytest.importorskip("omegaconf")
    dc = omegaconf.OmegaConf.create({"segment_len": None, "fader_layout": "reference"})
    assert ChunkSettings.from_mapping(dc) == ChunkSettings(segment_len=None)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(segment_len=0), "eval.segment_len"),
        (dict(segment_len=-1), "eval.segment_len"),
        (dict(segment_len=float("inf")), "eval.segment_len"),
        (dict(segment_len="10"), "eval.segment_len"),
        (dict(overlap=1.0), "eval.overlap"),
        (dict(overlap=-0.1), "eval.overlap"),
        (dict(overlap=None), "eval.overlap"),
        (dict(hop_size=0.0), "eval.hop_size"),
        (dict(segment_len=1.0, hop_size=2.0), "eval.hop_size"),
        (dict(batch_chunks=0), "eval.batch_chunks"),
        (dict(batch_chunks=1.5), "eval.batch_chunks"),
        (dict(batch_chunks=True), "eval.batch_chunks"),
        (dict(layout="linear"), "eval.fader_layout"),
    ],
)
def test_bad_settings_name_their_config_key(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        ChunkSettings(**kwargs)
    mapping = {("fader_layout" if k == "layout" else k): v for k, v in kwargs.items()}
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        ChunkSettings.from_mapping(mapping)


def test_unknown_layout_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="eval.fader_layout") as err:
        ChunkSettings.from_mapping({"fader_layout": "fancy"})
    assert "one of reference, even" in str(err.value)


def test_bad_arguments():
    x = torch.zeros(1, 2, 100)
    with pytest.raises(ValueError, match="mixture"):
        separate_in_chunks(pointwise, x[0], SR)
    with pytest.raises(ValueError, match="empty"):
        separate_in_chunks(pointwise, x[..., :0], SR)
    with pytest.raises(ValueError, match="must map"):
        separate_in_chunks(lambda m: m, x, SR)
    with pytest.raises(TypeError, match="ChunkSettings"):
        separate_in_chunks(pointwise, x, SR, {"segment_len": 1.0})  # type: ignore[arg-type]


def test_segment_shorter_than_a_sample_step_is_refused():
    """Reference layout, 1 ms segments at 1 kHz with 50 % overlap: chunks of int(1.5) = 1
    sample that would advance by int(1 - 0.5) = 0 samples (the reference loops forever)."""
    x = indexed(10)
    with pytest.raises(ConfigError, match="eval.segment_len"):
        separate_in_chunks(Recorder(), x, SR, ref(segment_len=0.001, overlap=0.5))
    with pytest.raises(ConfigError, match="eval.segment_len"):
        separate_in_chunks(Recorder(), x, SR, even(segment_len=0.0001))
