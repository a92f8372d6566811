"""Four-stem separation speed and memory: BSRNN (fp32, bf16), SIMO-BSRNN, HTDemucs, baseline.

Times the separation of the same stereo mixture (``--seconds``, default 10 s, 44.1 kHz, random
audio) into vocals, bass, drums and other with:

  (a) four per-target BSRNN networks (``--feature-dim``/``--num-repeat``, default 64/8), fp32;
  (b) the same networks under bf16 autocast (n/a, with the reason, where the CPU has no native
      bf16: emulated bf16 is slower than fp32; ``--force-bf16`` runs it anyway);
  (c) one multi-target network (``make_simo_model``), fp32 and bf16;
  (d) HTDemucs (the ``htdemucs`` architecture, random weights) through
      ``demucs.apply.apply_model`` with its defaults (shifts=1, split=True, overlap=0.25,
      7.8 s segments); skipped when demucs is not installed (benchmarks/requirements.txt);
  (e) the per-band-loop baseline (benchmarks/per_band_baseline.py) for the four targets.

BSRNN networks separate through ``bsrnn.separator.Separator`` (the users' chunking: 11 s chunks
every 10 s). The per-target networks of (a), (b) and (e) hold the same weights (the baseline's
random initialisation mapped onto ours, as benchmarks/bench_model.py does), so (e) must match
(a) and its SNR column checks that.

Each configuration runs in a fresh subprocess with ``--threads`` torch threads (default 1,
``OMP_NUM_THREADS`` too): one warm-up separation of ``--warmup-seconds`` of audio, then
``--repeats`` timed separations of the whole mixture; the best time counts. Memory, on Linux:
"peak RSS" is the process's resident set high-water mark during the timed separations
(``VmHWM`` after resetting it through ``/proc/self/clear_refs``; it includes Python, torch and
the models); "RSS growth" is that peak minus the resident set just before them: the working
memory of one separation, its output included. Weights are random: the SNR column (dB, mean
over the four stems, min in brackets) compares outputs with the fp32 twin, not with references.

    python benchmarks/bench_separation.py                          # 10 s, 1 thread
    python benchmarks/bench_separation.py --threads 2 --repeats 3
    python benchmarks/bench_separation.py --seconds 2 --repeats 1 --feature-dim 16 --num-repeat 2
    python benchmarks/bench_separation.py --only a,d               # a subset of the rows
    python benchmarks/bench_separation.py --device cuda --batch-chunks 8 --seconds 180 --only a,c
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.util
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
import types
from fractions import Fraction
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from bsrnn import runtime  # noqa: E402

TARGETS = ("vocals", "bass", "drums", "other")
SR = 44100

#: HTDemucs as ``demucs.pretrained`` builds the ``htdemucs`` model (signature 955717e8): the
#: constructor arguments stored in that checkpoint that differ from HTDemucs' defaults.
HTDEMUCS_KWARGS: dict[str, Any] = {
    "sources": ["drums", "bass", "other", "vocals"],
    "audio_channels": 2,
    "samplerate": SR,
    "segment": Fraction(39, 5),
    "channels": 48,
    "depth": 4,
    "nfft": 4096,
    "bottom_channels": 512,
    "dconv_mode": 3,
    "dconv_comp": 8,
    "t_layers": 5,
    "t_heads": 8,
    "t_dropout": 0.02,
    "multi_freqs": [],
}


# --------------------------------------------------------------------------------------------
# The networks (the lead switches model construction here)
# --------------------------------------------------------------------------------------------
def make_model(target: str, feature_dim: int, num_repeat: int, **options: Any) -> nn.Module:
    """One per-target BSRNN with random weights."""
    from bsrnn.models import build_model

    return build_model(
        {"target": target, "feature_dim": feature_dim, "num_repeat": num_repeat, **options}
    )


def make_simo_model(feature_dim: int = 64, num_repeat: int = 8) -> nn.Module | None:
    """The multi-target network of the ``simo-bsrnn`` preset (the joint 57-band split, three
    mask decoders, ``other`` as the mixture minus the rest) with random weights."""
    from bsrnn.models import build_model

    return build_model(
        dict(targets=["vocals", "bass", "drums", "other"], subtract_last_trgt=True,
             feature_dim=feature_dim, num_repeat=num_repeat)
    )  # fmt: skip


def make_separator(
    models: list[nn.Module], precision: str, force: bool, device: str = "cpu",
    batch_chunks: int | None = None,
) -> Any:  # fmt: skip
    """The users' separator on ``device`` (default chunking, ``batch_chunks`` chunks per pass)
    in ``precision``; ``force`` keeps bf16 even where the separator would fall back to fp32."""
    from bsrnn.chunking import ChunkSettings
    from bsrnn.separator import Separator

    chunking = ChunkSettings(segment_len=10.0, batch_chunks=batch_chunks)  # BSRNN's default
    sep = Separator(models, device=device, precision=precision, chunking=chunking)
    if force:
        sep.precision = precision
    return sep


class BaselineAdapter(nn.Module):
    """The per-band baseline behind the model interface the separator expects:
    ``[B, C, T] -> ModelOutput`` with ``waveforms`` ``[B, 1, C, T]``."""

    def __init__(self, net: nn.Module, target: str) -> None:
        super().__init__()
        self.net = net
        self.targets = [target]
        self.sample_rate = SR
        self.config = types.SimpleNamespace(targets=(target,), n_fft=net.n_fft, sample_rate=SR)

    def forward(self, mixture: torch.Tensor) -> Any:
        from bsrnn.models import ModelOutput

        return ModelOutput(self.net(mixture))


def per_target_networks(
    feature_dim: int, num_repeat: int, seed: int
) -> tuple[list[nn.Module], list[nn.Module]]:
    """``(ours, baselines)``: for each target, a per-band baseline with random weights and our
    network holding the same weights."""
    from per_band_baseline import PerBandBSRNN

    from bsrnn.models.bsrnn_checkpoints import convert_reference_state_dict

    ours, baselines = [], []
    for i, target in enumerate(TARGETS):
        torch.manual_seed(seed + i)
        base = PerBandBSRNN(target=target, feature_dim=feature_dim, num_repeat=num_repeat)
        net = make_model(target, feature_dim, num_repeat)
        net.load_state_dict(convert_reference_state_dict(base.state_dict(), net))
        ours.append(net.eval())
        baselines.append(BaselineAdapter(base, target).eval())
    return ours, baselines


# --------------------------------------------------------------------------------------------
# One configuration, in a child process
# --------------------------------------------------------------------------------------------
def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak_rss() -> bool:
    """Reset the process's RSS high-water mark (Linux ``clear_refs``); False where it can't."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def mixture(seconds: float, seed: int) -> torch.Tensor:
    """The benchmark's stereo mixture ``[2, T]`` (the same in every child)."""
    gen = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(2, int(round(seconds * SR)), generator=gen)


