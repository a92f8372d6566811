"""Training-step time of any preset (BSRNN, RoFormers) in fp32 and in mixed precision, in the
same run.

One step: forward, the architecture's loss (BSRNN: t+tf L1; RoFormers: MSST's), backward,
gradient clipping (5), Adam step. Each model is timed in fp32 (``32-true``) and then in
``--precision`` (default ``bf16-mixed``: forward and loss under
``torch.autocast(<device>, dtype=torch.bfloat16)``, as Lightning's bf16-mixed does; weights,
gradients and the optimizer stay fp32), from the same initial weights, and the speed ratio is
printed. A precision the device cannot run well is reported as n/a with the reason (bf16 on a
CPU without native bf16 is emulated and slower than fp32: ``--force-bf16`` times it anyway;
fp16 autocast does not exist on the CPU).

    python benchmarks/bench_train.py                                  # bsrnn, bsrnn-large on CPU
    python benchmarks/bench_train.py --models bsrnn --steps 5
    python benchmarks/bench_train.py --models bsrnn-tiny --batch 1 --seconds 1 --steps 1
    python benchmarks/bench_train.py --device cuda --models bsrnn-large bsrnn-opt simo-bsrnn-opt
    python benchmarks/bench_train.py --device cuda --compile --models bsrnn-large bsrnn-opt \
        simo-bsrnn-opt                  # the non-recurrent parts compiled
    python benchmarks/bench_train.py --threads 1     # on a CPU shared with other jobs

Batches are random audio of ``--batch`` examples x ``--seconds`` seconds (stereo, 44.1 kHz) as
in training (paper: batch 2 x 3 s per GPU). Models are read from conf/src_mod/<name>.yaml.
Prints one row per model and precision: parameters, mean/min step time, audio seconds trained
per second, peak memory (CUDA: allocated on the device; CPU on Linux: the process's resident
set high-water mark during that row's steps, reset before each row; it includes Python, torch
and the model) and the speed against fp32. bsrnn-large at batch 2 x 3 s needs about 20 GiB of
RAM on the CPU.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import common  # noqa: F401  (first: puts src/ and the repository on sys.path)
import torch

from bsrnn import runtime
from bsrnn.errors import ConfigError

#: Autocast dtype of each Lightning precision this benchmark times.
PRECISIONS = {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def make_model(name: str, sample_rate: int) -> torch.nn.Module:
    """The network of preset ``conf/src_mod/<name>.yaml`` with random weights."""
    return common.preset_model(name, [f"sample_rate={sample_rate}"], seed=None)


def compile_non_rnn(net: torch.nn.Module) -> torch.nn.Module:
    """``torch.compile`` the parts of a BSRNN around its recurrent layers (band split, TAC,
    attention, mask decoders); the LSTM/GRU layers stay eager (cuDNN/oneDNN kernels)."""
    net.band_split = torch.compile(net.band_split)
    for block in net.blocks:
        for name in ("tac", "attention"):
            if getattr(block, name) is not None:
                setattr(block, name, torch.compile(getattr(block, name)))
    net.maskers = torch.nn.ModuleList(torch.compile(m) for m in net.maskers)
    return net


def usable(precision: str, device: torch.device, force_bf16: bool) -> str | None:
    """None when ``precision`` can be timed on ``device``, else why not."""
    if precision == "32":
        return None
    accelerator = "cuda" if device.type == "cuda" else device.type
    try:
        chosen = runtime.training_precision(precision, accelerator)
    except ConfigError as err:
        return str(err)
    if chosen != precision and not force_bf16:
        _, reason = runtime.cpu_bf16_support()
        return f"n/a: {reason} (emulated bf16 is slower than fp32; --force-bf16 times it)"
    return None


def bench(name: str, precision: str, args: argparse.Namespace) -> dict[str, Any]:
    """Time ``--steps`` training steps of preset ``name`` in ``precision``."""
    device = torch.device(args.device)
    torch.manual_seed(0)  # the same initial weights and batch for every precision
    net = make_model(name, args.sample_rate).to(device).train()
    n_params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    loss_fn = common.preset_loss(net).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-4)
    dtype = PRECISIONS[precision]
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    forward = net
    if args.compile:  # BSRNN: around its recurrent layers; others (RoFormers): whole
        forward = compile_non_rnn(net) if hasattr(net, "blocks") else torch.compile(net)

    n = int(args.seconds * args.sample_rate)
    n_targets = len(getattr(net, "targets", [None]))
    sources = 0.1 * torch.randn(args.batch, n_targets, 2, n, device=device)
    mixture = sources.sum(1) + 0.1 * torch.randn(args.batch, 2, n, device=device)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with common.autocast(device, dtype):  # forward and loss, as Lightning's *-mixed precisions
            out = forward(mixture)
            loss = loss_fn(out.waveforms.float(), sources, est_stfts=out.stfts)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        scaler.step(optimizer)
        scaler.update()
        return float(loss.detach())

    steps = args.steps if name != "bsrnn-large" else max(1, args.large_steps)
    for _ in range(args.warmup):
        step()
    common.sync(device)
    exact = device.type == "cpu" and common.reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, losses = [], []
    for _ in range(steps):
        start = time.perf_counter()
        losses.append(step())
        common.sync(device)
        times.append(time.perf_counter() - start)
    mean = statistics.fmean(times)
    return {
        "params": n_params,
        "steps": steps,
        "mean_s": mean,
        "min_s": min(times),
        "audio_s_per_s": args.batch * args.seconds / mean,
        "loss": losses[-1],
        "peak_gib": (
            torch.cuda.max_memory_allocated(device) / 2**30
            if device.type == "cuda"
            else common.peak_rss_mib(exact) / 1024
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["bsrnn", "bsrnn-large"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--precision",
        choices=list(PRECISIONS),
        default="bf16-mixed",
        help="timed after fp32 (32: fp32 only)",
    )
    parser.add_argument("--force-bf16", action="store_true", help="time emulated bf16 too")
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the non-recurrent parts"
    )
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--sample-rate", type=int, default=44100)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--large-steps", type=int, default=2, help="timed steps of bsrnn-large")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (0: cores)")
    parser.add_argument(
        "--matmul-precision",
        choices=list(runtime.MATMUL_PRECISIONS),
        default="highest",
        help="as trainer.matmul_precision: highest (true fp32, training's default) or high (TF32)",
    )
    args = parser.parse_args()
    runtime.apply_matmul_precision(args.matmul_precision)  # the same setting training applies
    if args.threads is not None:
        runtime.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available")
    print(common.machine_line(device), flush=True)
    print(
        f"# train step: batch {args.batch} x {args.seconds:g} s stereo, the architecture's loss, "
        f"Adam, clip 5; compile {args.compile}; matmul precision {args.matmul_precision}",
        flush=True,
    )
    precisions = ["32"] if args.precision == "32" else ["32", args.precision]
    header = f"{'model':<16} {'precision':<10} {'params':>11} {'steps':>5} {'mean s/step':>11} "
    header += f"{'min s/step':>10} {'audio s/s':>9} {'peak GiB':>8} {'vs fp32':>8}"
    print(header, flush=True)
    for name in args.models:
        base: float | None = None
        for precision in precisions:
            why = usable(precision, device, args.force_bf16)
            if why is not None:
                print(f"{name:<16} {precision:<10} {why}", flush=True)
                continue
            try:
                r = bench(name, precision, args)
            except RuntimeError as err:
                msg = str(err).splitlines()[0][:140]
                print(f"{name:<16} {precision:<10} failed: {type(err).__name__}: {msg}", flush=True)
                continue
            if precision == "32":
                base = r["mean_s"]
            ratio = f"{base / r['mean_s']:.2f}x" if base else "-"
            print(
                f"{name:<16} {precision:<10} {r['params']:>11,} {r['steps']:>5} "
                f"{r['mean_s']:>11.3f} {r['min_s']:>10.3f} {r['audio_s_per_s']:>9.2f} "
                f"{r['peak_gib']:>8.2f} {ratio:>8}",
                flush=True,
            )


if __name__ == "__main__":
    main()
