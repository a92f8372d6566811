"""SCNet's speed side by side: four-stem separation against HTDemucs, and the training step
against BS-RoFormer and SIMO-BSRNN.

Separation (``--mode separate``): the same stereo mixture (``--seconds``, default 30 s, random
audio, 44.1 kHz) into drums, bass, other and vocals with

  * ``scnet`` (the ``scnet`` preset: MSST's config_musdb18_scnet.yaml, random weights) through
    ``bsrnn.separator.Separator`` (its chunking: the model's 11 s segments), in fp32 and in the
    precision ``auto`` picks (bf16 only where a probe shows it faster; fp32 on a CPU without
    native bf16);
  * HTDemucs (random weights) through ``demucs.apply.apply_model`` with its defaults, as
    ``benchmarks/bench_separation.py`` runs it.

Training step (``--mode train``): one Adam step (forward, L1 on the waveforms, backward) of
``scnet``, ``bs-roformer`` and ``simo-bsrnn`` (their presets, random weights) at the same batch
and segment (default 1 x 3 s).

Each configuration runs in a fresh process with ``--threads`` torch threads (default 1): one
warm-up, then ``--repeats`` timed runs; the best counts. ``--profile`` also prints where
SCNet's separation time goes (torch.profiler, grouped: LSTMs, convolutions, FFT/STFT, rest).

    python benchmarks/bench_scnet.py                       # both modes, 30 s, 1 thread
    python benchmarks/bench_scnet.py --mode separate --seconds 10 --repeats 1 --profile
    python benchmarks/bench_scnet.py --quick               # tiny presets: seconds
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import common  # noqa: F401  (first: puts src/ and the repository on sys.path)
import torch

from bsrnn import runtime

TRAIN_MODELS = ("scnet", "bs-roformer", "simo-bsrnn")


def profile_groups(run, mix: torch.Tensor) -> dict[str, float]:
    """Seconds of self CPU time per kind of operator during ``run(mix)``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run(mix)
    groups: dict[str, float] = {}
    for event in prof.key_averages():
        name = event.key.lower()
        if "rnn" in name or "lstm" in name:
            group = "LSTM"
        elif "conv" in name:
            group = "convolutions"
        elif "fft" in name or "stft" in name:
            group = "FFT / STFT"
        elif name in ("aten::copy_", "aten::cat", "aten::clone", "aten::contiguous"):
            group = "copies / cat"
        elif "group_norm" in name or "native_group_norm" in name:
            group = "GroupNorm"
        else:
            group = "other"
        groups[group] = groups.get(group, 0.0) + event.self_cpu_time_total / 1e6
    return dict(sorted(groups.items(), key=lambda kv: -kv[1]))


def child_separate(cfg: dict[str, Any]) -> dict[str, Any]:
    from bsrnn.separator import Separator

    seed = cfg["seed"]
    if cfg["kind"] == "htdemucs":
        model, run = common.htdemucs(seed)
        precision = "fp32"
    else:
        model = common.preset_model(cfg["kind"], seed=seed).eval()
        sep = Separator([model], precision=cfg["precision"])
        precision = sep.resolve_precision()
        run = sep
    params = sum(p.numel() for p in model.parameters())
    mix = common.mixture(cfg["seconds"], seed)[None]
    run(common.mixture(cfg["warmup_seconds"], seed + 1)[None])
    times = common.best_of(lambda: run(mix), cfg["repeats"], warmup=0)
    result = {"best_s": times.best("wall"), "params": params, "precision": precision}
    if cfg.get("profile"):
        result["profile"] = profile_groups(run, mix)
    return result


