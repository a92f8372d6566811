"""Band-split layouts as data.

A layout is a list of ``(count, width_hz)`` pairs, low to high frequency. A bandwidth of X Hz
is ``floor(X / (sample_rate / 2) * n_bins)`` bins (as in the reference implementation), and one
last band takes every remaining bin up to Nyquist.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

#: The paper's layouts per target: (number of bands, bandwidth in Hz), low to high.
BAND_LAYOUTS: dict[str, tuple[tuple[int, float], ...]] = {
    "vocals": ((10, 100), (12, 250), (8, 500), (8, 1000), (2, 2000)),
    "bass": ((10, 50), (5, 100), (6, 500), (4, 1000), (4, 2000)),
    "drums": ((20, 50), (10, 100), (8, 250), (8, 500), (8, 1000)),
    "other": ((10, 100), (12, 250), (8, 500), (8, 1000), (2, 2000)),
}

TARGETS: tuple[str, ...] = tuple(BAND_LAYOUTS)

#: The finer layout shared by all targets (57 bands at 44.1 kHz): used by multi-target models
#: and by single-target ones with ``joint_bandsplit``.
JOINT_LAYOUT: tuple[tuple[int, float], ...] = (
    (20, 50),
    (10, 100),
    (8, 250),
    (8, 500),
    (8, 1000),
    (2, 2000),
)


def hz_to_bins(width_hz: float, sample_rate: int, n_bins: int) -> int:
    """Width in bins of a band ``width_hz`` wide, on a one-sided spectrum of ``n_bins`` bins."""
    return int(math.floor(width_hz / (sample_rate / 2.0) * n_bins))


def band_widths(
    target: str | None = None,
    *,
    sample_rate: int = 44100,
    n_fft: int = 2048,
    layout: Sequence[Sequence[float]] | None = None,
) -> list[int]:
    """Widths in bins of every band, low to high, summing to ``n_fft // 2 + 1``.

    ``layout`` (a list of ``[count, width_hz]``) overrides the target's paper layout.
    """
    n_bins = n_fft // 2 + 1
    if layout is None:
        if target not in BAND_LAYOUTS:
            raise ValueError(
                f"unknown target {target!r}: expected one of {', '.join(TARGETS)} "
                "(or give an explicit band layout)"
            )
        layout = BAND_LAYOUTS[target]
    widths: list[int] = []
    for entry in layout:
        if len(entry) != 2:
            raise ValueError(f"band layout entry {list(entry)!r} is not a [count, width_hz] pair")
        count, width_hz = int(entry[0]), float(entry[1])
        width = hz_to_bins(width_hz, sample_rate, n_bins)
        if count < 1 or width < 1:
            raise ValueError(
                f"band layout entry [{count}, {width_hz}] gives {count} band(s) of {width} bin(s) "
                f"at {sample_rate} Hz / n_fft {n_fft}: both must be at least 1"
            )
        widths += [width] * count
    rest = n_bins - sum(widths)
    if rest < 1:
        raise ValueError(
            f"band layout covers {sum(widths)} bins but the spectrum has only {n_bins} "
            "(the last band needs at least one remaining bin)"
        )
    widths.append(rest)
    assert sum(widths) == n_bins
    return widths


def group_equal_widths(widths: Sequence[int]) -> list[tuple[int, int]]:
    """Runs of consecutive equal widths as ``(count, width)`` pairs, low to high."""
    groups: list[tuple[int, int]] = []
    for w in widths:
        if groups and groups[-1][1] == w:
            groups[-1] = (groups[-1][0] + 1, w)
        else:
            groups.append((1, w))
    return groups


# --------------------------------------------------------------------------------------------
# Mel band layouts (Mel-RoFormer)
# --------------------------------------------------------------------------------------------
def _hz_to_mel_slaney(hz: torch.Tensor) -> torch.Tensor:
    """Slaney's mel scale: linear (200/3 Hz per mel) below 1 kHz, logarithmic above."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    linear = hz / f_sp
    log = min_log_mel + torch.log(hz.clamp(min=min_log_hz) / min_log_hz) / logstep
    return torch.where(hz >= min_log_hz, log, linear)


def _mel_to_hz_slaney(mel: torch.Tensor) -> torch.Tensor:
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    linear = f_sp * mel
    log = min_log_hz * torch.exp(logstep * (mel - min_log_mel))
    return torch.where(mel >= min_log_mel, log, linear)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """Triangular mel filters ``[n_mels, n_fft // 2 + 1]`` (float32) from 0 Hz to Nyquist,
    Slaney mel scale and Slaney (constant area) normalisation, computed in float64 as
    ``librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)`` does (on the CPU,
    whatever the default device)."""
    n_bins = n_fft // 2 + 1
    fft_freqs = torch.arange(n_bins, dtype=torch.float64, device="cpu") * (
        1.0 / (n_fft * (1.0 / sample_rate))
    )
    # n_mels + 2 points evenly spaced in mel (numpy's linspace: start + i * step, exact end)
    lo = _hz_to_mel_slaney(torch.tensor(0.0, dtype=torch.float64, device="cpu"))
    hi = _hz_to_mel_slaney(torch.tensor(sample_rate / 2.0, dtype=torch.float64, device="cpu"))
    n_points = n_mels + 2
    mels = (
        torch.arange(n_points, dtype=torch.float64, device="cpu") * ((hi - lo) / (n_points - 1))
        + lo
    )
    mels[-1] = hi
    mel_freqs = _mel_to_hz_slaney(mels)  # [n_mels + 2] band edges and centres in Hz
    fdiff = mel_freqs[1:] - mel_freqs[:-1]
    ramps = mel_freqs[:, None] - fft_freqs[None, :]  # [n_mels + 2, n_bins]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0).float()
    enorm = 2.0 / (mel_freqs[2:] - mel_freqs[:-2])
    return (weights.double() * enorm[:, None]).float()


def mel_band_membership(sample_rate: int, n_fft: int, num_bands: int) -> torch.Tensor:
    """Which bins each Mel-RoFormer band holds: ``[num_bands, n_fft // 2 + 1]`` bool.

    A bin belongs to a band where the band's mel filter is positive, with the first bin forced
    into the first band and the last bin into the last one (as MSST does); neighbouring bands
    overlap, so most bins belong to two bands. ValueError if a bin belongs to no band or a
    band holds no bin.
    """
    fb = mel_filterbank(sample_rate, n_fft, num_bands)
    fb[0, 0] = 1.0
    fb[-1, -1] = 1.0
    member = fb > 0
    empty = (~member.any(dim=1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(
            f"{num_bands} mel bands at {sample_rate} Hz / n_fft {n_fft} leave band(s) "
            f"{empty[:5]} without a bin: use fewer bands or a larger n_fft"
        )
    if not bool(member.any(dim=0).all()):
        missing = (~member.any(dim=0)).nonzero().flatten().tolist()
        raise ValueError(
            f"{num_bands} mel bands at {sample_rate} Hz / n_fft {n_fft} leave bin(s) "
            f"{missing[:5]} in no band: use fewer bands or a larger n_fft"
        )
    return member
