"""Training losses: L1 or MSE on the waveform (``t``), on the STFT (``tf``) or both (``t+tf``).

- ``t``: ``loss(est_waveform, ref_waveform)`` over all samples.
- ``tf``: ``loss(Re Est, Re Ref) + loss(Im Est, Im Ref)`` where ``Ref`` is the STFT of the
  reference waveform with the model's STFT (:meth:`bsrnn.models.base.StftSpec.stft`) and
  ``Est`` the network's complex STFT output (or the STFT of the estimated waveform when no
  STFT is given, e.g. for whole-track validation).
- ``t+tf``: the sum of both terms.
- ``t+mrstft`` (L1 only): the ``t`` term plus MSST's multi-resolution STFT term
  (:class:`MultiResolutionSTFTLoss`), the loss BS-/Mel-RoFormer are trained with.

``loss`` is the mean absolute error (``L1``) or mean squared error (``MSE``) of each term.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bsrnn.errors import ConfigError
from bsrnn.models.base import StftSpec
from bsrnn.models.roformer import RoformerConfig

LOSS_TYPES = ("L1", "MSE")
#: Domains for every loss type.
LOSS_DOMAINS = ("t", "tf", "t+tf")
#: Domains for the L1 loss only (MSST's RoFormer loss).
L1_LOSS_DOMAINS = ("t+mrstft",)

_ELEMENTWISE = {"L1": F.l1_loss, "MSE": F.mse_loss}


@dataclass(frozen=True)
class MultiResolutionSpec:
    """MSST's multi-resolution STFT loss options (its ``multi_stft_*`` model options):
    ``weight`` of the term, Hann ``window_sizes``, ``hop_size`` and ``normalized``."""

    weight: float = 1.0
    window_sizes: tuple[int, ...] = (4096, 2048, 1024, 512, 256)
    hop_size: int = 147
    normalized: bool = False

    def __post_init__(self) -> None:
        sizes = tuple(int(w) for w in self.window_sizes)
        if not sizes or min(sizes) < 1 or self.hop_size < 1:
            raise ConfigError(
                f"invalid multi-resolution STFT loss: window_sizes={list(sizes)}, "
                f"hop_size={self.hop_size} (expected sizes and hop >= 1)"
            )
        object.__setattr__(self, "window_sizes", sizes)


def multi_resolution_spec(config: object) -> MultiResolutionSpec:
    """The multi-resolution STFT loss options of a model config: a RoFormer config's
    ``multi_stft_*`` options, MSST's defaults for any other architecture."""
    if isinstance(config, RoformerConfig):
        return MultiResolutionSpec(
            weight=config.multi_stft_resolution_loss_weight,
            window_sizes=config.multi_stft_resolutions_window_sizes,
            hop_size=config.multi_stft_hop_size,
            normalized=config.multi_stft_normalized,
        )
    return MultiResolutionSpec()