def child_train(cfg: dict[str, Any]) -> dict[str, Any]:
    net = common.preset_model(cfg["kind"], seed=cfg["seed"]).train()
    channels = net.audio_channels or 2
    n = int(round(cfg["seconds"] * net.sample_rate))
    mix = 0.1 * torch.randn(cfg["batch"], channels, n)
    ref = 0.1 * torch.randn(cfg["batch"], len(net.targets), channels, n)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = (net(mix).waveforms - ref).abs().mean()
        loss.backward()
        opt.step()

    times = common.best_of(step, cfg["repeats"], warmup=cfg["warmup"])
    return {"best_s": times.best("wall"), "params": sum(p.numel() for p in net.parameters()),
            "stems": len(net.targets)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("separate", "train", "both"), default="both")
    parser.add_argument("--seconds", type=float, default=30.0, help="separation: mixture length")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--warmup-seconds", type=float, default=11.0)
    parser.add_argument("--train-batch", type=int, default=1)
    parser.add_argument("--train-seconds", type=float, default=3.0)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny presets, 2 s separation, 1 s train step, 1 repeat",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()  # fmt: skip
    scnet, train_models = "scnet", TRAIN_MODELS
    if args.quick:
        scnet, train_models = "scnet-tiny", tuple(f"{m}-tiny" for m in TRAIN_MODELS)
        args.seconds, args.warmup_seconds, args.repeats = 2.0, 1.0, 1
        args.train_seconds, args.train_steps = 1.0, 1
    if args.child:
        cfg = json.loads(args.child)
        runtime.set_num_threads(cfg["threads"])
        fn = child_train if cfg["mode"] == "train" else child_separate
        print(json.dumps(fn(cfg)))
        return

    print(common.machine_line("cpu", args.threads))
    if args.mode in ("separate", "both"):
        print(f"\nfour-stem separation of {args.seconds:g} s stereo, {args.threads} thread(s)")
        print("| configuration | precision | time (s) | x real time | speed vs HTDemucs |")
        print("|---|---|---|---|---|")
        rows = [("htdemucs", "fp32"), (scnet, "fp32"), (scnet, "auto")]
        results = {}
        for kind, precision in rows:
            cfg = dict(mode="separate", kind=kind, precision=precision, seconds=args.seconds,
                       warmup_seconds=args.warmup_seconds, repeats=args.repeats,
                       seed=args.seed, profile=args.profile and kind == scnet
                       and precision == "fp32")  # fmt: skip
            results[(kind, precision)] = res = common.run_child(
                __file__, {**cfg, "threads": args.threads}, args.threads
            )
            if "error" in res:
                print(f"| {kind} ({precision}) | - | error: {res['error']} | | |")
                continue
            base = results[("htdemucs", "fp32")].get("best_s")
            speed = f"{base / res['best_s']:.2f}x" if base else "-"
            print(f"| {kind} (precision={precision}, {res['params']:,} params) | "
                  f"{res['precision']} | {res['best_s']:.2f} | "
                  f"{res['best_s'] / args.seconds:.3f} | {speed} |")  # fmt: skip
            if "profile" in res:
                total = sum(res["profile"].values())
                parts = ", ".join(f"{k} {v:.2f} s ({100 * v / total:.0f} %)"
                                  for k, v in res["profile"].items())  # fmt: skip
                print(f"|   profile of {scnet} fp32 (self CPU time) | | {parts} | | |")
    if args.mode in ("train", "both"):
        print(f"\ntraining step (forward + L1 + backward + Adam), batch {args.train_batch} x "
              f"{args.train_seconds:g} s stereo, {args.threads} thread(s)")  # fmt: skip
        print("| preset | stems | parameters | step (s) |")
        print("|---|---|---|---|")
        for name in train_models:
            cfg = dict(mode="train", kind=name, batch=args.train_batch,
                       seconds=args.train_seconds, warmup=1, repeats=args.train_steps,
                       seed=args.seed)  # fmt: skip
            res = common.run_child(__file__, {**cfg, "threads": args.threads}, args.threads)
            if "error" in res:
                print(f"| {name} | | | error: {res['error']} |")
                continue
            print(f"| {name} | {res['stems']} | {res['params']:,} | {res['best_s']:.2f} |")


if __name__ == "__main__":
    main()
