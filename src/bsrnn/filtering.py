"""Multichannel Wiener filtering of separated estimates (open-unmix's ``filtering`` semantics).

Pure math on complex torch tensors; no model, no files. The algorithm is open-unmix's
``openunmix.filtering.wiener`` / ``expectation_maximization`` (itself the torch port of
norbert, Liutkus & Stöter), written here with complex dtypes:

1. initial source estimates ``y`` from non-negative source spectrograms ``v`` and the mixture
   STFT ``x``: the spectrograms with the mixture's phase, or (``softmask=True``) the ratio mask
   ``v / (eps + sum v)`` applied to ``x``; with ``residual=True`` an extra source, the mixture
   minus the sum of the estimates;
2. ``iterations`` EM steps (none: the initial estimates are the result): the power spectral
   density of each source ``v_j = mean_c |y_j|^2`` and its spatial covariance matrix
   ``R_j = sum_t y_j y_j^H / (eps + sum_t v_j)`` per frequency, then the multichannel Wiener
   gain ``v_j R_j (sqrt(eps) I + sum_k v_k R_k)^-1`` applied to the mixture. The mixture and
   the estimates are scaled by ``max(1, max|x| / scale_factor)`` around the EM for stability.

Memory stays flat: the mixture covariance, its inverse and the gains are formed
``batch_size`` frames at a time (open-unmix's batch), and :func:`wiener_waveforms` filters
windows of at most ``window_frames`` frames independently (open-unmix's ``wiener_win_len``),
so the cost grows linearly with the track and the largest temporary is
``[batch_size, bins, channels, channels]``.

Shapes: ``T`` frames, ``F`` bins, ``C`` channels, ``S`` sources.
"""

from __future__ import annotations

import math

import torch

from bsrnn.errors import ConfigError
from bsrnn.models.base import StftSpec

#: open-unmix's defaults.
EPS = 1e-10
SCALE_FACTOR = 10.0
BATCH_FRAMES = 200


def _invert(m: torch.Tensor) -> torch.Tensor:
    """Inverse of ``[..., C, C]`` complex matrices: closed forms for C = 1 and 2 (as
    open-unmix), ``torch.linalg.inv`` beyond."""
    channels = m.shape[-1]
    if channels == 1:
        return 1.0 / m
    if channels == 2:
        det = m[..., 0, 0] * m[..., 1, 1] - m[..., 0, 1] * m[..., 1, 0]
        inv_det = 1.0 / det
        out = torch.empty_like(m)
        out[..., 0, 0] = inv_det * m[..., 1, 1]
        out[..., 1, 0] = -inv_det * m[..., 1, 0]
        out[..., 0, 1] = -inv_det * m[..., 0, 1]
        out[..., 1, 1] = inv_det * m[..., 0, 0]
        return out
    return torch.linalg.inv(m)


def _covariance(y_j: torch.Tensor) -> torch.Tensor:
    """Empirical covariance ``y y^H`` per TF bin: ``[T, F, C]`` -> ``[T, F, C, C]``."""
    return y_j[..., :, None] * y_j[..., None, :].conj()


