"""Mixed precision right by construction: complex conversions, STFT and iSTFT get fp32/fp64.

CUDA autocast leaves ``view_as_complex``, ``stft``, ``istft``, ``complex`` and ``polar`` alone,
so a bf16 tensor reaching them raises there (``view_as_complex`` takes only half/float/double;
CUDA's ``stft`` has no bf16). CPU autocast casts their inputs to fp32 first, which hides the
bug on the CPU. :class:`LowPrecisionSpectralGuard` sees each call *before* CPU autocast's cast
(a ``TorchFunctionMode`` runs at the Python API level), so running every preset's forward pass
and loss backward under ``torch.autocast("cpu", torch.bfloat16)`` inside it shows on the CPU
what CUDA would do.

The presets run forward + loss backward on :data:`SECONDS` of audio; the full-size ones with
fewer repeated blocks (:data:`REDUCED`: one BSRNN block; one RoFormer block of width 32; two
SCNet dual-path layers, the large one at the small one's widths; every
other option as the preset): their repeated blocks are identical in dtype handling,
and at full size mel-roformer alone takes minutes under emulated bf16 on a CPU without native
bf16 (225 s forward + backward of 0.5 s on an AVX2 EPYC, one thread, even with one block).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bsrnn.losses import build_loss
from bsrnn.models import build_model
from bsrnn.models.mixed_precision import rnn_compute_dtype
from bsrnn.settings import build_settings

REPO = Path(__file__).resolve().parents[1]
# the tiny presets run in the quick suite, the full-size ones (seconds each on a CPU) are slow
PRESETS = [
    pytest.param(p.stem, marks=() if "tiny" in p.stem else pytest.mark.slow)
    for p in sorted((REPO / "conf" / "src_mod").glob("*.yaml"))
]

#: Seconds of audio each preset's forward + backward runs on.
SECONDS = 0.5

#: Overrides that keep the full presets' CPU time small (see the module docstring).
REDUCED = {
    **{
        name: ["src_mod.num_repeat=1"]
        for name in ("bsrnn-large", "bsrnn-opt", "bsrnn-opt-notac", "simo-bsrnn", "simo-bsrnn-opt")
    },
    "bs-roformer": ["src_mod.depth=1", "src_mod.dim=32"],
    "mel-roformer": ["src_mod.depth=1", "src_mod.dim=32"],
    # two dual-path layers (one rFFT and its inverse); the large preset's band layout at the
    # small one's widths (emulated bf16 convolutions of 256 channels take a minute here)
    "scnet": ["src_mod.num_dplayer=2"],
    "scnet-large": ["src_mod.num_dplayer=2", "src_mod.dims=[4,32,64,128]"],
}

GUARDED = {
    torch.view_as_complex,
    torch.stft,
    torch.istft,
    torch.complex,
    torch.polar,
    torch.Tensor.stft,
    torch.Tensor.istft,
    torch.functional.stft,
    torch.functional.istft,
}
LOW = (torch.bfloat16, torch.float16)


class LowPrecisionSpectralGuard(torch.overrides.TorchFunctionMode):
    """Fails when a complex conversion, STFT or iSTFT receives a bf16/fp16 tensor; counts the
    calls it checked."""

    def __init__(self) -> None:
        super().__init__()
        self.checked = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in GUARDED:
            self.checked += 1
            for value in (*args, *kwargs.values()):
                if isinstance(value, torch.Tensor) and value.dtype in LOW:
                    raise AssertionError(
                        f"{getattr(func, '__name__', func)} received a {value.dtype} tensor of "
                        f"shape {tuple(value.shape)} (CUDA would fail or lose precision here)"
                    )
        return func(*args, **kwargs)


def test_the_guard_catches_bf16_before_cpu_autocast_casts_it():
    x = torch.randn(4, 2, dtype=torch.bfloat16)
    with LowPrecisionSpectralGuard(), torch.autocast("cpu", torch.bfloat16):
        with pytest.raises(AssertionError, match="view_as_complex received a torch.bfloat16"):
            torch.view_as_complex(x)
        with pytest.raises(AssertionError, match="stft received"):
            x.flatten().stft(4, return_complex=True)
    # without the guard, CPU autocast hides it: complex64 comes back
    with torch.autocast("cpu", torch.bfloat16):
        assert torch.view_as_complex(x).dtype == torch.complex64


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_keeps_spectral_ops_in_fp32_under_bf16_autocast(preset, compose):
    cfg = compose(f"src_mod={preset}", *REDUCED.get(preset, []))
    settings = build_settings(cfg)
    torch.manual_seed(0)
    net = build_model(settings.model)
    optim = settings.optim
    loss_fn = build_loss(optim, net.loss_preference, net.stft_spec)
    channels = net.audio_channels or 2
    samples = int(SECONDS * net.sample_rate)
    mixture = torch.randn(1, channels, samples) * 0.1
    references = torch.randn(1, len(net.targets), channels, samples) * 0.1
    guard = LowPrecisionSpectralGuard()
    with guard, torch.autocast("cpu", torch.bfloat16):
        out = net(mixture)
        loss = loss_fn(out.waveforms, references[..., : out.waveforms.shape[-1]], out.stfts)
    with guard:
        loss.backward()
    assert guard.checked >= 2  # at least the STFT and the iSTFT were seen
    assert torch.isfinite(loss)
    assert out.waveforms.dtype == torch.float32
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_rnn_dtype_is_chosen_explicitly():
    """CUDA autocast casts cuDNN RNNs to fp16 whatever the autocast dtype: under bf16 the RNN
    runs in fp32 instead; fp16 autocast (16-mixed, with a gradient scaler) keeps fp16; CPU
    autocast uses its own dtype (bf16 on oneDNN)."""
    assert rnn_compute_dtype("cuda", True, torch.bfloat16) == torch.float32
    assert rnn_compute_dtype("cuda", True, torch.float16) is None
    assert rnn_compute_dtype("cuda", False, torch.bfloat16) is None
    assert rnn_compute_dtype("cpu", True, torch.bfloat16, cpu_native_bf16=True) is None
    # oneDNN has no bf16 LSTM without native bf16: fp32 (it would raise otherwise)
    assert rnn_compute_dtype("cpu", True, torch.bfloat16, cpu_native_bf16=False) == torch.float32
    assert rnn_compute_dtype("cpu", False, torch.bfloat16, cpu_native_bf16=False) is None


def test_bsrnn_lstm_runs_in_the_chosen_dtype_under_cpu_autocast():
    from bsrnn.models.bsrnn import BSRNN, BSRNNConfig
    from bsrnn.models.mixed_precision import _cpu_has_native_bf16

    net = BSRNN(BSRNNConfig(feature_dim=8, num_repeat=1, targets=("vocals",)))
    seen: list[torch.dtype] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: seen.append(out[0].dtype))
        for m in net.modules()
        if isinstance(m, torch.nn.LSTM | torch.nn.GRU)
    ]
    with torch.autocast("cpu", torch.bfloat16):
        net(torch.randn(1, 2, 8000))
    for h in hooks:
        h.remove()
    expected = torch.bfloat16 if _cpu_has_native_bf16() else torch.float32
    assert seen and set(seen) == {expected}
