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

``masked_mse`` (:class:`MaskedMSELoss`) is MSST's quantile-masked waveform MSE, the loss of its
SCNet, MDX23C and HTDemucs recipes.

The network declares its loss (:attr:`bsrnn.models.SeparationModel.loss_preference`);
:func:`build_loss` builds it, with ``optim.loss_type`` / ``optim.loss_domain`` overriding the
declared type and domain where set. This module knows no architecture.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bsrnn.errors import ConfigError
from bsrnn.models.base import LossPreference, MultiResolutionSpec, StftSpec

LOSS_TYPES = ("L1", "MSE")
#: MSST's quantile-masked MSE on the waveform (:class:`MaskedMSELoss`).
MASKED_MSE = "masked_mse"
#: Domains for every loss type.
LOSS_DOMAINS = ("t", "tf", "t+tf")
#: Domains for the L1 loss only (MSST's RoFormer loss).
L1_LOSS_DOMAINS = ("t+mrstft",)

_ELEMENTWISE = {"L1": F.l1_loss, "MSE": F.mse_loss}


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
    smallest n_fft of its STFTs: the model's). ``n_fft``, ``n_hop``, ``win_length`` (None:
    ``n_fft``) and ``normalized``: the STFT of the ``tf`` term (the model's).

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
        win_length: int | None = None,
        normalized: bool = False,
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
        self.stft_spec = (
            stft_spec
            if stft_spec is not None
            else StftSpec(n_fft, n_hop, win_length=win_length, normalized=normalized)
        )
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


class MaskedMSELoss(nn.Module):
    """MSST's quantile-masked ("trimmed") MSE on the waveform (its ``masked_loss``).

    The squared error per element, ``[S, B, C, T]`` (stems first); with ``coarse`` its mean
    over channels and time -> ``[S, B]``; per stem, the ``q``-quantile over the rest
    (detached, linear interpolation); the elements strictly below it kept, the others zeroed;
    the mean over all elements. It drops the worst-fitting examples of each stem (e.g. a
    badly labelled stem) from the gradient.

    With a single item per stem (a batch of one with ``coarse``) every value equals its
    quantile, so MSST's loss is always 0 (MSST issue #30): the settings refuse
    ``dset.batch_size=1`` with this loss, and a batch of one that still occurs (the last
    training batch, whole-track validation) gets the plain MSE instead.

    ``forward(est [B, S, C, T], ref [B, S, C, T], est_stfts=None) -> scalar`` (``est_stfts``
    is ignored: the loss is on the waveform). ``q`` in (0, 1] is trusted as given
    (:class:`~bsrnn.settings.OptimSettings` and :class:`~bsrnn.models.base.LossPreference`
    check it).
    """

    def __init__(self, q: float = 0.95, coarse: bool = True) -> None:
        super().__init__()
        self.q = float(q)  # checked where it is set: optim.loss_q, LossPreference.q
        self.coarse = bool(coarse)

    def extra_repr(self) -> str:
        return f"loss_type={MASKED_MSE}, q={self.q}, coarse={self.coarse}"

    def forward(
        self, est: torch.Tensor, ref: torch.Tensor, est_stfts: torch.Tensor | None = None
    ) -> torch.Tensor:
        if est.shape != ref.shape or est.dim() < 3:
            raise ValueError(
                "estimate and reference waveforms must have the same shape [B, S, ...], got "
                f"{tuple(est.shape)} and {tuple(ref.shape)}"
            )
        error = (est.float() - ref.float()).square().transpose(0, 1)  # [S, B, ...]
        if est.shape[0] == 1:
            return error.mean()
        if self.coarse:
            error = error.mean(dim=(-1, -2))
        error = error.reshape(error.shape[0], -1)  # [S, N]
        mask = error < _quantile_rows(error.detach(), self.q)
        return (error * mask).mean()


def _quantile_rows(x: torch.Tensor, q: float) -> torch.Tensor:
    """The ``q``-quantile of each row of ``x [R, N]`` with linear interpolation ->
    ``[R, 1]``: ``torch.quantile(x, q, dim=1, keepdim=True)``'s value, by ``kthvalue`` (no
    limit on ``N``, unlike ``torch.quantile``)."""
    position = q * (x.shape[1] - 1)
    lower = int(position)
    upper = min(lower + 1, x.shape[1] - 1)
    below = torch.kthvalue(x, lower + 1, dim=1, keepdim=True).values
    above = torch.kthvalue(x, upper + 1, dim=1, keepdim=True).values
    return torch.lerp(below, above, position - lower)


def _separation_loss(
    loss_type: str, domain: str, preference: LossPreference, stft_spec: StftSpec, settings: Any
) -> nn.Module:
    return SeparationLoss(
        loss_type=loss_type,
        domain=domain,
        n_fft=stft_spec.n_fft,
        n_hop=stft_spec.hop_length,
        stft_spec=stft_spec,
        multi_resolution=preference.multi_resolution,
    )


def _masked_mse(
    loss_type: str, domain: str, preference: LossPreference, stft_spec: StftSpec, settings: Any
) -> nn.Module:
    """MSST's masked MSE with ``optim.loss_q`` and ``optim.loss_coarse`` (the settings' values,
    MSST's 0.95 and true by default); on the waveform whatever the domain."""
    return MaskedMSELoss(settings.loss_q, settings.loss_coarse)


#: Each ``optim.loss_type`` and what builds its loss:
#: ``builder(loss_type, domain, preference, stft_spec, settings) -> nn.Module``.
LOSS_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "L1": _separation_loss,
    "MSE": _separation_loss,
    MASKED_MSE: _masked_mse,
}


def build_loss(settings: Any, preference: LossPreference, stft_spec: StftSpec) -> nn.Module:
    """The training loss: ``forward(est_waveforms [B, S, C, T], ref_waveforms [B, S, C, T],
    est_stfts=None) -> scalar``.

    ``settings``: the ``optim`` settings (:class:`~bsrnn.settings.OptimSettings`: its
    ``loss_type`` and ``loss_domain``, each null for the network's own); ``preference``: the
    loss the network declares (:attr:`~bsrnn.models.SeparationModel.loss_preference`: type,
    domain, multi-resolution options); ``stft_spec``: the network's STFT, for the ``tf`` term.
    """
    loss_type = settings.loss_type if settings.loss_type is not None else preference.type
    domain = settings.loss_domain if settings.loss_domain is not None else preference.domain
    builder = LOSS_BUILDERS.get(loss_type)
    if builder is None:
        raise ConfigError(
            f"unknown loss type optim.loss_type={loss_type!r}: expected one of "
            f"{', '.join(LOSS_BUILDERS)}"
        )
    return builder(loss_type, domain, preference, stft_spec, settings)
