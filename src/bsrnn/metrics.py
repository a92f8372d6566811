"""Separation metrics: utterance SDR (uSDR) and museval's chunk SDR (cSDR).

uSDR (= nSDR in Demucs, "global" SDR in the MDX challenges) is one number per source over all
samples and channels of a track: ``10 log10((sum s^2 + eps) / (sum (s_hat - s)^2 + eps))``.
Tracks are averaged (mean).

cSDR is the SDR that museval's ``bss_eval`` returns with ``framewise_filters=False`` and
``bsseval_sources_version=False`` (images mode, as in SiSEC 2018), window = hop = 1 s. In that
mode the distortion filter only splits the error ``s_hat - s`` into spatial, interference and
artifact parts; their sum is the error itself, so a frame's SDR is
``10 log10(sum s^2 / sum (s_hat - s)^2)`` over the frame's samples and channels. We compute
that directly, with float64 products and sums (values within 1e-9 dB of museval's, in practice
~1e-14), and with museval's framing and silence rules:

- frames are ``floor((n - win + hop) / hop)`` windows from the start (a shorter tail is
  dropped); a signal no longer than a window is one frame over the whole signal;
- a frame in which any jointly evaluated source, reference or estimate, is silent (the sum over
  its channels, in the input's dtype, is zero at every sample) is NaN for every source;
- a zero error energy gives +inf;
- a track in which a whole source is silent is refused (:class:`SilentSourceError`), as
  museval's ``validate`` does.

The sums run block by block: a cache-sized block of one source is cast to float64, its error
formed next to it and both squared sums taken by BLAS dot products, so the arrays are read once
and no full-size float64 copy or error array is made (``benchmarks/bench_csdr.py`` times it
against museval's ``bss_eval``). The silence test looks at the channel sum of each frame's
first sample and searches the frame further only when that sum is zero.

Per track the frames are reduced by their median ignoring NaN; tracks by their median (cSDR)
or mean (uSDR). Arrays are ``[sources, channels, samples]`` (numpy or torch).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bsrnn.errors import ConfigError, SilentSourceError

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
        raise ConfigError(
            f"unknown eval.sdr_type={sdr_type!r}: expected one of {', '.join(sorted(_SDR_TYPES))}"
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
# float64 values per block buffer at most: a block of one source is cast to float64, its error
# formed and both squared sums taken while the two buffers (2 x 256 KiB) stay in cache.
_BLOCK_ELEMENTS = 32768
# Segments (the pieces between consecutive frame edges) shorter than this on average, as with
# heavily overlapping frames, are summed over whole-signal arrays instead of block by block.
_MIN_BLOCKED_SEGMENT = 2048
# Samples looked at first when searching a segment for a non-silent sample; most segments of
# real audio have one right at their start, so their silence test costs nothing more.
_SILENCE_PROBE = 256
_SILENCE_CHUNK = 65536
# float64 values between the two block buffers, so that they do not start at the same offset
# in a 4 KiB page (loads from one and stores to the other would then falsely depend).
_BUFFER_GAP = 64


def num_frames(n_samples: int, win: int, hop: int) -> int:
    """Number of frames museval's framing gives for ``n_samples`` (a tail shorter than a window
    is dropped; a signal no longer than one window is one frame)."""
    if win < n_samples:
        return int(np.floor((n_samples - win + hop) / hop))
    return 1


def _frame_edges(n_samples: int, win: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """museval's frames as ``(starts, stops)``, int64 ``[frames]`` each."""
    if win >= n_samples:
        return np.zeros(1, dtype=np.int64), np.full(1, n_samples, dtype=np.int64)
    starts = np.arange(num_frames(n_samples, win, hop), dtype=np.int64) * hop
    return starts, starts + win


def _silent_samples(x: np.ndarray) -> np.ndarray:
    """``[S, C, T]`` -> bool ``[S, T]``: True where the sum over channels is zero (museval's
    test, in the input's own dtype)."""
    return np.sum(x, axis=1) == 0


