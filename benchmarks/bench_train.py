"""Training-step time of BSRNN models (forward, t+tf L1 loss, backward, clipping, Adam step).

    python benchmarks/bench_train.py                                  # bsrnn, bsrnn-large on CPU
    python benchmarks/bench_train.py --models bsrnn --steps 5
    python benchmarks/bench_train.py --device cuda --precision bf16-mixed --compile
    python benchmarks/bench_train.py --threads 1     # on a CPU shared with other jobs

Batches are random audio of ``--batch`` examples x ``--seconds`` seconds (stereo, 44.1 kHz) as
in training (paper: batch 2 x 3 s per GPU). Models are read from conf/src_mod/<name>.yaml.
Prints one row per model: parameters, mean/min step time, audio seconds trained per second and
peak memory (CUDA: allocated on the device; CPU: the process's peak RSS so far, so run one model
per invocation to compare). bsrnn-large at batch 2 x 3 s needs about 20 GiB of RAM on the CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from bsrnn import BSRNN  # noqa: E402
from bsrnn.losses import SeparationLoss  # noqa: E402

PRECISIONS = {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def load_model_config(name: str, sample_rate: int) -> dict:
    path = REPO / "conf" / "src_mod" / f"{name}.yaml"
    if not path.is_file():
        valid = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise SystemExit(f"unknown model {name!r}: expected one of {', '.join(valid)}")
    root = OmegaConf.create({"sample_rate": sample_rate, "src_mod": OmegaConf.load(path)})
    return OmegaConf.to_container(root.src_mod, resolve=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(name: str, args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(0)
    config = load_model_config(name, args.sample_rate)
    net = BSRNN.from_config(config).to(device).train()
    n_params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    loss_fn = SeparationLoss("L1", "t+tf", n_fft=net.n_fft, n_hop=net.n_hop).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-4)
    dtype = PRECISIONS[args.precision]
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    forward = torch.compile(net) if args.compile else net

    n = int(args.seconds * args.sample_rate)
    sources = 0.1 * torch.randn(args.batch, 1, 2, n, device=device)
    mixture = sources[:, 0] + 0.1 * torch.randn(args.batch, 2, n, device=device)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        autocast = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        with autocast:
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
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    mean = statistics.fmean(times)
    return {
        "model": name,
        "params": n_params,
        "steps": steps,
        "mean_s": mean,
        "min_s": min(times),
        "audio_s_per_s": args.batch * args.seconds / mean,
        "peak_gib": (
            torch.cuda.max_memory_allocated(device) / 2**30
            if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # process, so far
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["bsrnn", "bsrnn-large"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=list(PRECISIONS), default="32")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--sample-rate", type=int, default=44100)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--large-steps", type=int, default=2, help="timed steps of bsrnn-large")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device available")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        where = torch.cuda.get_device_name(torch.device(args.device))
    else:
        where = f"CPU, {torch.get_num_threads()} threads"
    print(
        f"# train step: batch {args.batch} x {args.seconds:g} s stereo, t+tf L1, Adam, clip 5; "
        f"{where}; precision {args.precision}; compile {args.compile}; torch {torch.__version__}",
        flush=True,
    )
    header = f"{'model':<12} {'params':>11} {'steps':>5} {'mean s/step':>11} {'min s/step':>10} "
    header += f"{'audio s/s':>9} {'peak GiB':>8}"
    print(header, flush=True)
    for name in args.models:
        r = bench(name, args)
        peak = f"{r['peak_gib']:.2f}"
        print(
            f"{r['model']:<12} {r['params']:>11,} {r['steps']:>5} {r['mean_s']:>11.3f} "
            f"{r['min_s']:>10.3f} {r['audio_s_per_s']:>9.2f} {peak:>8}",
            flush=True,
        )


if __name__ == "__main__":
    main()
