"""Figures logged during training: spectrograms of a reference and its estimate."""

from __future__ import annotations

import numpy as np


def spectrogram_image(
    reference: np.ndarray,
    estimate: np.ndarray,
    n_fft: int = 2048,
    n_hop: int | None = None,
    top_db: float = 80.0,
    freq_pool: int = 2,
) -> np.ndarray:
    """Log-magnitude spectrograms of ``reference`` and ``estimate`` (mono ``[samples]``) as one
    grey image ``[H, W]`` in [0, 1]: reference on top, estimate below, a white line between,
    low frequencies at the bottom of each, both on the reference's dB scale (``top_db`` range).
    """
    n_hop = n_hop or n_fft // 4

    def log_mag(x: np.ndarray) -> np.ndarray:  # [samples] -> dB [F // freq_pool, frames]
        x = np.asarray(x, dtype=np.float64)
        pad = n_fft // 2
        x = np.pad(x, pad, mode="reflect" if x.shape[0] > pad else "constant")
        if x.shape[0] < n_fft:
            x = np.pad(x, (0, n_fft - x.shape[0]))
        frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::n_hop]
        window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
        mag = np.abs(np.fft.rfft(frames * window, axis=-1)).T  # [F, frames]
        bins = (mag.shape[0] // freq_pool) * freq_pool
        mag = mag[:bins].reshape(bins // freq_pool, freq_pool, -1).mean(axis=1)
        return 20.0 * np.log10(mag + 1e-8)

    ref_db, est_db = log_mag(reference), log_mag(estimate)
    top = ref_db.max()

    def scale(db: np.ndarray) -> np.ndarray:
        return np.clip((db - (top - top_db)) / top_db, 0.0, 1.0)[::-1]  # low freqs at bottom

    line = np.ones((4, ref_db.shape[1]))
    return np.concatenate([scale(ref_db), line, scale(est_db)], axis=0).astype(np.float32)
