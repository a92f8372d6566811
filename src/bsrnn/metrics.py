"""Separation metrics: utterance SDR (uSDR) and museval's chunk SDR (cSDR).

uSDR (= nSDR in Demucs, "global" SDR in the MDX challenges) is one number per source over all
samples and channels of a track: ``10 log10((sum s^2 + eps) / (sum (s_hat - s)^2 + eps))``.
Tracks are averaged (mean).

cSDR is the SDR that museval's ``bss_eval`` returns with ``framewise_filters=False`` and
``bsseval_sources_version=False`` (images mode, as in SiSEC 2018), window = hop = 1 s. In that
mode the distortion filter only splits the error ``s_hat - s`` into spatial, interference and
artifact parts; their sum is the error itself, so a frame's SDR is
``10 log10(sum s^2 / sum (s_hat - s)^2)`` over the frame's samples and channels. We compute
that directly (float64), with museval's framing and silence rules:

- frames are ``floor((n - win + hop) / hop)`` windows from the start (a shorter tail is
  dropped); a signal no longer than a window is one frame over the whole signal;
- a frame in which any jointly evaluated source, reference or estimate, is silent (the sum over
  its channels is zero at every sample) is NaN for every source;
- a zero error energy gives +inf;
- a track in which a whole source is silent is refused (:class:`SilentSourceError`), as
  museval's ``validate`` does.

Per track the frames are reduced by their median ignoring NaN; tracks by their median (cSDR)
or mean (uSDR). Arrays are ``[sources, channels, samples]`` (numpy or torch).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bsrnn.errors import SilentSourceError

USDR = "usdr"
CSDR = "csdr"
_SDR_TYPES = {
    "usdr": USDR,
    "global": USDR,
    "utterance": USDR,
    "csdr": CSDR,
    "museval": CSDR,
    "chunk": CSDR,
}


def normalize_sdr_type(sdr_type: str) -> str:
    """Canonical SDR type: ``usdr``/``global``/``utterance`` -> ``"usdr"``;
    ``csdr``/``museval``/``chunk`` -> ``"csdr"``."""
    key = str(sdr_type).strip().lower()
    if key not in _SDR_TYPES:
        raise ValueError(
            f"unknown sdr_type {sdr_type!r}: expected one of {', '.join(sorted(_SDR_TYPES))}"
        )
    return _SDR_TYPES[key]


def _to_numpy(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}")


# --------------------------------------------------------------------------------------------
# uSDR
# --------------------------------------------------------------------------------------------
def usdr(references: Any, estimates: Any, eps: float = 1e-7) -> Any:
    """Utterance SDR in dB per source: ``[..., S, C, T]`` -> ``[..., S]``.

    Sums run over channels and samples in float64. A torch input gives a tensor on the input's
    device in the input's floating dtype; a numpy input gives a float64 array.
    """
    if isinstance(references, torch.Tensor) and isinstance(estimates, torch.Tensor):
        _check_shapes(tuple(references.shape), tuple(estimates.shape), min_dim=2)
        ref = references.detach().double()
        err = estimates.detach().double() - ref
        num = ref.square().sum(dim=(-2, -1)) + eps
        den = err.square().sum(dim=(-2, -1)) + eps
        out = 10.0 * torch.log10(num / den)
        dtype = references.dtype if references.is_floating_point() else torch.float32
        return out.to(dtype)
    ref = np.asarray(_to_numpy(references, "references"), dtype=np.float64)
    est = np.asarray(_to_numpy(estimates, "estimates"), dtype=np.float64)
    _check_shapes(ref.shape, est.shape, min_dim=2)
    num = np.square(ref).sum(axis=(-2, -1)) + eps
    den = np.square(est - ref).sum(axis=(-2, -1)) + eps
    return 10.0 * np.log10(num / den)


def _check_shapes(ref_shape: tuple, est_shape: tuple, min_dim: int) -> None:
    if ref_shape != est_shape:
        raise ValueError(
            f"references and estimates must have the same shape, got {ref_shape} and {est_shape}"
        )
    if len(ref_shape) < min_dim:
        raise ValueError(
            f"expected arrays [..., sources, channels, samples], got shape {ref_shape}"
        )


# --------------------------------------------------------------------------------------------
# cSDR (museval bss_eval v4 SDR, images mode, without the distortion filters)
# --------------------------------------------------------------------------------------------
def num_frames(n_samples: int, win: int, hop: int) -> int:
    """Number of frames museval's framing gives for ``n_samples`` (a tail shorter than a window
    is dropped; a signal no longer than one window is one frame)."""
    if win < n_samples:
        return int(np.floor((n_samples - win + hop) / hop))
    return 1


def _silent_samples(x: np.ndarray) -> np.ndarray:
    """``[S, C, T]`` -> bool ``[S, T]``: True where the sum over channels is zero (museval's
    test, in the input's own dtype)."""
    return np.sum(x, axis=1) == 0


def _frame_sums(values: np.ndarray, n_frames: int, win: int, hop: int) -> np.ndarray:
    """Sum ``values [S, T]`` over museval's frames -> ``[S, n_frames]``."""
    n = values.shape[-1]
    if win >= n:
        return values.sum(axis=-1, keepdims=True)
    if win == hop:
        return values[:, : n_frames * win].reshape(values.shape[0], n_frames, win).sum(axis=-1)
    view = np.lib.stride_tricks.sliding_window_view(values, win, axis=-1)[:, ::hop]
    return view[:, :n_frames].sum(axis=-1)


def csdr_frames(
    references: Any,
    estimates: Any,
    win: int = 44100,
    hop: int = 44100,
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """museval ``bss_eval`` SDR per frame, float64 ``[sources, frames]``.

    ``references``/``estimates``: ``[sources, channels, samples]`` (numpy or torch), evaluated
    jointly (a frame where any of them is silent is NaN for all). ``win``/``hop`` in samples.
    ``names`` (one per source) only serves the error messages. Raises
    :class:`SilentSourceError` when a whole source is silent, as museval does.
    """
    ref = _to_numpy(references, "references")
    est = _to_numpy(estimates, "estimates")
    _check_shapes(ref.shape, est.shape, min_dim=3)
    if ref.ndim != 3:
        raise ValueError(f"expected arrays [sources, channels, samples], got shape {ref.shape}")
    n_src, _, n = ref.shape
    if ref.size == 0:
        raise ValueError(f"empty references/estimates of shape {ref.shape}: nothing to evaluate")
    win, hop = int(win), int(hop)
    if win < 1 or hop < 1:
        raise ValueError(f"win and hop must be positive sample counts, got win={win}, hop={hop}")
    if names is not None and len(names) != n_src:
        raise ValueError(f"got {len(names)} names for {n_src} sources")

    silent_ref = _silent_samples(ref)
    silent_est = _silent_samples(est)
    for kind, silent in (("reference", silent_ref), ("estimate", silent_est)):
        whole = np.flatnonzero(silent.all(axis=-1))
        if whole.size:
            j = int(whole[0])
            label = repr(names[j]) if names is not None else f"#{j}"
            raise SilentSourceError(
                f"the {kind} of source {label} is silent over the whole signal (its channels "
                "sum to zero at every sample): museval's bss_eval refuses such a track"
            )

    n_frames = num_frames(n, win, hop)
    # A frame is silent for a source when it has no sample whose channel sum is non-zero.
    active_ref = _frame_sums((~silent_ref).astype(np.int64), n_frames, win, hop) > 0
    active_est = _frame_sums((~silent_est).astype(np.int64), n_frames, win, hop) > 0
    valid = active_ref.all(axis=0) & active_est.all(axis=0)  # [frames]

    ref64 = np.asarray(ref, dtype=np.float64)
    err = np.asarray(est, dtype=np.float64) - ref64
    num = _frame_sums(np.square(ref64).sum(axis=1), n_frames, win, hop)
    den = _frame_sums(np.square(err).sum(axis=1), n_frames, win, hop)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        sdr = np.where(den == 0, np.inf, 10.0 * np.log10(num / np.where(den == 0, 1.0, den)))
    sdr[:, ~valid] = np.nan
    return sdr


def csdr(
    references: Any,
    estimates: Any,
    win: int = 44100,
    hop: int = 44100,
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """cSDR of one track per source: median over frames of :func:`csdr_frames`, ignoring NaN
    -> float64 ``[sources]`` (NaN for a source whose frames are all NaN)."""
    return median_over_frames(csdr_frames(references, estimates, win=win, hop=hop, names=names))


def load_museval_metrics() -> Any:
    """museval's ``metrics`` module (pure numpy/scipy), loaded from its file so that museval's
    package import (which needs musdb, stempeg and the ffmpeg programs) is not required.

    Raises ``ImportError`` with an install hint when museval is not installed.
    """
    import importlib.util
    import sys

    if "museval.metrics" in sys.modules:
        return sys.modules["museval.metrics"]
    spec = importlib.util.find_spec("museval")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / "metrics.py"
        if path.is_file():
            mod_spec = importlib.util.spec_from_file_location("_bsrnn_museval_metrics", path)
            module = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(module)
            return module
    raise ImportError(
        "museval is not installed (needed for eval.museval_backend=package): "
        "pip install --no-deps museval==0.4.1 (its bss_eval needs only numpy and scipy)"
    )


def csdr_frames_museval(
    references: Any, estimates: Any, win: int = 44100, hop: int = 44100
) -> np.ndarray:
    """The same as :func:`csdr_frames`, computed by museval's own ``bss_eval`` (slow: it
    estimates the distortion filters). Arrays ``[sources, channels, samples]``."""
    metrics = load_museval_metrics()
    ref = np.swapaxes(_to_numpy(references, "references"), 1, 2)
    est = np.swapaxes(_to_numpy(estimates, "estimates"), 1, 2)
    try:
        sdr = metrics.bss_eval(
            ref,
            est,
            window=int(win),
            hop=int(hop),
            compute_permutation=False,
            framewise_filters=False,
            bsseval_sources_version=False,
        )[0]
    except ValueError as err:
        if "silent" in str(err) or "all 0s" in str(err) or "non-silent" in str(err):
            raise SilentSourceError(f"museval refuses the track: {err}") from err
        raise
    return np.asarray(sdr, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------
def median_over_frames(frames: np.ndarray) -> np.ndarray:
    """``[sources, frames]`` -> ``[sources]``: median ignoring NaN (all NaN gives NaN)."""
    frames = np.asarray(frames, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
        return np.nanmedian(frames, axis=-1)


def aggregate_tracks(per_track: Any, sdr_type: str) -> np.ndarray:
    """``[tracks, sources]`` -> ``[sources]``: mean over tracks for uSDR, median for cSDR,
    both ignoring NaN (a source without any number gives NaN)."""
    values = np.asarray(per_track, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"expected per-track scores [tracks, sources], got shape {values.shape}")
    kind = normalize_sdr_type(sdr_type)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns / empty
        if values.shape[0] == 0:
            return np.full(values.shape[1], np.nan)
        if kind == USDR:
            return np.nanmean(values, axis=0)
        return np.nanmedian(values, axis=0)


def average_over_targets(per_target: Any) -> float:
    """Mean of per-target aggregates (NaN ignored), the "average" column of the results."""
    values = np.asarray(per_target, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values)) if values.size else float("nan")
