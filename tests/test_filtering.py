"""bsrnn.filtering: the multichannel Wiener filter agrees with norbert (the numpy original of
open-unmix's ``filtering``), on a stored case and live; frame batches and windows; waveforms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bsrnn.filtering import expectation_maximization, wiener, wiener_waveforms

CASE = Path(__file__).parent / "data" / "wiener_norbert_case.npz"


def random_case(seed: int, frames=20, bins=7, channels=2, sources=3):
    rng = np.random.default_rng(seed)
    shape = (frames, bins, channels)
    x = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) * 20
    v = np.abs(rng.standard_normal((*shape, sources))) * 8
    return x, v


@pytest.mark.parametrize("iterations", [1, 2])
@pytest.mark.parametrize("softmask", [False, True])
def test_agrees_with_the_stored_norbert_case(iterations, softmask):
    """tests/data/wiener_norbert_case.npz: norbert 0.2.1's ``wiener(v, x, iterations,
    use_softmask, eps=1e-10)`` on a seeded case (12 frames, 5 bins, stereo, 3 sources)."""
    case = np.load(CASE)
    want = case[f"y_it{iterations}_sm{int(softmask)}"]
    got = wiener(
        torch.from_numpy(case["v"]), torch.from_numpy(case["x"]), iterations, softmask=softmask
    ).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * np.abs(want).max())


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("iterations", [0, 1, 3])
def test_agrees_with_norbert_live(channels, iterations):
    norbert = pytest.importorskip("norbert")  # requirements-test.txt
    x, v = random_case(channels + 10 * iterations, channels=channels)
    for softmask in (False, True):
        want = norbert.wiener(v.copy(), x.copy(), iterations, use_softmask=softmask, eps=1e-10)
        got = wiener(torch.from_numpy(v), torch.from_numpy(x), iterations, softmask=softmask)
        # mono: norbert inverts 1 / (M + eps), open-unmix 1 / M
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-6 * np.abs(want).max())


def test_residual_source_follows_open_unmix():
    """open-unmix's residual: the mixture minus the initial estimates, one more source for EM
    (norbert has no such option: its EM is run on the same initial estimates here)."""
    norbert = pytest.importorskip("norbert")
    x, v = random_case(5)
    y0 = v * np.exp(1j * np.angle(x))[..., None]
    y0 = np.concatenate([y0, x[..., None] - y0.sum(-1, keepdims=True)], axis=-1)
    scale = max(1.0, np.abs(x).max() / 10.0)
    want = norbert.expectation_maximization(y0 / scale, x / scale, 2, eps=1e-10)[0] * scale
    got = wiener(torch.from_numpy(v), torch.from_numpy(x), 2, residual=True).numpy()
    assert got.shape == (*x.shape, 4)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * np.abs(want).max())
    init = wiener(torch.from_numpy(v), torch.from_numpy(x), 0, residual=True).numpy()
    np.testing.assert_allclose(init.sum(-1), x, atol=1e-9)  # the sources add up to the mix


def test_frame_batches_do_not_change_the_result():
    x, v = random_case(3, frames=50)
    xt, vt = torch.from_numpy(x), torch.from_numpy(v)
    y0 = wiener(vt, xt, 0)
    whole = expectation_maximization(y0, xt, 2, batch_size=0)[0]
    for batch in (1, 7, 200):
        torch.testing.assert_close(expectation_maximization(y0, xt, 2, batch_size=batch)[0], whole)


def test_waveforms_softmask_without_iterations_splits_the_mixture():
    """Ratio masks sum to one: the filtered stems add up to the mixture."""
    torch.manual_seed(0)
    est = 0.1 * torch.randn(1, 3, 2, 8000)
    mix = est.sum(1) + 0.01 * torch.randn(1, 2, 8000)
    out = wiener_waveforms(est, mix, n_fft=512, hop_length=128, iterations=0, softmask=True)
    assert out.shape == est.shape and out.dtype == torch.float32
    torch.testing.assert_close(out.sum(1), mix, atol=1e-4, rtol=0)


def test_waveforms_exact_estimates_stay_close_and_windows_work():
    """Estimates that already add up to the mixture, each in its own stereo direction, come
    back nearly unchanged; frame windows give a close result and the same shape."""
    torch.manual_seed(1)
    n = 16000
    s1 = torch.randn(n) * torch.tensor([[1.0], [0.2]])
    s2 = torch.randn(n) * torch.tensor([[0.2], [1.0]])
    est = torch.stack([s1, s2])[None] * 0.1
    mix = est.sum(1)
    out = wiener_waveforms(est, mix, n_fft=512, hop_length=128, iterations=1)
    err = (out - est).pow(2).sum() / est.pow(2).sum()
    assert err < 0.05
    windowed = wiener_waveforms(est, mix, n_fft=512, hop_length=128, iterations=1,
                                window_frames=40)  # fmt: skip
    assert windowed.shape == est.shape
    assert (windowed - est).pow(2).sum() / est.pow(2).sum() < 0.05


def test_bad_iterations_is_an_error():
    x, v = random_case(0)
    with pytest.raises(ValueError, match="iterations"):
        wiener(torch.from_numpy(v), torch.from_numpy(x), -1)
