"""Training losses: L1 or MSE on the waveform (``t``), on the STFT (``tf``) or both (``t+tf``).

- ``t``: ``loss(est_waveform, ref_waveform)`` over all samples.
- ``tf``: ``loss(Re Est, Re Ref) + loss(Im Est, Im Ref)`` where ``Ref`` is the STFT of the
  reference waveform with the model's STFT (:class:`bsrnn.spectral.STFT`: periodic Hann, centred,
  reflect padding, one-sided, not normalised) and ``Est`` the network's complex STFT output
  (or the STFT of the estimated waveform when no STFT is given, e.g. for whole-track validation).
- ``t+tf``: the sum of both terms.

``loss`` is the mean absolute error (``L1``) or mean squared error (``MSE``) of each term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bsrnn.errors import ConfigError
from bsrnn.spectral import STFT

LOSS_TYPES = ("L1", "MSE")
LOSS_DOMAINS = ("t", "tf", "t+tf")

_ELEMENTWISE = {"L1": F.l1_loss, "MSE": F.mse_loss}


class SeparationLoss(nn.Module):
    """L1/MSE separation loss in the ``t``, ``tf`` or ``t+tf`` domain.

    ``forward(est_waveforms [B, S, C, T], ref_waveforms [B, S, C, T],
    est_stfts complex [B, S, C, F, frames] | None) -> scalar``.
    """

    def __init__(
        self, loss_type: str = "L1", domain: str = "t+tf", n_fft: int = 2048, n_hop: int = 512
    ) -> None:
        super().__init__()
        if loss_type not in LOSS_TYPES:
            raise ConfigError(
                f"unknown loss type optim.loss_type={loss_type!r}: expected one of "
                f"{', '.join(LOSS_TYPES)}"
            )
        if domain not in LOSS_DOMAINS:
            raise ConfigError(
                f"unknown loss domain optim.loss_domain={domain!r}: expected one of "
                f"{', '.join(LOSS_DOMAINS)}"
            )
        self.loss_type = loss_type
        self.domain = domain
        self.terms = tuple(domain.split("+"))
        self.stft = STFT(n_fft=n_fft, n_hop=n_hop)

    def extra_repr(self) -> str:
        return f"loss_type={self.loss_type}, domain={self.domain}"

    def spectrogram(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Complex STFT of ``[..., T]`` waveforms -> ``[..., F, frames]``."""
        lead = waveforms.shape[:-1]
        spec = self.stft(waveforms.reshape(-1, waveforms.shape[-1]).float())
        return spec.reshape(*lead, *spec.shape[-2:])

    def components(
        self,
        est_waveforms: torch.Tensor,
        ref_waveforms: torch.Tensor,
        est_stfts: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Each term of the loss: ``{"t": scalar, "tf": scalar}`` (only those of the domain)."""
        if est_waveforms.shape != ref_waveforms.shape:
            raise ValueError(
                "estimate and reference waveforms must have the same shape [B, S, C, T], got "
                f"{tuple(est_waveforms.shape)} and {tuple(ref_waveforms.shape)}"
            )
        fn = _ELEMENTWISE[self.loss_type]
        est_waveforms = est_waveforms.float()
        ref_waveforms = ref_waveforms.float()
        out: dict[str, torch.Tensor] = {}
        if "t" in self.terms:
            out["t"] = fn(est_waveforms, ref_waveforms)
        if "tf" in self.terms:
            ref_spec = self.spectrogram(ref_waveforms)
            est_spec = self.spectrogram(est_waveforms) if est_stfts is None else est_stfts
            if est_spec.shape != ref_spec.shape:
                raise ValueError(
                    f"estimated STFT has shape {tuple(est_spec.shape)} but the reference's STFT "
                    f"has {tuple(ref_spec.shape)}: the loss's n_fft/n_hop must match the model's"
                )
            est_spec = est_spec.to(ref_spec.dtype)
            out["tf"] = fn(est_spec.real, ref_spec.real) + fn(est_spec.imag, ref_spec.imag)
        return out

    def forward(
        self,
        est_waveforms: torch.Tensor,
        ref_waveforms: torch.Tensor,
        est_stfts: torch.Tensor | None = None,
    ) -> torch.Tensor:
        terms = self.components(est_waveforms, ref_waveforms, est_stfts)
        return torch.stack(list(terms.values())).sum()
