"""Speed of our BS-RoFormer against the plain per-band baseline of MSST's computation.

For each preset (``bs-roformer-tiny``, ``bs-roformer``: MSST's MUSDB18 config, see
``conf/src_mod/``), our network and the per-band baseline
(``benchmarks/roformer_per_band_baseline.py``) hold the same weights (the baseline's, mapped
onto ours by the MSST reader), so they compute the same function; the script checks their
outputs agree (fp32, peak-relative error <= 2e-6) before timing. It times a no-grad forward on
``--seconds`` of stereo audio and a training step (forward, MSST's loss: L1 + multi-resolution
STFT, backward) on ``--train-seconds``, in fp32 and in bf16 autocast, one thread, batch 1, and
prints the medians and baseline / ours. Times are the process's CPU time (``--wall``: wall
clock), which other processes on a shared machine disturb less; measurements alternate between
the two networks so that they share the machine's noise.

``compare_separation`` times whole-track separation for any dict of model objects (e.g.
``bs-roformer`` against ``simo-bsrnn``); ``--separation`` runs it with a plain chunked loop.

    python benchmarks/bench_roformer.py [--quick] [--seconds 3] [--train-seconds 2]
        [--repeats 3] [--threads 1] [--presets bs-roformer-tiny bs-roformer] [--no-bf16]
        [--no-train] [--separation [--separation-seconds 30]]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import inspect
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

import torch
from roformer_per_band_baseline import PerBandRoformer
from torch import nn

from bsrnn.losses import MultiResolutionSTFTLoss
from bsrnn.models.roformer import BSRoformer, BSRoformerConfig
from bsrnn.models.roformer_msst import msst_to_state_dict

SR = 44100

#: The clock every measurement reads (``--wall`` switches to wall-clock time).
CLOCK: Callable[[], float] = time.process_time

#: The options of a preset the baseline does not take (they are not network options).
REPO = Path(__file__).resolve().parents[1]

_NOT_BASELINE = {
    "arch", "targets", "sample_rate", "segment", "dim_freqs_in", "flash_attn", "num_stems",
    "use_torch_checkpoint", "multi_stft_resolution_loss_weight", "stft_window_fn",
    "multi_stft_resolutions_window_sizes", "multi_stft_hop_size", "multi_stft_normalized",
}  # fmt: skip


def cpu_model() -> str:
    """The CPU's model name and its bf16 / AVX-512 flags (``/proc/cpuinfo``), else what
    ``platform`` says."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    shown = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{name} ({', '.join(shown) or 'no AVX-512'})"


def preset_options(name: str) -> dict:
    """The options of preset ``conf/src_mod/<name>.yaml``, composed as train.py does."""
    from hydra import compose, initialize_config_dir

    from bsrnn.cli import build_settings, register_schemas

    register_schemas()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose("config", overrides=[f"src_mod={name}"])
    return dict(build_settings(cfg).preset)


def build_pair(preset: str, seed: int = 0) -> tuple[BSRoformer, PerBandRoformer]:
    """Our network and the per-band baseline of ``preset`` with the same (random) weights."""
    options = preset_options(preset)
    torch.manual_seed(seed)
    ours = BSRoformer(BSRoformerConfig.from_mapping(options))
    baseline_args = inspect.signature(PerBandRoformer).parameters
    kwargs = {
        k: v
        for k, v in ours.config.to_dict().items()
        if k in baseline_args and k not in _NOT_BASELINE
    }
    base = PerBandRoformer(mel=False, num_stems=ours.config.num_stems, **kwargs)
    with torch.no_grad():  # norm gains away from 1, so that a mix-up would show
        for name, p in base.named_parameters():
            if name.endswith("gamma"):
                p.add_(torch.rand(p.shape) - 0.5)
    ours.load_state_dict(msst_to_state_dict(base.state_dict(), ours))
    return ours, base


def _waveforms(out: torch.Tensor | Mapping) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out["waveforms"]