def child(cfg: dict[str, Any]) -> dict[str, Any]:
    """Build one configuration, warm up, time it; the result as a JSON-able dict."""
    threads = runtime.set_num_threads(cfg["threads"])
    kind, precision, device = cfg["kind"], cfg["precision"], cfg["device"]
    fd, nr, seed = cfg["feature_dim"], cfg["num_repeat"], cfg["seed"]
    if kind in ("bsrnn", "baseline"):
        ours, baselines = per_target_networks(fd, nr, seed)
        models = ours if kind == "bsrnn" else baselines
        del ours, baselines
        sep = make_separator(models, precision, cfg["force_bf16"], device, cfg["batch_chunks"])
        params = sum(p.numel() for m in models for p in m.parameters())
        run = sep
    elif kind == "simo":
        torch.manual_seed(seed)
        model = make_simo_model(fd, nr)
        if model is None:
            return {"skip": "not available yet"}
        sep = make_separator([model.eval()], precision, cfg["force_bf16"], device,
                             cfg["batch_chunks"])  # fmt: skip
        params = sum(p.numel() for p in model.parameters())
        run = sep
    elif kind == "htdemucs":
        from demucs.apply import apply_model
        from demucs.htdemucs import HTDemucs

        torch.manual_seed(seed)
        random.seed(seed)  # apply_model's random shift
        model = HTDemucs(**HTDEMUCS_KWARGS).eval()
        params = sum(p.numel() for p in model.parameters())

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return apply_model(model, x, device=device)

    else:
        raise ValueError(f"unknown configuration kind {kind!r}")
    gc.collect()

    mix = mixture(cfg["seconds"], seed)[None]  # [1, 2, T]
    run(mixture(cfg["warmup_seconds"], seed + 1)[None])
    gc.collect()
    exact = _reset_peak_rss()
    before = _status_kib("VmRSS")
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times, out = [], None
    for _ in range(cfg["repeats"]):
        out = None
        gc.collect()
        t0 = time.perf_counter()
        out = run(mix)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = _status_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert out is not None
    if cfg.get("save"):
        torch.save(out.float(), cfg["save"])
    return {
        "best_s": min(times),
        "times": times,
        "params": params,
        "threads": threads,
        "peak_rss_mib": peak / 1024,
        "rss_growth_mib": (peak - before) / 1024,
        "exact_peak": exact,
        "gpu_peak_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "out_shape": list(out.shape),
    }


