"""SeparationLoss on known values (L1/MSE in the t, tf and t+tf domains)."""

from __future__ import annotations

import math

import pytest
import torch

from bsrnn.errors import ConfigError
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


# --------------------------------------------------------------------------------------------
# MSST's multi-resolution STFT loss (t+mrstft)
# --------------------------------------------------------------------------------------------
def test_multi_resolution_stft_loss_by_hand():
    from bsrnn.losses import MultiResolutionSTFTLoss

    torch.manual_seed(0)
    est, ref = torch.randn(2, 3, 2, 5000), torch.randn(2, 3, 2, 5000)
    sizes, hop, min_n_fft = (1024, 256), 100, 512
    expected = 0.0
    for w in sizes:
        kw = dict(n_fft=max(w, min_n_fft), hop_length=hop, win_length=w,
                  window=torch.hann_window(w), return_complex=True)  # fmt: skip
        diff = torch.stft(est.reshape(-1, 5000), **kw) - torch.stft(ref.reshape(-1, 5000), **kw)
        expected += diff.abs().mean().item()
    loss = MultiResolutionSTFTLoss(0.5, sizes, hop, False, min_n_fft=min_n_fft)
    assert loss(est, ref).item() == pytest.approx(0.5 * expected, rel=1e-6)


def test_t_plus_mrstft_domain_sums_its_components():
    from bsrnn.losses import MultiResolutionSpec

    torch.manual_seed(0)
    est, ref = torch.randn(1, 2, 2, 6000), torch.randn(1, 2, 2, 6000)
    spec = MultiResolutionSpec(weight=2.0, window_sizes=(512, 256), hop_size=147)
    loss = SeparationLoss("L1", "t+mrstft", n_fft=1024, n_hop=256, multi_resolution=spec)
    parts = loss.components(est, ref)
    assert set(parts) == {"t", "mrstft"}
    assert parts["t"].item() == pytest.approx((est - ref).abs().mean().item(), rel=1e-6)
    assert loss(est, ref).item() == pytest.approx(sum(p.item() for p in parts.values()), rel=1e-6)
    # a reference longer than the estimate is cut to it (MSST's Mel output may be shorter)
    longer = torch.cat([ref, torch.randn(1, 2, 2, 50)], -1)
    assert loss(est, longer).item() == pytest.approx(loss(est, ref).item(), rel=1e-6)
    with pytest.raises(ValueError, match="loss_type"):
        SeparationLoss("MSE", "t+mrstft")


def test_models_declare_their_loss_and_build_loss_follows_it():
    from types import SimpleNamespace

    from bsrnn.losses import MultiResolutionSpec, build_loss
    from bsrnn.models import LossPreference, StftSpec, build_model

    bsrnn = build_model({"target": "vocals", "feature_dim": 8, "num_repeat": 1})
    assert bsrnn.loss_preference == LossPreference("L1", "t+tf")
    roformer = build_model(
        {
            "arch": "bs_roformer",
            "target": "vocals",
            "dim": 8,
            "depth": 1,
            "heads": 1,
            "dim_head": 8,
            "multi_stft_resolution_loss_weight": 0.5,
            "multi_stft_resolutions_window_sizes": [1024, 512],
            "multi_stft_hop_size": 100,
            "multi_stft_normalized": True,
        }  # fmt: skip
    )
    want = LossPreference("L1", "t+mrstft", MultiResolutionSpec(0.5, (1024, 512), 100, True))
    assert roformer.loss_preference == want
    # null settings: the model's loss; set ones override its type / domain
    unset = SimpleNamespace(loss_type=None, loss_domain=None)
    loss = build_loss(unset, roformer.loss_preference, roformer.stft_spec)
    assert (loss.loss_type, loss.domain) == ("L1", "t+mrstft")
    assert loss.mrstft.spec == want.multi_resolution
    mse_t = build_loss(SimpleNamespace(loss_type="MSE", loss_domain="t"), want, StftSpec(512, 128))
    assert (mse_t.loss_type, mse_t.domain) == ("MSE", "t")
    # the model's whole STFT reaches the tf term: win_length and normalized too
    spec = StftSpec(n_fft=1024, hop_length=256, win_length=800, normalized=True)
    tf = build_loss(unset, LossPreference("L1", "tf"), spec)
    assert tf.stft_spec == spec
    x = torch.randn(1, 1, 1, 4000)
    want_spec = torch.stft(x.reshape(1, -1), 1024, 256, 800, torch.hann_window(800),
                           normalized=True, return_complex=True)  # fmt: skip
    torch.testing.assert_close(tf.spectrogram(x).reshape(want_spec.shape), want_spec)
    with pytest.raises(ConfigError, match="optim.loss_type='L3'"):
        build_loss(SimpleNamespace(loss_type="L3", loss_domain=None), want, spec)


