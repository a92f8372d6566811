"""Spectrogram arithmetic on real tensors with a trailing (real, imag) axis of 2: what the
networks' cores compute with (ONNX has no complex type). The STFT itself is
:meth:`bsrnn.models.base.StftSpec.stft` / :meth:`~bsrnn.models.base.StftSpec.istft`."""

from __future__ import annotations

import torch


def complex_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Complex product of ``[..., 2]`` (real, imag) tensors (broadcasting), in float32 ->
    ``[..., 2]``."""
    ar, ai = a.float().unbind(-1)
    br, bi = b.float().unbind(-1)
    return torch.stack([ar * br - ai * bi, ar * bi + ai * br], -1)
