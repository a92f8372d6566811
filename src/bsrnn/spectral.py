"""Spectrogram arithmetic on real tensors with a trailing (real, imag) axis of 2: what the
networks' cores compute with (ONNX has no complex type). The STFT itself is
:meth:`bsrnn.models.base.StftSpec.stft` / :meth:`~bsrnn.models.base.StftSpec.istft`."""

from __future__ import annotations

import torch

#: Floating dtypes the spectral/complex ops accept as they are.
FULL_PRECISION = (torch.float32, torch.float64, torch.complex64, torch.complex128)


def spectral_input(x: torch.Tensor) -> torch.Tensor:
    """``x`` unchanged when fp32/fp64 (real or complex), else cast to fp32 (complex32 ->
    complex64): the input of an STFT, iSTFT or complex conversion."""
    if x.dtype in FULL_PRECISION:
        return x
    return x.to(torch.complex64) if x.is_complex() else x.float()


def complex_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Complex product of ``[..., 2]`` (real, imag) tensors (broadcasting), in float32 ->
    ``[..., 2]``."""
    ar, ai = a.float().unbind(-1)
    br, bi = b.float().unbind(-1)
    return torch.stack([ar * br - ai * bi, ar * bi + ai * br], -1)