@pytest.mark.parametrize("case", ["bs-stereo-1stem", "mel-stereo-4stems"])
def test_msst_loss_fixtures(case):
    from pathlib import Path

    from bsrnn.losses import MultiResolutionSpec

    path = (
        Path(__file__).resolve().parents[2]
        / "shared"
        / "fixtures"
        / "msst-roformer"
        / f"{case}.io.pt"
    )
    if not path.is_file():
        pytest.skip("shared MSST fixtures not available")
    io = torch.load(path, weights_only=True)
    loss = SeparationLoss("L1", "t+mrstft", n_fft=2048, n_hop=512,
                          multi_resolution=MultiResolutionSpec())  # fmt: skip
    parts = loss.components(io["output"], io["target"])
    assert parts["t"].item() == pytest.approx(io["l1"].item(), rel=1e-5)
    assert parts["mrstft"].item() == pytest.approx(io["mrstft"].item(), rel=1e-5)
    assert loss(io["output"], io["target"]).item() == pytest.approx(io["loss"].item(), rel=1e-5)


def test_t_plus_mrstft_zero_for_perfect_estimate_and_differentiable():
    from bsrnn.losses import L1_LOSS_DOMAINS

    assert "t+mrstft" in L1_LOSS_DOMAINS
    test_zero_for_perfect_estimate_and_differentiable("L1", "t+mrstft")


# ------------------------------------------------------------------------------------------
# MSST's quantile-masked MSE
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["scnet-stereo-4stems", "scnet-masked-stereo-4stems"])
def test_masked_mse_matches_msst_fixtures(case):
    """MSST's masked_loss (q 0.95, coarse, as the fixtures' yaml sets) and its plain MSE."""
    from conftest import SHARED

    from bsrnn.losses import MaskedMSELoss

    path = SHARED / "fixtures" / "msst-scnet" / f"{case}.io.pt"
    if not path.is_file():
        pytest.fail(f"MSST SCNet fixtures not found at {path}")
    data = torch.load(path, weights_only=True)
    yaml_text = path.with_name(f"{case}.yaml").read_text()
    assert "q: 0.95" in yaml_text and "coarse_loss_clip: true" in yaml_text
    loss = MaskedMSELoss(q=0.95, coarse=True)(data["output"], data["target"])
    assert float(loss) == pytest.approx(float(data["masked_loss"]), rel=1e-5)
    mse = torch.nn.functional.mse_loss(data["output"], data["target"])
    assert float(mse) == pytest.approx(float(data["mse"]), rel=1e-5)
    assert float(loss) < float(mse)  # it dropped the worst item of each stem


@pytest.mark.parametrize("coarse", [True, False])
def test_masked_mse_equals_the_definition(coarse):
    from bsrnn.losses import MaskedMSELoss

    gen = torch.Generator().manual_seed(0)
    est = torch.randn(6, 3, 2, 50, generator=gen, requires_grad=True)
    ref = torch.randn(6, 3, 2, 50, generator=gen)
    loss = MaskedMSELoss(q=0.7, coarse=coarse)(est, ref)
    err = (est - ref).detach().square().transpose(0, 1)
    if coarse:
        err = err.mean(dim=(-1, -2))
    err = err.reshape(3, -1)
    threshold = torch.quantile(err, 0.7, dim=1, keepdim=True)
    expected = (err * (err < threshold)).mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    loss.backward()
    assert est.grad is not None and est.grad.abs().sum() > 0


def test_masked_mse_batch_of_one_is_the_plain_mse():
    """MSST's masked loss is 0 for a batch of one (MSST issue #30); ours gives the MSE."""
    from bsrnn.losses import MaskedMSELoss

    est, ref = torch.randn(1, 2, 2, 100), torch.randn(1, 2, 2, 100)
    loss = MaskedMSELoss()(est, ref)
    assert float(loss) > 0
    assert float(loss) == pytest.approx(float(torch.nn.functional.mse_loss(est, ref)))
