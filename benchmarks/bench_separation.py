"""Whole-track separation: speed and peak memory as the track grows.

Each track length runs in its own subprocess (4 targets, random weights, CPU, 2 torch threads,
the default linear fader: 11 s chunks every 10 s). Reported per length:
- speed: seconds of audio separated per second of compute;
- peak RSS (the process's high-water mark, ``resource.getrusage`` maxrss);
- working memory: peak RSS minus the RSS just before separating (models, input) minus the
  output ``[1, 4, 2, T]`` float32 itself. This is what chunking must keep flat.

    python benchmarks/bench_separation.py                 # bsrnn 64/8: 30 s, 3 min, 10 min
    python benchmarks/bench_separation.py --quick         # 30 s and 3 min
    python benchmarks/bench_separation.py --feature-dim 16 --num-repeat 2   # bsrnn-tiny
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

TARGETS = ("vocals", "bass", "drums", "other")
SR = 44100


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def child(seconds: float, feature_dim: int, num_repeat: int, threads: int) -> dict:
    import torch

    from bsrnn import BSRNN
    from bsrnn.separator import Separator

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    models = {t: BSRNN(target=t, feature_dim=feature_dim, num_repeat=num_repeat) for t in TARGETS}
    sep = Separator(models, device="cpu")
    n = int(seconds * SR)
    mixture = 0.1 * torch.randn(1, 2, n)
    before = _rss_kib()
    t0 = time.perf_counter()
    out = sep.separate_stacked(mixture)
    elapsed = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out_kib = out.numel() * out.element_size() / 1024
    return {
        "seconds": seconds,
        "compute_s": elapsed,
        "speed": seconds / elapsed,
        "peak_rss_mib": peak / 1024,
        "before_mib": before / 1024,
        "output_mib": out_kib / 1024,
        "working_mib": (peak - before - out_kib) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="30,180,600", help="track lengths in seconds")
    parser.add_argument("--quick", action="store_true", help="only 30 s and 3 min")
    parser.add_argument("--feature-dim", type=int, default=64)
    parser.add_argument("--num-repeat", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child is not None:
        print(json.dumps(child(args.child, args.feature_dim, args.num_repeat, args.threads)))
        return

    lengths = [30.0, 180.0] if args.quick else [float(x) for x in args.lengths.split(",")]
    print(
        f"separation of {len(TARGETS)} targets, BSRNN {args.feature_dim}/{args.num_repeat} "
        f"(random weights), CPU, {args.threads} torch threads, 10 s segments + 10 % overlap"
    )
    print(
        f"{'track':>8} {'compute s':>10} {'audio s/s':>10} {'peak RSS MiB':>13} "
        f"{'before MiB':>11} {'output MiB':>11} {'working MiB':>12}"
    )
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    for seconds in lengths:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            str(seconds),
            "--feature-dim",
            str(args.feature_dim),
            "--num-repeat",
            str(args.num_repeat),
            "--threads",
            str(args.threads),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            print(f"{seconds:>7.0f}s failed:\n{proc.stderr[-2000:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"{seconds:>7.0f}s {r['compute_s']:>10.1f} {r['speed']:>10.2f} "
            f"{r['peak_rss_mib']:>13.0f} {r['before_mib']:>11.0f} {r['output_mib']:>11.0f} "
            f"{r['working_mib']:>12.0f}"
        )


if __name__ == "__main__":
    main()
