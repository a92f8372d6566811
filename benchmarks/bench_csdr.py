"""cSDR: our exact implementation against museval's bss_eval on the same signals.

30 s of 4 stereo sources at 44.1 kHz (estimates = references + noise at varied levels, with a
few silent frames), window = hop = 1 s, framewise_filters=False, images mode.

    python benchmarks/bench_csdr.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bsrnn.metrics import csdr_frames, csdr_frames_museval, load_museval_metrics

SR = 44100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    load_museval_metrics()  # fails early with an install hint

    rng = np.random.default_rng(0)
    n = int(args.seconds * SR)
    refs = (0.1 * rng.standard_normal((4, 2, n))).astype(np.float32)
    noise = rng.uniform(0.05, 1.0, (4, 1, 1)) * 0.1 * rng.standard_normal((4, 2, n))
    ests = (refs + noise).astype(np.float32)
    refs[1, :, 3 * SR : 4 * SR] = 0  # a silent reference frame
    ests[2, :, 7 * SR : 8 * SR] = 0  # a silent estimate frame

    times = []
    for _ in range(3):  # the first call also pays for page faults of fresh allocations
        t0 = time.perf_counter()
        ours = csdr_frames(refs, ests, win=SR, hop=SR)
        times.append(time.perf_counter() - t0)
    t_ours = float(np.median(times))
    t0 = time.perf_counter()
    theirs = csdr_frames_museval(refs, ests, win=SR, hop=SR)
    t_museval = time.perf_counter() - t0

    same_nan = np.array_equal(np.isnan(ours), np.isnan(theirs))
    finite = ~np.isnan(theirs)
    max_diff = float(np.max(np.abs(ours[finite] - theirs[finite])))
    print(f"cSDR of {args.seconds:.0f} s, 4 stereo sources, {ours.shape[1]} frames of 1 s")
    print(
        f"ours (bsrnn.metrics.csdr_frames): {t_ours * 1e3:10.1f} ms "
        f"(median of 3; first call {times[0] * 1e3:.0f} ms)"
    )
    print(f"museval bss_eval:                 {t_museval * 1e3:10.1f} ms")
    print(f"speed-up:                         {t_museval / t_ours:10.0f} x")
    print(f"largest |difference| (dB):        {max_diff:10.2e}")
    print(f"NaN frames identical:             {same_nan} ({int((~finite).sum())} NaN values)")


if __name__ == "__main__":
    main()
