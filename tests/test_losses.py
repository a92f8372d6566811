"""SeparationLoss on known values (L1/MSE in the t, tf and t+tf domains)."""

from __future__ import annotations

import math

import pytest
import torch

from bsrnn.losses import LOSS_DOMAINS, LOSS_TYPES, SeparationLoss

N_FFT, HOP = 2048, 512


def _const(value: float, shape=(2, 1, 2, 44100)) -> torch.Tensor:
    return torch.full(shape, value)


def test_time_domain_known_values():
    est, ref = _const(0.0), _const(0.5)
    assert SeparationLoss("L1", "t")(est, ref).item() == pytest.approx(0.5)
    assert SeparationLoss("MSE", "t")(est, ref).item() == pytest.approx(0.25)
    ref = torch.tensor([1.0, -3.0, 0.0, 2.0]).view(1, 1, 1, 4)
    est = torch.zeros_like(ref)
    assert SeparationLoss("L1", "t")(est, ref).item() == pytest.approx(1.5)
    assert SeparationLoss("MSE", "t")(est, ref).item() == pytest.approx(3.5)


def test_tf_domain_constant_signal_closed_form():
    # A constant c gives, in every frame (reflect padding keeps it constant), the bins
    # X[0] = c * N / 2 and X[1] = -c * N / 4 of the periodic Hann window, all others 0 and all
    # real. Against a zero estimate: L1 = (|X0| + |X1|) / 1025, MSE = (X0^2 + X1^2) / 1025.
    c, bins = 0.5, N_FFT // 2 + 1
    est, ref = _const(0.0), _const(c)
    l1 = SeparationLoss("L1", "tf", n_fft=N_FFT, n_hop=HOP)(est, ref).item()
    mse = SeparationLoss("MSE", "tf", n_fft=N_FFT, n_hop=HOP)(est, ref).item()
    assert l1 == pytest.approx((c * N_FFT / 2 + c * N_FFT / 4) / bins, rel=1e-5)
    assert mse == pytest.approx(((c * N_FFT / 2) ** 2 + (c * N_FFT / 4) ** 2) / bins, rel=1e-5)


def test_tf_matches_torch_stft_real_and_imag_terms():
    torch.manual_seed(0)
    ref = torch.randn(2, 1, 2, 8000)
    est = torch.randn(2, 1, 2, 8000)
    window = torch.hann_window(N_FFT, periodic=True)

    def spec(x):
        s = torch.stft(
            x.reshape(-1, x.shape[-1]),
            N_FFT,
            HOP,
            window=window,
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        return s.reshape(*x.shape[:-1], *s.shape[-2:])

    r, e = spec(ref), spec(est)
    expected_l1 = (e.real - r.real).abs().mean() + (e.imag - r.imag).abs().mean()
    expected_mse = (e.real - r.real).square().mean() + (e.imag - r.imag).square().mean()
    loss_l1 = SeparationLoss("L1", "tf")
    assert loss_l1(est, ref).item() == pytest.approx(expected_l1.item(), rel=1e-5)
    # a given estimated STFT is used as is (the network's output), not recomputed
    assert loss_l1(est, ref, est_stfts=e).item() == pytest.approx(expected_l1.item(), rel=1e-5)
    assert loss_l1(est, ref, est_stfts=torch.zeros_like(e)).item() == pytest.approx(
        (r.real.abs().mean() + r.imag.abs().mean()).item(), rel=1e-5
    )
    assert SeparationLoss("MSE", "tf")(est, ref).item() == pytest.approx(
        expected_mse.item(), rel=1e-5
    )
    # t+tf is the sum of both terms
    both = SeparationLoss("L1", "t+tf")(est, ref).item()
    t_only = (est - ref).abs().mean().item()
    assert both == pytest.approx(t_only + expected_l1.item(), rel=1e-5)
    terms = SeparationLoss("L1", "t+tf").components(est, ref)
    assert set(terms) == {"t", "tf"}
    assert terms["t"].item() == pytest.approx(t_only, rel=1e-6)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("domain", LOSS_DOMAINS)
def test_zero_for_perfect_estimate_and_differentiable(loss_type, domain):
    torch.manual_seed(1)
    ref = torch.randn(1, 1, 2, 4096)
    loss = SeparationLoss(loss_type, domain)
    assert loss(ref.clone(), ref).item() == pytest.approx(0.0, abs=1e-6)
    est = torch.zeros_like(ref, requires_grad=True)
    value = loss(est, ref)
    value.backward()
    assert value.item() > 0 and math.isfinite(value.item())
    assert est.grad is not None and est.grad.abs().sum() > 0


def test_invalid_options_list_the_choices():
    with pytest.raises(ValueError, match=r"optim\.loss_type='L3'.*L1, MSE"):
        SeparationLoss("L3", "t")
    with pytest.raises(ValueError, match=r"optim\.loss_domain='freq'.*t, tf, t\+tf"):
        SeparationLoss("L1", "freq")


def test_shape_mismatch_is_an_error():
    loss = SeparationLoss("L1", "t")
    with pytest.raises(ValueError, match="same shape"):
        loss(torch.zeros(1, 1, 2, 100), torch.zeros(1, 1, 2, 101))
    with pytest.raises(ValueError, match="n_fft/n_hop"):
        SeparationLoss("L1", "tf")(
            torch.zeros(1, 1, 2, 4096),
            torch.zeros(1, 1, 2, 4096),
            est_stfts=torch.zeros(1, 1, 2, 513, 9, dtype=torch.complex64),
        )