def _autocast(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def _forward_time(model: nn.Module, mixture: torch.Tensor, bf16: bool) -> float:
    model.eval()
    with torch.no_grad(), _autocast(bf16):
        start = CLOCK()
        _waveforms(model(mixture))
        return CLOCK() - start


def _train_time(
    model: nn.Module, mixture: torch.Tensor, target: torch.Tensor, loss: nn.Module, bf16: bool
) -> float:
    model.train()
    model.zero_grad(set_to_none=True)
    start = CLOCK()
    with _autocast(bf16):
        est = _waveforms(model(mixture)).float()
    value = (est - target).abs().mean() + loss(est, target)
    value.backward()
    return CLOCK() - start


def _interleaved(fns: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Median time of each function, run alternately after one warm-up call each."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(fn())
            gc.collect()
    return {name: statistics.median(t) for name, t in times.items()}


def check_agreement(ours: nn.Module, base: nn.Module, mixture: torch.Tensor) -> float:
    """Peak-relative difference of the two networks' fp32 outputs."""
    ours.eval()
    base.eval()
    with torch.no_grad():
        a, b = _waveforms(ours(mixture)), _waveforms(base(mixture))
    return ((a - b).abs().max() / b.abs().max()).item()


def compare_separation(
    models: Mapping[str, nn.Module],
    seconds: float = 30.0,
    separate: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
    repeats: int = 1,
    bf16: bool = False,
) -> dict[str, float]:
    """Median seconds each model takes to separate ``seconds`` of stereo noise with
    ``separate(model, mixture [1, 2, T]) -> [1, S, 2, T]`` (default: :func:`chunked`)."""
    separate = separate or chunked
    torch.manual_seed(0)
    mixture = torch.randn(1, 2, int(seconds * SR)) * 0.1

    def timer(model: nn.Module) -> Callable[[], float]:
        def run() -> float:
            model.eval()
            with torch.no_grad(), _autocast(bf16):
                start = CLOCK()
                separate(model, mixture)
                return CLOCK() - start

        return run

    return _interleaved({name: timer(m) for name, m in models.items()}, repeats)


def chunked(model: nn.Module, mixture: torch.Tensor, default_segment: int = 10 * SR):
    """A plain separation loop: consecutive chunks of the model's ``segment_samples`` (the
    last one zero-padded), no overlap. The integrator's Separator is the real one."""
    segment = getattr(model, "segment_samples", None) or default_segment
    length = mixture.shape[-1]
    outs = []
    for start in range(0, length, segment):
        chunk = mixture[..., start : start + segment]
        pad = segment - chunk.shape[-1]
        if pad:
            chunk = torch.nn.functional.pad(chunk, (0, pad))
        out = _waveforms(model(chunk))
        outs.append(out[..., : segment - pad])
    return torch.cat(outs, -1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s forward, 1 s train, 3 repeats")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--train-seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--presets", nargs="+", default=["bs-roformer-tiny", "bs-roformer"])
    parser.add_argument("--no-bf16", action="store_true")
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--wall", action="store_true", help="wall-clock instead of CPU time")
    parser.add_argument("--separation", action="store_true")
    parser.add_argument("--separation-seconds", type=float, default=30.0)
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.train_seconds, args.repeats = 2.0, 1.0, 3
    torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = time.perf_counter if args.wall else time.process_time

    print(f"CPU: {cpu_model()}; torch {torch.__version__}; {args.threads} thread(s)")
    print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"forward: {args.seconds} s stereo, train step: {args.train_seconds} s stereo, batch 1, "
          f"median of {args.repeats} interleaved repeats, "
          f"{'wall-clock' if args.wall else 'CPU'} time")  # fmt: skip
    precisions = [False] if args.no_bf16 else [False, True]
    rows = []
    for preset in args.presets:
        ours, base = build_pair(preset)
        torch.manual_seed(1)
        mixture = torch.randn(1, 2, int(args.seconds * SR)) * 0.1
        error = check_agreement(ours, base, mixture)
        print(f"{preset}: fp32 outputs agree to {error:.1e} of the peak")
        assert error <= 2e-6, f"{preset}: outputs differ by {error:.1e} of the peak"
        for bf16 in precisions:
            dtype = "bf16" if bf16 else "fp32"
            t = _interleaved(
                {
                    "baseline": partial(_forward_time, base, mixture, bf16),
                    "ours": partial(_forward_time, ours, mixture, bf16),
                },
                args.repeats,
            )
            rows.append((preset, "forward", dtype, t["baseline"], t["ours"]))
            print(f"  {rows[-1][1]} {dtype}: baseline {t['baseline']:.3f} s, ours "
                  f"{t['ours']:.3f} s, x{t['baseline'] / t['ours']:.2f}")  # fmt: skip
            if args.no_train:
                continue
            train_mix = torch.randn(1, 2, int(args.train_seconds * SR)) * 0.1
            target = torch.randn(1, ours.config.num_stems, 2, train_mix.shape[-1]) * 0.05
            loss = MultiResolutionSTFTLoss.from_spec(
                ours.loss_preference.multi_resolution, ours.config.stft_n_fft
            )
            t = _interleaved(
                {
                    "baseline": partial(_train_time, base, train_mix, target, loss, bf16),
                    "ours": partial(_train_time, ours, train_mix, target, loss, bf16),
                },
                args.repeats,
            )
            rows.append((preset, "train step", dtype, t["baseline"], t["ours"]))
            print(f"  {rows[-1][1]} {dtype}: baseline {t['baseline']:.3f} s, ours "
                  f"{t['ours']:.3f} s, x{t['baseline'] / t['ours']:.2f}")  # fmt: skip
        del ours, base
        gc.collect()

    print("\n| preset | pass | precision | per-band baseline (s) | ours (s) | baseline / ours |")
    print("|---|---|---|---|---|---|")
    for preset, kind, dtype, tb, to in rows:
        print(f"| {preset} | {kind} | {dtype} | {tb:.3f} | {to:.3f} | {tb / to:.2f}x |")

    if args.separation:
        from bsrnn.chunking import ChunkSettings
        from bsrnn.models import build_model
        from bsrnn.separator import Separator

        simo = build_model({"arch": "bsrnn", "targets": ["vocals", "bass", "drums", "other"],
                            "subtract_last_trgt": True})  # fmt: skip
        bs, _ = build_pair("bs-roformer")
        print(f"\nseparating {args.separation_seconds:.0f} s of stereo through the users' "
              "Separator (default chunking: 10 s, overlap 0.1), median of "
              f"{args.repeats} interleaved repeats")  # fmt: skip
        for precision in ["fp32"] if args.no_bf16 else ["fp32", "bf16"]:

            def separate(model, mixture, precision=precision):
                ten = ChunkSettings(segment_len=10.0)
                return Separator([model], chunking=ten, precision=precision)(mixture)

            times = compare_separation({"bs-roformer": bs, "simo-bsrnn": simo},
                                       args.separation_seconds, separate=separate,
                                       repeats=args.repeats)  # fmt: skip

            def separate_preferred(model, mixture, precision=precision):
                # eval.segment_len null: the model's own segment
                return Separator([model], precision=precision)(mixture)

            times.update(
                compare_separation(
                    {"bs-roformer, its own 2.98 s chunks": bs},
                    args.separation_seconds,
                    separate=separate_preferred,
                    repeats=args.repeats,
                )  # fmt: skip
            )
            for name, seconds in times.items():
                print(f"| {name} | {precision} | {seconds:.1f} s |")
            print(f"  simo-bsrnn (4 stems) / bs-roformer (1 stem): "
                  f"{times['bs-roformer'] / times['simo-bsrnn']:.2f}x faster")  # fmt: skip


if __name__ == "__main__":
    main()
