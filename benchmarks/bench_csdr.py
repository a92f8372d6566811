"""cSDR: our exact implementation against museval's bss_eval on the same signals, in one run.

20 s (``--seconds``) of 4 stereo float32 sources at 44.1 kHz (estimates = references + noise at
varied levels, with a silent reference frame and a silent estimate frame), window = hop = 1 s,
framewise_filters=False, images mode. Single thread (BLAS and torch). Ours is timed as the
minimum of ``--repeats`` calls, museval's ``bss_eval`` over ``--museval-runs`` runs (minimum).

    python benchmarks/bench_csdr.py [--seconds 20] [--repeats 30] [--museval-runs 1]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse

import common  # noqa: F401  (first: puts src/ and the repository on sys.path)
import numpy as np
import torch

from bsrnn.metrics import csdr_frames, csdr_frames_museval, load_museval_metrics

SR = 44100


def make_signals(seconds: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """References and estimates, float32 ``[4, 2, samples]``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    refs = (0.1 * rng.standard_normal((4, 2, n))).astype(np.float32)
    noise = rng.uniform(0.05, 1.0, (4, 1, 1)) * 0.1 * rng.standard_normal((4, 2, n))
    ests = (refs + noise).astype(np.float32)
    if n >= 8 * SR:
        refs[1, :, 3 * SR : 4 * SR] = 0  # a silent reference frame
        ests[2, :, 7 * SR : 8 * SR] = 0  # a silent estimate frame
    return refs, ests


def best_time(fn, repeats: int) -> tuple[float, float, object]:
    """Minimum wall time and minimum process CPU time of ``repeats`` calls of ``fn()``, and
    its last result. On a shared machine the CPU time leaves out the time spent waiting for a
    core (the computation itself is single-threaded)."""
    wall = cpu = float("inf")
    out = None
    for _ in range(repeats):
        w, c, out = common.timed(fn)
        wall, cpu = min(wall, w), min(cpu, c)
    return wall, cpu, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=30, help="calls of ours (minimum)")
    parser.add_argument("--museval-runs", type=int, default=1, help="runs of museval (minimum)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_museval_metrics()  # fails early with an install hint

    print(common.machine_line("cpu", 1))
    refs, ests = make_signals(args.seconds)
    t_read, _, _ = best_time(lambda: (refs.max(), ests.max()), args.repeats)
    csdr_frames(refs, ests, win=SR, hop=SR)  # warm-up (page faults, imports)
    t_ours, c_ours, ours = best_time(lambda: csdr_frames(refs, ests, win=SR, hop=SR), args.repeats)
    t_museval, c_museval, theirs = best_time(
        lambda: csdr_frames_museval(refs, ests, win=SR, hop=SR), args.museval_runs
    )

    same_nan = np.array_equal(np.isnan(ours), np.isnan(theirs))
    finite = ~np.isnan(theirs) & ~np.isnan(ours)
    max_diff = float(np.max(np.abs(ours[finite] - theirs[finite]))) if finite.any() else 0.0
    print(
        f"cSDR of {args.seconds:g} s, 4 stereo float32 sources, {ours.shape[1]} frames of "
        f"1 s, 1 thread; wall / CPU time, minimum of {args.repeats} calls (ours) and of "
        f"{args.museval_runs} (museval)"
    )
    print(f"one read pass over both arrays:   {t_read * 1e3:10.2f} ms")
    print(f"ours (bsrnn.metrics.csdr_frames): {t_ours * 1e3:10.2f} ms / {c_ours * 1e3:.2f} ms")
    print(
        f"museval bss_eval:                 {t_museval * 1e3:10.0f} ms / {c_museval * 1e3:.0f} ms"
    )
    print(
        f"speed-up:                         {t_museval / t_ours:10.0f} x (wall) / "
        f"{c_museval / c_ours:.0f} x (CPU)"
    )
    print(f"largest |difference| (dB):        {max_diff:10.2e} (over non-NaN frames)")
    print(
        f"NaN frames identical:             {same_nan} ({int(np.isnan(theirs).sum())} NaN values)"
    )


if __name__ == "__main__":
    main()