def _has_sound(x: np.ndarray) -> bool:
    """``[C, T]`` -> True when the sum over channels is non-zero at some sample. Looks at a
    short probe first, then at chunks, and stops at the first such sample."""
    n = x.shape[-1]
    start, step = 0, _SILENCE_PROBE
    while start < n:
        stop = min(start + step, n)
        if np.any(np.sum(x[:, start:stop], axis=0) != 0):
            return True
        start, step = stop, _SILENCE_CHUNK
    return False


def _segment_activity(x: np.ndarray, seg_starts: np.ndarray, seg_stops: np.ndarray) -> np.ndarray:
    """``x [S, C, T]`` -> bool ``[S, segments]``: True where the segment has a sample whose sum
    over channels is non-zero. Only segments whose first sample sums to zero are searched."""
    active = np.sum(x[:, :, seg_starts], axis=1) != 0
    for src, seg in zip(*np.nonzero(~active)):
        active[src, seg] = _has_sound(x[src, :, seg_starts[seg] : seg_stops[seg]])
    return active


def _segment_energies_blocked(
    ref: np.ndarray,
    est: np.ndarray,
    seg_starts: np.ndarray,
    seg_stops: np.ndarray,
    needed: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``sum s^2`` and ``sum (s_hat - s)^2`` in float64 over each needed segment, per source:
    two ``[S, segments]`` arrays (zero for the segments not needed).

    Each segment is split into equal blocks of at most ``_BLOCK_ELEMENTS`` values per source;
    a block of one source is cast to float64 into a cache-sized buffer, its error formed in a
    second one, and both squared sums taken by BLAS dot products (float64 accumulation), so
    no full-size float64 copy or error array is ever made."""
    n_src, n_chan = ref.shape[:2]
    num = np.zeros((n_src, len(seg_starts)))
    den = np.zeros((n_src, len(seg_starts)))
    # Blocks are copied in the references' memory order: [C, l] for planar arrays, [l, C]
    # for channel-interleaved ones (e.g. a transposed [S, T, C] array).
    interleaved = n_chan > 1 and abs(ref.strides[1]) < abs(ref.strides[2])
    size = n_chan * max(1, _BLOCK_ELEMENTS // n_chan)
    buffer = np.empty(2 * size + _BUFFER_GAP)
    ref_buf, err_buf = buffer[:size], buffer[size + _BUFFER_GAP :]
    views: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
    segments = []  # (segment, [(lo, hi, views of the buffers for hi - lo samples), ...])
    for seg in np.flatnonzero(needed):
        start, stop = int(seg_starts[seg]), int(seg_stops[seg])
        count = -(-(stop - start) * n_chan // size)  # blocks in this segment
        step = -(-(stop - start) // count)
        pieces = []
        for lo in range(start, stop, step):
            hi = min(lo + step, stop)
            if hi - lo not in views:
                rf, ef = ref_buf[: n_chan * (hi - lo)], err_buf[: n_chan * (hi - lo)]
                shape = (-1, n_chan) if interleaved else (n_chan, -1)
                views[hi - lo] = (rf, ef, rf.reshape(shape), ef.reshape(shape))
            pieces.append((lo, hi, views[hi - lo]))
        segments.append((int(seg), pieces))
    copyto, subtract, dot = np.copyto, np.subtract, np.dot
    for src in range(n_src):
        # [T, C] or [C, T]: a block is r[lo:hi] or r[:, lo:hi]
        r, e = (ref[src].T, est[src].T) if interleaved else (ref[src], est[src])
        for seg, pieces in segments:
            sum_ref = sum_err = 0.0
            for lo, hi, (rf, ef, r2, e2) in pieces:
                if interleaved:
                    copyto(r2, r[lo:hi], casting="unsafe")
                    copyto(e2, e[lo:hi], casting="unsafe")
                else:
                    copyto(r2, r[:, lo:hi], casting="unsafe")
                    copyto(e2, e[:, lo:hi], casting="unsafe")
                subtract(ef, rf, out=ef)
                sum_ref += float(dot(rf, rf))
                sum_err += float(dot(ef, ef))
            num[src, seg] = sum_ref
            den[src, seg] = sum_err
    return num, den


def _segment_sums_whole(
    ref: np.ndarray, est: np.ndarray, bounds: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Activity of references and estimates and the two energies per segment, from
    whole-signal arrays (for many short segments): four ``[S, segments]`` arrays."""
    n = ref.shape[-1]
    n_seg = len(bounds) - 1
    # reduceat sums from each index to the next: add the end of the last segment when a tail
    # follows it, and drop that extra column.
    idx = bounds if bounds[-1] < n else bounds[:-1]
    sound_ref = np.logical_or.reduceat(~_silent_samples(ref), idx, axis=-1)[:, :n_seg]
    sound_est = np.logical_or.reduceat(~_silent_samples(est), idx, axis=-1)[:, :n_seg]
    ref64 = np.asarray(ref, dtype=np.float64)
    err = np.asarray(est, dtype=np.float64) - ref64
    num = np.add.reduceat(np.square(ref64).sum(axis=1), idx, axis=-1)[:, :n_seg]
    den = np.add.reduceat(np.square(err).sum(axis=1), idx, axis=-1)[:, :n_seg]
    return sound_ref, sound_est, num, den


def _over_frames(ufunc: np.ufunc, values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> Any:
    """Reduce ``values [S, segments]`` over the segments ``lo[f]:hi[f]`` of each frame ->
    ``[S, frames]`` (frames may share segments when they overlap)."""
    padded = np.concatenate([values, np.zeros_like(values[:, :1])], axis=1)
    return ufunc.reduceat(padded, np.stack([lo, hi], axis=1).ravel(), axis=1)[:, ::2]


def _raise_if_wholly_silent(
    x: np.ndarray, sound: np.ndarray, kind: str, names: Sequence[str] | None
) -> None:
    """Raise :class:`SilentSourceError` for the first source of ``x [S, C, T]`` that is silent
    over the whole signal (``sound [S, segments]`` already rules out most sources)."""
    for j in range(x.shape[0]):
        if sound[j].any() or _has_sound(x[j]):
            continue
        label = repr(names[j]) if names is not None else f"#{j}"
        raise SilentSourceError(
            f"the {kind} of source {label} is silent over the whole signal (its channels "
            "sum to zero at every sample): museval's bss_eval refuses such a track"
        )


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

    # Segments: the pieces between consecutive frame edges. Frame f is segments lo[f]:hi[f];
    # with window = hop each frame is one segment, and a gap (hop > window) is a segment of
    # no frame.
    starts, stops = _frame_edges(n, win, hop)
    bounds = np.union1d(starts, stops)
    seg_starts, seg_stops = bounds[:-1], bounds[1:]
    lo, hi = np.searchsorted(bounds, starts), np.searchsorted(bounds, stops)
    blocked = bounds[-1] >= _MIN_BLOCKED_SEGMENT * len(seg_starts)

    if blocked:
        sound_ref = _segment_activity(ref, seg_starts, seg_stops)
        sound_est = _segment_activity(est, seg_starts, seg_stops)
    else:
        sound_ref, sound_est, num_seg, den_seg = _segment_sums_whole(ref, est, bounds)
    _raise_if_wholly_silent(ref, sound_ref, "reference", names)
    _raise_if_wholly_silent(est, sound_est, "estimate", names)

    # A frame is silent for a source when none of its samples has a non-zero channel sum.
    frame_sound_ref = _over_frames(np.logical_or, sound_ref, lo, hi)  # [S, frames]
    frame_sound_est = _over_frames(np.logical_or, sound_est, lo, hi)
    valid = frame_sound_ref.all(axis=0) & frame_sound_est.all(axis=0)  # [frames]
    if blocked:
        # Only the segments of valid frames: the others are NaN whatever their energies.
        edges = np.zeros(len(bounds), dtype=np.int64)
        np.add.at(edges, lo[valid], 1)
        np.add.at(edges, hi[valid], -1)
        needed = np.cumsum(edges)[:-1] > 0
        num_seg, den_seg = _segment_energies_blocked(ref, est, seg_starts, seg_stops, needed)
    num = _over_frames(np.add, num_seg, lo, hi)
    den = _over_frames(np.add, den_seg, lo, hi)
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
    """``[tracks, sources]`` -> ``[sources]``: median over tracks for cSDR, mean for the
    other metrics (uSDR, MSST's), both ignoring NaN (a source without any number gives NaN)."""
    values = np.asarray(per_track, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"expected per-track scores [tracks, sources], got shape {values.shape}")
    kind = normalize_metric(sdr_type)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns / empty
        if values.shape[0] == 0:
            return np.full(values.shape[1], np.nan)
        if kind != CSDR:
            return np.nanmean(values, axis=0)
        return np.nanmedian(values, axis=0)


def average_over_targets(per_target: Any) -> float:
    """Mean of per-target aggregates (NaN ignored), the "average" column of the results."""
    values = np.asarray(per_target, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values)) if values.size else float("nan")


# --------------------------------------------------------------------------------------------
# MSST's metrics (ZFTurbo/Music-Source-Separation-Training, utils/metrics.py): one stem
# [channels, samples], float32 as MSST computes them
# --------------------------------------------------------------------------------------------
SI_SDR = "si_sdr"
BLEEDLESS = "bleedless"
FULLNESS = "fullness"
L1_FREQ = "l1_freq"
#: Every metric ``eval.metrics`` accepts, in table order (SDR synonyms: :data:`_SDR_TYPES`).
METRICS = (USDR, CSDR, SI_SDR, BLEEDLESS, FULLNESS, L1_FREQ)
#: What each metric is called in tables.
METRIC_LABELS = {
    USDR: "uSDR",
    CSDR: "cSDR",
    SI_SDR: "SI-SDR",
    BLEEDLESS: "bleedless",
    FULLNESS: "fullness",
    L1_FREQ: "L1Freq",
}


def normalize_metric(name: str) -> str:
    """Canonical metric name: an SDR synonym (``museval``, ``global``...) or one of
    :data:`METRICS`."""
    key = str(name).strip().lower()
    if key in _SDR_TYPES:
        return _SDR_TYPES[key]
    if key not in METRICS:  # one line naming the entry and the choices
        raise ConfigError(
            f"unknown eval.metrics entry {name!r}: expected any of {', '.join(METRICS)}"
        )
    return key


def _one_stem(reference: Any, estimate: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Both as float32 CPU tensors ``[C, T]`` of the same shape."""
    ref = torch.as_tensor(_to_numpy(reference, "reference")).float()
    est = torch.as_tensor(_to_numpy(estimate, "estimate")).float()
    if ref.shape != est.shape or ref.dim() != 2:
        raise ValueError(
            f"expected reference and estimate [channels, samples] of one shape, got "
            f"{tuple(ref.shape)} and {tuple(est.shape)}"
        )
    return ref, est


def si_sdr(reference: Any, estimate: Any, eps: float = 1e-8) -> float:
    """MSST's scale-invariant SDR in dB of one stem ``[C, T]``: the reference scaled by
    ``sum(s_hat * s + eps) / sum(s^2 + eps)`` (eps added per element, as MSST does), then
    ``10 log10(sum (a s)^2 / (sum (a s - s_hat)^2 + eps) + eps)``, in float32."""
    ref, est = _one_stem(reference, estimate)
    ref_np, est_np = ref.numpy(), est.numpy()
    scale = np.sum(est_np * ref_np + np.float32(eps)) / np.sum(ref_np**2 + np.float32(eps))
    scaled = ref_np * scale
    ratio = np.sum(scaled**2) / (np.sum((scaled - est_np) ** 2) + eps) + eps
    return float(10 * np.log10(ratio))


def l1_freq(reference: Any, estimate: Any, n_fft: int = 2048, hop: int = 1024) -> float:
    """MSST's L1Freq of one stem ``[C, T]``: ``100 / (1 + 10 mean|(|S_hat| - |S|)|)`` with
    ``S`` torch.stft's defaults (no window, centred, reflect padding), n_fft 2048, hop 1024."""
    ref, est = _one_stem(reference, estimate)
    window = torch.ones(n_fft)  # torch.stft's default (no window), stated to silence its warning
    mag_ref = torch.stft(ref, n_fft, hop, window=window, return_complex=True).abs()
    mag_est = torch.stft(est, n_fft, hop, window=window, return_complex=True).abs()
    loss = 10 * torch.nn.functional.l1_loss(mag_est, mag_ref)
    return 100.0 / (1.0 + float(loss))


@functools.lru_cache(maxsize=4)
def _mel_filters(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    from bsrnn.bands import mel_filterbank

    return mel_filterbank(sample_rate, n_fft, n_mels)


def _mel_db(x: torch.Tensor, filters: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """``[C, T]`` -> mel magnitudes in dB ``[C, mels, frames]``: |STFT| (periodic Hann,
    centred, zero padding), mel filters, ``20 log10(max(., 1e-10))`` floored at the maximum
    over the whole tensor minus 80 dB."""
    window = torch.hann_window(n_fft)
    spec = torch.stft(x, n_fft, hop, window=window, pad_mode="constant", return_complex=True)
    db = 20.0 * torch.log10(torch.clamp(filters @ spec.abs(), min=1e-10))
    return torch.maximum(db, db.amax() - 80.0)


def bleedless_fullness(
    reference: Any,
    estimate: Any,
    sample_rate: int = 44100,
    n_fft: int = 4096,
    hop: int = 1024,
    n_mels: int = 512,
) -> tuple[float, float]:
    """MSST's bleedless and fullness of one stem ``[C, T]``: of the differences
    ``estimate - reference`` of the mel spectrograms in dB (:func:`_mel_db`; 512 Slaney mel
    bands from 0 to sr/2), ``100 / (1 + mean of the positive ones)`` (bleedless: no energy
    the reference lacks) and ``100 / (1 + |mean of the negative ones|)`` (fullness: no
    energy missing). A sign without any difference counts as a mean of 0 (score 100)."""
    ref, est = _one_stem(reference, estimate)
    filters = _mel_filters(int(sample_rate), int(n_fft), int(n_mels))
    diff = _mel_db(est, filters, n_fft, hop) - _mel_db(ref, filters, n_fft, hop)
    positive, negative = diff[diff > 0], diff[diff < 0]
    mean_pos = float(positive.mean()) if positive.numel() else 0.0
    mean_neg = float(negative.mean()) if negative.numel() else 0.0
    return 100.0 / (mean_pos + 1.0), 100.0 / (1.0 - mean_neg)


def stem_metrics(
    metrics: Sequence[str], references: Any, estimates: Any, sample_rate: int
) -> dict[str, np.ndarray]:
    """MSST's metrics among ``metrics`` (SI-SDR, bleedless, fullness, L1Freq; SDR names are
    skipped) for each source of ``[S, C, T]`` arrays -> ``{metric: float64 [S]}``."""
    ref = _to_numpy(references, "references")
    est = _to_numpy(estimates, "estimates")
    _check_shapes(ref.shape, est.shape, min_dim=3)
    wanted = [m for m in metrics if m not in (USDR, CSDR)]
    out = {m: np.zeros(ref.shape[0]) for m in wanted}
    for j in range(ref.shape[0]):
        if SI_SDR in out:
            out[SI_SDR][j] = si_sdr(ref[j], est[j])
        if L1_FREQ in out:
            out[L1_FREQ][j] = l1_freq(ref[j], est[j])
        if BLEEDLESS in out or FULLNESS in out:
            bleedless, fullness = bleedless_fullness(ref[j], est[j], sample_rate)
            for name, value in ((BLEEDLESS, bleedless), (FULLNESS, fullness)):
                if name in out:
                    out[name][j] = value
    return out
