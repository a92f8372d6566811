"""uSDR on known signals; cSDR against museval's own bss_eval, frame for frame and NaN for NaN."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from bsrnn.metrics import (
    SilentSourceError,
    aggregate_tracks,
    average_over_targets,
    csdr,
    csdr_frames,
    load_museval_metrics,
    median_over_frames,
    normalize_sdr_type,
    num_frames,
    usdr,
)


def _museval_metrics():
    """museval's metrics.py loaded from its file (the package import needs ffmpeg)."""
    try:
        return load_museval_metrics()
    except ImportError:
        return None


MUSEVAL = _museval_metrics()
needs_museval = pytest.mark.skipif(
    MUSEVAL is None,
    reason="museval's metrics.py not found: pip install -r requirements-test.txt "
    f"(python {sys.executable})",
)


def museval_sdr(ref: np.ndarray, est: np.ndarray, win: int, hop: int) -> np.ndarray:
    """museval bss_eval SDR as the cSDR uses it; arrays [S, C, T] like ours."""
    return MUSEVAL.bss_eval(
        np.swapaxes(ref, 1, 2),
        np.swapaxes(est, 1, 2),
        window=win,
        hop=hop,
        compute_permutation=False,
        framewise_filters=False,
        bsseval_sources_version=False,
    )[0]


def assert_same_sdr(ours: np.ndarray, theirs: np.ndarray, atol: float = 1e-7) -> None:
    assert ours.shape == theirs.shape
    assert ours.dtype == np.float64
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    finite = ~np.isnan(theirs)
    np.testing.assert_allclose(ours[finite], theirs[finite], rtol=0, atol=atol)


# ------------------------------------------------------------------------------------------
# uSDR
# ------------------------------------------------------------------------------------------
def test_usdr_known_values():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((3, 2, 4000))
    gains = np.array([0.1, 0.5, -0.3])
    est = ref * (1 + gains)[:, None, None]
    # error = a * s  ->  SDR = -20 log10 |a| (eps 1e-7 negligible at these energies)
    np.testing.assert_allclose(usdr(ref, est), -20 * np.log10(np.abs(gains)), atol=1e-6)
    # a perfect estimate: 10 log10((E + eps) / eps)
    energy = np.square(ref).sum(axis=(1, 2))
    np.testing.assert_allclose(usdr(ref, ref), 10 * np.log10((energy + 1e-7) / 1e-7))
    # silent reference and estimate: 0 dB
    zeros = np.zeros((1, 2, 10))
    assert usdr(zeros, zeros)[0] == 0.0


def test_usdr_torch_batched_matches_numpy():
    torch.manual_seed(0)
    ref = torch.randn(2, 4, 2, 3000)
    est = ref + 0.3 * torch.randn_like(ref)
    got = usdr(ref, est)
    assert got.shape == (2, 4) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), usdr(ref.numpy(), est.numpy()), atol=1e-4)
    with pytest.raises(ValueError, match="same shape"):
        usdr(ref, est[..., :10])


# ------------------------------------------------------------------------------------------
# cSDR against museval
# ------------------------------------------------------------------------------------------
@needs_museval
@pytest.mark.parametrize(
    ("n", "win", "hop"),
    [
        (5300, 1000, 1000),  # tail of 300 samples dropped
        (5000, 1000, 1000),  # exact multiple
        (4700, 1000, 600),  # overlapping frames
        (700, 1000, 1000),  # shorter than a window: one frame
        (1000, 1000, 1000),  # exactly one window
    ],
)
def test_csdr_equals_museval_random(n, win, hop):
    rng = np.random.default_rng(n + win + hop)
    ref = rng.standard_normal((2, 2, n))
    est = ref + rng.uniform(0.1, 2.0, (2, 1, 1)) * rng.standard_normal(ref.shape)
    ours = csdr_frames(ref, est, win=win, hop=hop)
    assert ours.shape == (2, num_frames(n, win, hop))
    assert_same_sdr(ours, museval_sdr(ref, est, win, hop))