def expectation_maximization(
    y: torch.Tensor,
    x: torch.Tensor,
    iterations: int = 2,
    eps: float = EPS,
    batch_size: int = BATCH_FRAMES,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """EM refinement of source estimates (open-unmix's ``expectation_maximization``).

    ``y``: initial estimates, complex ``[T, F, C, S]``; ``x``: mixture STFT, complex
    ``[T, F, C]``. Returns ``(y [T, F, C, S], v [T, F, S], R [S, F, C, C])``: the refined
    estimates (a new tensor), the power spectral densities and spatial covariance matrices of
    the last iteration.
    """
    frames, bins, channels = x.shape
    sources = y.shape[-1]
    real = x.real.dtype
    eye = torch.eye(channels, dtype=x.dtype, device=x.device)
    regularization = math.sqrt(eps) * eye  # [C, C], broadcast over [t, F]
    y = y.clone()
    batch = batch_size if batch_size else frames
    v = torch.zeros((frames, bins, sources), dtype=real, device=x.device)
    big_r = torch.zeros((sources, bins, channels, channels), dtype=x.dtype, device=x.device)
    for _ in range(iterations):
        v = torch.mean(y.real**2 + y.imag**2, dim=-2)  # [T, F, S]
        for j in range(sources):
            r_j = torch.zeros((bins, channels, channels), dtype=x.dtype, device=x.device)
            weight = torch.full((bins,), eps, dtype=real, device=x.device)
            for pos in range(0, frames, batch):
                t = slice(pos, min(frames, pos + batch))
                r_j = r_j + _covariance(y[t, ..., j]).sum(dim=0)
                weight = weight + v[t, ..., j].sum(dim=0)
            big_r[j] = r_j / weight[:, None, None]
        for pos in range(0, frames, batch):
            t = slice(pos, min(frames, pos + batch))
            vt = v[t].to(x.dtype)  # [t, F, S]
            cxx = regularization + torch.einsum("tfs,sfij->tfij", vt, big_r)
            inv_cxx = _invert(cxx)  # [t, F, C, C]
            xt = x[t][..., None]  # [t, F, C, 1]
            for j in range(sources):
                gain = (big_r[j][None] @ inv_cxx) * vt[..., j, None, None]  # [t, F, C, C]
                y[t, ..., j] = (gain @ xt)[..., 0]
    return y, v, big_r


def wiener(
    targets_spectrograms: torch.Tensor,
    mix_stft: torch.Tensor,
    iterations: int = 1,
    softmask: bool = False,
    residual: bool = False,
    scale_factor: float = SCALE_FACTOR,
    eps: float = EPS,
    batch_size: int = BATCH_FRAMES,
) -> torch.Tensor:
    """Wiener-based separation of a multichannel mixture (open-unmix's ``wiener``).

    ``targets_spectrograms``: non-negative source spectrograms (magnitudes) ``[T, F, C, S]``;
    ``mix_stft``: complex ``[T, F, C]``. Returns complex estimates ``[T, F, C, S]``
    (``S + 1`` with ``residual``: the last one is the residual source). ``iterations=0``
    returns the initial estimates (the spectrograms with the mixture's phase, or the soft
    mask with ``softmask``).
    """
    if iterations < 0:
        raise ConfigError(f"the Wiener filter needs iterations >= 0, got {iterations}")
    v = targets_spectrograms
    if softmask:
        total = eps + v.sum(dim=-1, keepdim=True)
        y = mix_stft[..., None] * (v / total).to(mix_stft.dtype)
    else:
        phase = torch.exp(1j * torch.angle(mix_stft))[..., None]
        y = v.to(mix_stft.dtype) * phase
    if residual:
        y = torch.cat([y, mix_stft[..., None] - y.sum(dim=-1, keepdim=True)], dim=-1)
    if iterations == 0:
        return y
    max_abs = max(1.0, float(mix_stft.abs().max()) / scale_factor)
    y = expectation_maximization(
        y / max_abs, mix_stft / max_abs, iterations, eps=eps, batch_size=batch_size
    )[0]
    return y * max_abs


def wiener_waveforms(
    estimates: torch.Tensor,
    mixture: torch.Tensor,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    normalized: bool = False,
    iterations: int = 1,
    softmask: bool = False,
    residual: bool = False,
    window_frames: int | None = None,
    eps: float = EPS,
    dtype: torch.dtype = torch.complex64,
) -> torch.Tensor:
    """Wiener-filter waveform estimates against their mixture.

    ``estimates`` ``[B, S, C, n]`` and ``mixture`` ``[B, C, n]`` (real) are taken to the STFT
    (Hann window of ``win_length``, centred, reflect padding: a model's ``stft_spec``); the
    estimates' magnitudes are the source spectrograms of :func:`wiener` (open-unmix's
    separator does the same with its model's magnitudes), which runs on windows of at most
    ``window_frames`` frames (None: all frames at once; the windows are made equal), each on
    its own statistics; the filtered STFTs go back to waveforms of ``n`` samples. Returns
    ``[B, S, C, n]`` float32 (the residual source, if any, is dropped).
    """
    if estimates.dim() != 4 or mixture.dim() != 3 or estimates.shape[0] != mixture.shape[0]:
        raise ValueError(
            f"expected estimates [B, S, C, n] and mixture [B, C, n], got "
            f"{tuple(estimates.shape)} and {tuple(mixture.shape)}"
        )
    batch, sources, channels, n = estimates.shape
    win = win_length or n_fft
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    spec_def = StftSpec(n_fft, hop_length, win, normalized)

    def stft(w: torch.Tensor) -> torch.Tensor:  # [..., n] -> [..., F, T]
        return spec_def.stft(w.to(real)).to(dtype)

    out = torch.empty_like(estimates, dtype=torch.float32)
    for b in range(batch):
        x = stft(mixture[b]).permute(2, 1, 0)  # [T, F, C]
        v = stft(estimates[b]).abs().permute(3, 2, 1, 0)  # [T, F, C, S]
        frames = x.shape[0]
        count = -(-frames // window_frames) if window_frames else 1
        step = -(-frames // count)  # windows of equal length: no short remainder
        y = torch.empty((*x.shape, sources), dtype=dtype, device=x.device)
        for pos in range(0, frames, step):
            t = slice(pos, min(frames, pos + step))
            y[t] = wiener(v[t], x[t], iterations, softmask, residual, eps=eps)[..., :sources]
        spec = y.permute(3, 2, 1, 0).reshape(sources * channels, *y.shape[1:2], frames)
        wav = spec_def.istft(spec, length=n)
        out[b] = wav.reshape(sources, channels, n).float()
    return out
