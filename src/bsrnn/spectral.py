"""STFT / iSTFT front end (torch.stft / torch.istft, periodic Hann window, centred, reflect)."""

from __future__ import annotations

import torch
from torch import nn

#: Floating dtypes the spectral/complex ops accept as they are.
FULL_PRECISION = (torch.float32, torch.float64, torch.complex64, torch.complex128)


def spectral_input(x: torch.Tensor) -> torch.Tensor:
    """``x`` unchanged when fp32/fp64 (real or complex), else cast to fp32 (complex32 ->
    complex64): the input of an STFT, iSTFT or complex conversion."""
    if x.dtype in FULL_PRECISION:
        return x
    return x.to(torch.complex64) if x.is_complex() else x.float()


class STFT(nn.Module):
    """Complex one-sided STFT. ``[batch, samples] -> [batch, n_fft // 2 + 1, frames]``
    (a periodic Hann window of ``win_length``, None: ``n_fft``; ``normalized``: torch's)."""

    def __init__(
        self,
        n_fft: int = 2048,
        n_hop: int = 512,
        win_length: int | None = None,
        normalized: bool = False,
    ) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.n_hop = n_hop
        self.win_length = n_fft if win_length is None else int(win_length)
        self.normalized = bool(normalized)
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stft(
            spectral_input(x),  # fp32 whatever autocast made of x: CUDA has no bf16 STFT
            n_fft=self.n_fft,
            hop_length=self.n_hop,
            win_length=self.win_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            normalized=self.normalized,
            onesided=True,
            return_complex=True,
        )


class ISTFT(nn.Module):
    """Inverse of :class:`STFT`. ``[batch, bins, frames] (complex) -> [batch, length]``."""

    def __init__(self, n_fft: int = 2048, n_hop: int = 512) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.n_hop = n_hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        return torch.istft(
            spectral_input(spec),
            n_fft=self.n_fft,
            hop_length=self.n_hop,
            window=self.window,
            center=True,
            normalized=False,
            onesided=True,
            length=length,
        )