@needs_museval
def test_csdr_equals_museval_edge_cases():
    rng = np.random.default_rng(7)
    win = hop = 800
    ref = rng.standard_normal((3, 2, 6500)).astype(np.float32)
    est = (ref + 0.5 * rng.standard_normal(ref.shape)).astype(np.float32)
    ref[1, :, 800:1600] = 0  # frame 1: a silent reference -> NaN for all sources
    est[2, 0, 2400:3200] = est[2, 1, 2400:3200] = 0  # frame 3: a silent estimate
    ref[2, 1, 4000:4800] = -ref[2, 0, 4000:4800]  # frame 5: right = -left counts as silent
    est[0, :, 4800:5600] *= 1e-3  # a frame with a tiny estimate (SDR ~ 0 dB)
    est[1, :, 5600:6400] = ref[1, :, 5600:6400] + 1e-6  # a near-perfect frame
    ours = csdr_frames(ref, est, win=win, hop=hop)
    theirs = museval_sdr(ref, est, win, hop)
    assert np.isnan(ours[:, [1, 3, 5]]).all()
    assert not np.isnan(ours[:, [0, 2, 4, 6, 7]]).any()
    assert_same_sdr(ours, theirs, atol=1e-6)
    # torch input gives the same
    assert_same_sdr(csdr_frames(torch.from_numpy(ref), torch.from_numpy(est), win, hop), theirs)


@needs_museval
def test_csdr_perfect_frame_is_inf():
    """Zero error: +inf for us; museval's filter projections leave rounding noise (> 250 dB)."""
    rng = np.random.default_rng(3)
    ref = rng.standard_normal((2, 2, 3000))
    est = ref.copy()
    est[:, :, :1000] += 0.1 * rng.standard_normal((2, 2, 1000))
    ours = csdr_frames(ref, est, 1000, 1000)
    theirs = museval_sdr(ref, est, 1000, 1000)
    np.testing.assert_allclose(ours[:, 0], theirs[:, 0], atol=1e-7)
    assert np.isposinf(ours[:, 1:]).all()
    assert (theirs[:, 1:] > 250).all()


@needs_museval
def test_wholly_silent_source_refused_like_museval():
    rng = np.random.default_rng(4)
    ref = rng.standard_normal((2, 2, 3000))
    est = ref + rng.standard_normal(ref.shape)
    for which in ("ref", "est"):
        r, e = ref.copy(), est.copy()
        target = r if which == "ref" else e
        target[1, 1] = -target[1, 0]  # silent in museval's sense, although not all zeros
        with pytest.raises(ValueError):
            museval_sdr(r, e, 1000, 1000)
        with pytest.raises(SilentSourceError, match="'bass'"):
            csdr_frames(r, e, 1000, 1000, names=["vocals", "bass"])


def test_csdr_shape_errors():
    x = np.ones((2, 2, 100))
    with pytest.raises(ValueError, match="same shape"):
        csdr_frames(x, x[:1])
    with pytest.raises(ValueError, match="sources, channels, samples"):
        csdr_frames(x[0], x[0])
    with pytest.raises(ValueError, match="win and hop"):
        csdr_frames(x, x, win=0)


# ------------------------------------------------------------------------------------------
# Aggregation
# ------------------------------------------------------------------------------------------
def test_median_over_frames_and_tracks():
    frames = np.array([[1.0, np.nan, 3.0, 10.0], [np.nan, np.nan, np.nan, np.nan]])
    np.testing.assert_array_equal(median_over_frames(frames), [3.0, np.nan])
    per_track = np.array([[1.0, 2.0], [3.0, np.nan], [8.0, 4.0]])
    np.testing.assert_allclose(aggregate_tracks(per_track, "usdr"), [4.0, 3.0])
    np.testing.assert_allclose(aggregate_tracks(per_track, "museval"), [3.0, 3.0])
    assert average_over_targets([4.0, 3.0]) == 3.5
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((2, 2, 5000))
    est = ref + rng.standard_normal(ref.shape)
    np.testing.assert_array_equal(
        csdr(ref, est, 1000, 1000), median_over_frames(csdr_frames(ref, est, 1000, 1000))
    )


def test_sdr_type_synonyms():
    assert {normalize_sdr_type(s) for s in ("usdr", "global", "uSDR")} == {"usdr"}
    assert {normalize_sdr_type(s) for s in ("csdr", "museval", "cSDR")} == {"csdr"}
    with pytest.raises(ValueError, match="unknown sdr_type"):
        normalize_sdr_type("sisdr")