class MultiResolutionSTFTLoss(nn.Module):
    """MSST's multi-resolution STFT loss: ``weight * sum_w mean |STFT_w(est) - STFT_w(ref)|``
    on complex values, for each window size ``w``: ``n_fft = max(w, min_n_fft)``,
    ``win_length = w``, periodic Hann window of ``w``, hop ``hop_size``, centred, reflect
    padding, ``normalized``. ``min_n_fft`` is the model's n_fft (as MSST).

    ``forward(est [B, S, C, T], ref [B, S, C, T]) -> scalar``.
    """

    def __init__(
        self,
        weight: float = 1.0,
        window_sizes: Sequence[int] = (4096, 2048, 1024, 512, 256),
        hop_size: int = 147,
        normalized: bool = False,
        min_n_fft: int = 2048,
    ) -> None:
        super().__init__()
        self.spec = MultiResolutionSpec(weight, tuple(window_sizes), hop_size, normalized)
        self.min_n_fft = min_n_fft
        #: one StftSpec per window size (Hann of ``w`` inside ``max(w, min_n_fft)``)
        self.stft_specs = tuple(
            StftSpec(max(w, min_n_fft), self.spec.hop_size, w, self.spec.normalized)
            for w in self.spec.window_sizes
        )

    @classmethod
    def from_spec(cls, spec: MultiResolutionSpec, min_n_fft: int) -> MultiResolutionSTFTLoss:
        return cls(spec.weight, spec.window_sizes, spec.hop_size, spec.normalized, min_n_fft)

    def extra_repr(self) -> str:
        s = self.spec
        return (
            f"weight={s.weight}, window_sizes={list(s.window_sizes)}, hop_size={s.hop_size}, "
            f"normalized={s.normalized}, min_n_fft={self.min_n_fft}"
        )

    def unweighted(self, est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """The sum over resolutions, without ``weight`` (MSST's ``multi_stft_resolution_loss``)."""
        # the STFT is linear: one STFT of the difference instead of two (half the work; equal
        # to MSST's stft(est) - stft(ref) up to float rounding)
        diff = (est.float() - ref.float()).reshape(-1, est.shape[-1])
        total = diff.new_zeros(())
        for stft_spec in self.stft_specs:
            total = total + stft_spec.stft(diff).abs().mean()
        return total

    def forward(self, est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return self.unweighted(est, ref) * self.spec.weight


class SeparationLoss(nn.Module):
    """L1/MSE separation loss in the ``t``, ``tf`` or ``t+tf`` domain, or L1 in ``t+mrstft``
    (``multi_resolution``: its options, MSST's defaults when None; ``n_fft`` is then the
    smallest n_fft of its STFTs: the model's).

    ``forward(est_waveforms [B, S, C, T], ref_waveforms [B, S, C, T],
    est_stfts complex [B, S, C, F, frames] | None) -> scalar``.
    """

    def __init__(
        self,
        loss_type: str = "L1",
        domain: str = "t+tf",
        n_fft: int = 2048,
        n_hop: int = 512,
        *,
        multi_resolution: MultiResolutionSpec | None = None,
        stft_spec: StftSpec | None = None,
    ) -> None:
        super().__init__()
        if loss_type not in LOSS_TYPES:
            raise ConfigError(
                f"unknown loss type optim.loss_type={loss_type!r}: expected one of "
                f"{', '.join(LOSS_TYPES)}"
            )
        if domain not in LOSS_DOMAINS + L1_LOSS_DOMAINS:
            raise ConfigError(
                f"unknown loss domain optim.loss_domain={domain!r}: expected one of "
                f"{', '.join(LOSS_DOMAINS + L1_LOSS_DOMAINS)}"
            )
        if domain == "t+mrstft" and loss_type != "L1":
            raise ConfigError(
                f"optim.loss_domain={domain!r} takes optim.loss_type='L1' (MSST's loss), got "
                f"{loss_type!r}"
            )
        self.loss_type = loss_type
        self.domain = domain
        self.terms = tuple(domain.split("+"))
        #: the STFT of the ``tf`` term (the model's: ``stft_spec``, else Hann n_fft/n_hop)
        self.stft_spec = stft_spec if stft_spec is not None else StftSpec(n_fft, n_hop)
        n_fft = self.stft_spec.n_fft
        self.mrstft = (
            MultiResolutionSTFTLoss.from_spec(multi_resolution or MultiResolutionSpec(), n_fft)
            if "mrstft" in self.terms
            else None
        )

    def extra_repr(self) -> str:
        return f"loss_type={self.loss_type}, domain={self.domain}"

    def spectrogram(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Complex STFT of ``[..., T]`` waveforms -> ``[..., F, frames]``."""
        return self.stft_spec.stft(waveforms)

    def components(
        self,
        est_waveforms: torch.Tensor,
        ref_waveforms: torch.Tensor,
        est_stfts: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Each term of the loss: ``{"t": scalar, "tf": scalar}`` or ``{"t": scalar,
        "mrstft": scalar}`` (the weighted multi-resolution term), those of the domain. In
        ``t+mrstft`` a reference longer than the estimate is cut to its length (as MSST does
        for Mel-RoFormer, whose output may be a few samples short)."""
        if self.mrstft is not None and est_waveforms.shape[:-1] == ref_waveforms.shape[:-1]:
            ref_waveforms = ref_waveforms[..., : est_waveforms.shape[-1]]
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
        if self.mrstft is not None:
            out["mrstft"] = self.mrstft(est_waveforms, ref_waveforms)
        return out

    def forward(
        self,
        est_waveforms: torch.Tensor,
        ref_waveforms: torch.Tensor,
        est_stfts: torch.Tensor | None = None,
    ) -> torch.Tensor:
        terms = self.components(est_waveforms, ref_waveforms, est_stfts)
        return torch.stack(list(terms.values())).sum()


def build_loss(loss_type: str, domain: str, model) -> SeparationLoss:
    """The training loss of ``model`` (a :class:`~bsrnn.models.SeparationModel`) in
    ``domain``: the model's own STFT for the ``tf`` term, its multi-resolution options (or
    MSST's defaults) for ``mrstft``."""
    spec = model.stft_spec
    return SeparationLoss(
        loss_type=loss_type,
        domain=domain,
        n_fft=spec.n_fft,
        n_hop=spec.hop_length,
        stft_spec=spec,
        multi_resolution=multi_resolution_spec(model.config),
    )