# --------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------
def run_child(cfg: dict[str, Any], threads: int) -> dict[str, Any]:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }
    cmd = [sys.executable, __file__, "--child", json.dumps(cfg)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        error = lines[-1] if lines else f"exit code {proc.returncode}"
        return {"error": error if len(error) <= 160 else error[:157] + "..."}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def snr_db(est_path: str, ref_path: str) -> tuple[float, float]:
    """Mean and min over stems of ``10 log10(|ref|^2 / |est - ref|^2)``."""
    est, ref = torch.load(est_path), torch.load(ref_path)
    if est.shape != ref.shape:
        raise ValueError(f"outputs differ in shape: {tuple(est.shape)} vs {tuple(ref.shape)}")
    dims = tuple(d for d in range(est.dim()) if d != 1)  # per stem
    num = ref.pow(2).sum(dims)
    den = (est - ref).pow(2).sum(dims).clamp_min(1e-30)
    snr = 10 * torch.log10(num / den)
    return float(snr.mean()), float(snr.min())


def machine_line(threads: int) -> str:
    bf16, reason = runtime.cpu_bf16_support()
    demucs = "not installed"
    if importlib.util.find_spec("demucs") is not None:
        import demucs

        demucs = getattr(demucs, "__version__", "?")
    return (
        f"machine: {runtime.cpu_model()} ({runtime.physical_cores()} physical cores available, "
        f"native bf16: {'yes' if bf16 else 'no'}, {reason}), {threads} torch thread(s), "
        f"torch {torch.__version__}, demucs {demucs}, Python {platform.python_version()}, "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="mixture length")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: per core)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs (best counts)")
    parser.add_argument("--warmup-seconds", type=float, default=2.0)
    parser.add_argument("--feature-dim", type=int, default=64)
    parser.add_argument("--num-repeat", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--only", default="a,b,c,d,e", help="rows to run: comma-separated letters a-e"
    )
    parser.add_argument(
        "--force-bf16",
        action="store_true",
        help="run the bf16 rows even on a CPU without native bf16 (emulated: slow)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (GPU: peak GPU memory)")
    parser.add_argument(
        "--batch-chunks", type=int, default=None, help="chunks per forward (null: 1 CPU, 4 GPU)"
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child is not None:
        print(json.dumps(child(json.loads(args.child))))
        return

    threads = args.threads or runtime.physical_cores()
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    bf16_ok, bf16_reason = runtime.cpu_bf16_support()
    have_demucs = importlib.util.find_spec("demucs") is not None
    size = f"{args.feature_dim}/{args.num_repeat}"
    rows = [  # (key, letter, label, kind, precision, fp32 twin)
        ("a", "a", f"(a) bsrnn {size} x4 targets, fp32", "bsrnn", "fp32", None),
        ("b", "b", f"(b) bsrnn {size} x4 targets, bf16", "bsrnn", "bf16", "a"),
        ("c32", "c", "(c) simo-bsrnn, fp32", "simo", "fp32", None),
        ("c16", "c", "(c) simo-bsrnn, bf16", "simo", "bf16", "c32"),
        ("d", "d", "(d) htdemucs (apply_model defaults)", "htdemucs", "fp32", None),
        ("e", "e", f"(e) per-band baseline {size} x4, fp32", "baseline", "fp32", "a"),
    ]
    print(
        f"# 4-stem separation of {args.seconds:g} s stereo at {SR} Hz, best of {args.repeats} "
        f"after a {args.warmup_seconds:g} s warm-up, one process per row"
    )
    print(machine_line(threads), flush=True)

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_sep_") as tmp:
        for key, letter, label, kind, precision, _twin in rows:
            if letter not in only:
                continue
            on_cpu = args.device == "cpu"
            if precision == "bf16" and on_cpu and not bf16_ok and not args.force_bf16:
                results[key] = {"skip": f"n/a: {bf16_reason} (emulated bf16 is slower)"}
                continue
            if kind == "htdemucs" and not have_demucs:
                results[key] = {
                    "skip": "skipped: demucs not installed (pip install --no-deps -r "
                    "benchmarks/requirements.txt)"
                }
                continue
            cfg = {
                "kind": kind,
                "precision": precision,
                "force_bf16": bool(args.force_bf16),
                "device": args.device,
                "batch_chunks": args.batch_chunks,
                "threads": threads,
                "seconds": args.seconds,
                "warmup_seconds": args.warmup_seconds,
                "repeats": args.repeats,
                "feature_dim": args.feature_dim,
                "num_repeat": args.num_repeat,
                "seed": args.seed,
                "save": str(Path(tmp) / f"{key}.pt"),
            }
            print(f"... {label}", file=sys.stderr, flush=True)
            results[key] = run_child(cfg, threads)
        for key, *_rest, twin in rows:
            r = results.get(key, {})
            if twin and "best_s" in r and "best_s" in results.get(twin, {}):
                try:
                    r["snr"] = snr_db(str(Path(tmp) / f"{key}.pt"), str(Path(tmp) / f"{twin}.pt"))
                except (OSError, ValueError, RuntimeError) as err:
                    r["snr_error"] = str(err)

    t_demucs = results.get("d", {}).get("best_s")
    t_a = results.get("a", {}).get("best_s")
    print()
    print(
        "| configuration | params | wall s | audio s/s | speed vs HTDemucs | speed vs (a) "
        "| peak RSS MiB | RSS growth MiB | SNR vs fp32 twin dB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key, letter, label, *_rest in rows:
        if letter not in only:
            continue
        r = results.get(key, {})
        if "best_s" not in r:
            note = r.get("skip") or f"failed: {r.get('error', 'no result')}"
            print(f"| {label} | | | | | | | | {note} |")
            continue
        t = r["best_s"]
        vs_d = f"{t_demucs / t:.2f}x" if t_demucs else "-"
        vs_a = f"{t_a / t:.2f}x" if t_a else "-"
        snr = f"{r['snr'][0]:.1f} ({r['snr'][1]:.1f})" if "snr" in r else r.get("snr_error", "")
        mem = "" if r["exact_peak"] else " (process peak)"
        if r.get("gpu_peak_mib") is not None:
            mem += f", GPU {r['gpu_peak_mib']:.0f}"
        print(
            f"| {label} | {r['params'] / 1e6:.1f} M | {t:.2f} | {args.seconds / t:.2f} | {vs_d} "
            f"| {vs_a} | {r['peak_rss_mib']:.0f}{mem} | {r['rss_growth_mib']:.0f} | {snr} |"
        )
    print()
    print(
        "speed vs X: X's wall time / this row's (> 1: faster). SNR: bf16 rows against their "
        "fp32 twin, (e) against (a) (same weights: checks the two compute the same function)."
    )


if __name__ == "__main__":
    main()
