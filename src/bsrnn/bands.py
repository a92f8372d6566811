"""Band-split layouts as data.

A layout is a list of ``(count, width_hz)`` pairs, low to high frequency. A bandwidth of X Hz
is ``floor(X / (sample_rate / 2) * n_bins)`` bins (as in the reference implementation), and one
last band takes every remaining bin up to Nyquist.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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
