"""Figures logged during training: spectrograms of a reference and its estimate."""

from __future__ import annotations

import numpy as np
import torch

from bsrnn.models.base import StftSpec


def spectrogram_image(
    reference: torch.Tensor,
    estimate: torch.Tensor,
    stft_spec: StftSpec,
    top_db: float = 80.0,
    freq_pool: int = 2,
) -> np.ndarray:
    """Log-magnitude spectrograms of ``reference`` and ``estimate`` (mono ``[samples]``) as one
    grey image ``[H, W]`` in [0, 1]: reference on top, estimate below, a white line between,
    low frequencies at the bottom of each, both on the reference's dB scale (``top_db`` range).
    The STFT is the network's (``stft_spec.stft``).
    """

    def log_mag(x: torch.Tensor) -> np.ndarray:  # [samples] -> dB [F // freq_pool, frames]
        x = torch.as_tensor(x, dtype=torch.float32).reshape(1, -1)
        if x.shape[-1] <= stft_spec.n_fft // 2:  # reflect padding needs more than n_fft / 2
            x = torch.nn.functional.pad(x, (0, stft_spec.n_fft - x.shape[-1]))
        mag = stft_spec.stft(x)[0].abs().double().numpy()  # [F, frames]
        bins = (mag.shape[0] // freq_pool) * freq_pool
        mag = mag[:bins].reshape(bins // freq_pool, freq_pool, -1).mean(axis=1)
        return 20.0 * np.log10(mag + 1e-8)

    ref_db, est_db = log_mag(reference), log_mag(estimate)
    top = ref_db.max()

    def scale(db: np.ndarray) -> np.ndarray:
        return np.clip((db - (top - top_db)) / top_db, 0.0, 1.0)[::-1]  # low freqs at bottom

    line = np.ones((4, ref_db.shape[1]))
    return np.concatenate([scale(ref_db), line, scale(est_db)], axis=0).astype(np.float32)
