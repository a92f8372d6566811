"""Each preset's network against its per-band oracle: same weights, same function, which is faster.

For each preset (``--presets``, composed from ``conf/src_mod/``), our network and the plain
per-band oracle of ``tests/reference/`` hold the same random weights (the oracle's, mapped onto
ours: ``convert_reference_state_dict`` for BSRNN, MSST's reader for BS-/Mel-RoFormer), so they
compute the same function; the script checks that their fp32 outputs agree to ``--tolerance``
of the peak (exit 1 otherwise) before timing:

- ``forward``: a no-grad forward of ``--seconds`` of stereo audio, batch 1;
- ``train step``: forward, the architecture's own loss (BSRNN: t+tf L1; RoFormers: L1 +
  multi-resolution STFT), backward, Adam step, on ``--train-batch`` x ``--train-seconds``;

in fp32 and in bf16 autocast (``--precisions``; bf16 only where the device computes it natively,
``--force-bf16`` times emulated bf16 too). Measurements alternate between the two networks so
that they share the machine's noise; the median of ``--repeats`` counts, in process CPU time on
the CPU (``--clock wall`` for wall-clock; always wall on a GPU). Architectures without an oracle
(SCNet) are skipped with a note.

Optional sections: ``--four-stems`` (one ``simo-bsrnn`` forward against four per-target
``bsrnn`` forwards, ours), ``--separation`` (whole-track separation of ``bs-roformer`` against
``simo-bsrnn`` through the users' Separator, 10 s chunks and the RoFormer's own segment).

    python benchmarks/bench_model.py                                   # the full-size presets
    python benchmarks/bench_model.py --quick                           # tiny presets, seconds
    python benchmarks/bench_model.py --presets bs-roformer --precisions fp32 --no-train
    python benchmarks/bench_model.py --presets bsrnn bsrnn-opt simo-bsrnn --train-batch 2 \\
        --train-seconds 3 --four-stems --clock wall
    python benchmarks/bench_model.py --presets bs-roformer --separation --separation-seconds 30
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

import common  # noqa: F401  (first: puts src/ and the repository on sys.path)
import torch
from common import SR, STEMS
from torch import nn

from bsrnn.models import count_parameters

PRESETS = ["bsrnn", "bsrnn-opt", "simo-bsrnn", "bs-roformer-tiny", "bs-roformer"]
QUICK_PRESETS = ["bsrnn-tiny", "simo-bsrnn-tiny", "bs-roformer-tiny", "mel-roformer-tiny"]
DTYPES = {"fp32": None, "bf16": torch.bfloat16}


# --------------------------------------------------------------------------------------------
# The timed passes
# --------------------------------------------------------------------------------------------
def forward_fn(model: nn.Module, mixture: torch.Tensor, dtype, device) -> Callable[[], None]:
    def run() -> None:
        model.eval()
        with torch.no_grad(), common.autocast(device, dtype):
            common.outputs(model(mixture))

    return run


def train_fn(model, loss_fn, mixture, refs, dtype, device) -> Callable[[], None]:
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)

    def run() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with common.autocast(device, dtype):
            waves, stfts = common.outputs(model(mixture))
        kwargs = {} if stfts is None else {"est_stfts": stfts}
        loss_fn(waves.float(), refs, **kwargs).backward()
        optimizer.step()

    return run


def bench_preset(preset: str, args, device: torch.device) -> list[dict[str, Any]]:
    pair = common.oracle_pair(preset)
    if isinstance(pair, str):
        print(f"{preset}: skipped: {pair}", flush=True)
        return [{"preset": preset, "skipped": pair}]
    ours, oracle = pair
    loss_fn = common.preset_loss(ours).to(device)
    ours, oracle = ours.to(device), oracle.to(device)
    channels = ours.audio_channels or 2
    mixture = common.noise((1, channels, int(args.seconds * SR)), seed=1).to(device)
    error = common.agreement(ours, oracle, mixture)
    params = count_parameters(ours)
    print(f"{preset}: {params:,} parameters, {len(ours.targets)} target(s); fp32 outputs "
          f"agree to {error:.1e} of the peak", flush=True)  # fmt: skip
    rows: list[dict[str, Any]] = []
    if error > args.tolerance:
        rows.append({"preset": preset, "error": f"outputs differ by {error:.1e} of the peak"})
        return rows
    n = int(args.train_seconds * SR)
    train_mix = common.noise((args.train_batch, channels, n), seed=2).to(device)
    refs = common.noise((args.train_batch, len(ours.targets), channels, n), 3, 0.05).to(device)
    passes = [("forward", forward_fn, (mixture,))]
    if not args.no_train:
        passes.append(("train step", partial(train_fn, loss_fn=loss_fn), (train_mix, refs)))
    for precision in args.precisions:
        skip = common.bf16_skip(device, args.force_bf16) if precision == "bf16" else None
        for kind, make, inputs in passes:
            row: dict[str, Any] = {"preset": preset, "pass": kind, "precision": precision,
                                   "params": params, "agreement": error}  # fmt: skip
            rows.append(row)
            if skip:
                row["skipped"] = skip
                continue
            dtype = DTYPES[precision]
            if kind == "forward":
                fns = {"oracle": make(oracle, *inputs, dtype, device),
                       "ours": make(ours, *inputs, dtype, device)}  # fmt: skip
            else:
                fns = {"oracle": make(oracle, mixture=inputs[0], refs=inputs[1], dtype=dtype,
                                      device=device),
                       "ours": make(ours, mixture=inputs[0], refs=inputs[1], dtype=dtype,
                                    device=device)}  # fmt: skip
            try:
                times = common.interleaved(fns, args.repeats, device=device)
            except RuntimeError as err:
                row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:140]}"
                print(f"  {kind} {precision}: {row['error']}", flush=True)
                continue
            row.update(oracle_s=times["oracle"].median(args.clock),
                       ours_s=times["ours"].median(args.clock),
                       times={k: t.to_dict() for k, t in times.items()})  # fmt: skip
            print(f"  {kind} {precision}: oracle {row['oracle_s']:.3f} s, ours "
                  f"{row['ours_s']:.3f} s, x{row['oracle_s'] / row['ours_s']:.2f}",
                  flush=True)  # fmt: skip
    del ours, oracle
    gc.collect()
    return rows


def four_stems(args, device: torch.device) -> dict[str, Any]:
    """One SIMO forward against four per-target forwards (ours), same input and threads."""
    simo_name, single_name = ("simo-bsrnn-tiny", "bsrnn-tiny") if args.quick else (
        "simo-bsrnn", "bsrnn")  # fmt: skip
    simo = common.preset_model(simo_name).to(device).eval()
    singles = [common.preset_model(single_name, [f"src_mod.target={s}"]).to(device).eval()
               for s in STEMS]  # fmt: skip
    x = common.noise((1, 2, int(args.seconds * SR)), seed=2).to(device)

    def forward(models: list[nn.Module]) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                for m in models:
                    m(x)

        return run

    times = common.interleaved({"simo": forward([simo]), "four": forward(singles)},
                               args.repeats, device=device)  # fmt: skip
    return {"simo": simo_name, "single": single_name,
            "simo_params": count_parameters(simo),
            "four_params": sum(count_parameters(m) for m in singles),
            "simo_s": times["simo"].median(args.clock),
            "four_s": times["four"].median(args.clock)}  # fmt: skip


def separation(args, device: torch.device) -> list[dict[str, Any]]:
    """Whole-track separation through the users' Separator: bs-roformer (1 stem) against
    simo-bsrnn (4 stems) in 10 s chunks, and bs-roformer in its own segment."""
    from bsrnn.chunking import ChunkSettings
    from bsrnn.separator import Separator

    names = ("bs-roformer-tiny", "simo-bsrnn-tiny") if args.quick else (
        "bs-roformer", "simo-bsrnn")  # fmt: skip
    roformer = common.preset_model(names[0]).to(device).eval()
    simo = common.preset_model(names[1]).to(device).eval()
    mixture = common.noise((1, 2, int(args.separation_seconds * SR)), seed=0).to(device)
    rows = []
    for precision in args.precisions:
        if precision == "bf16" and common.bf16_skip(device, args.force_bf16):
            continue
        ten = ChunkSettings(segment_len=10.0)
        seps = {
            f"{names[0]}, 10 s chunks": Separator([roformer], device=device, chunking=ten,
                                                   precision=precision),
            f"{names[1]}, 10 s chunks": Separator([simo], device=device, chunking=ten,
                                                   precision=precision),
            f"{names[0]}, its own segment": Separator([roformer], device=device,
                                                       precision=precision),
        }  # fmt: skip

        def run(sep: Separator) -> Callable[[], None]:
            def go() -> None:
                with torch.no_grad():
                    sep(mixture)

            return go

        times = common.interleaved({k: run(s) for k, s in seps.items()}, args.repeats,
                                   device=device)  # fmt: skip
        for name, t in times.items():
            rows.append({"model": name, "precision": precision, "seconds": t.median(args.clock)})
            print(f"  separation {name} {precision}: {rows[-1]['seconds']:.1f} s", flush=True)
    return rows


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
def report(args, header: str, rows, stems, sep_rows) -> str:
    table = []
    for r in rows:
        if "oracle_s" in r:
            table.append([r["preset"], r["pass"], r["precision"], f"{r['oracle_s']:.3f}",
                          f"{r['ours_s']:.3f}", f"{r['oracle_s'] / r['ours_s']:.2f}x"])  # fmt: skip
        else:
            note = r.get("skipped") or r.get("error", "")
            table.append([r["preset"], r.get("pass", ""), r.get("precision", ""), note, "", ""])
    parts = [header, "",
             common.markdown_table(["preset", "pass", "precision", "per-band oracle (s)",
                                    "ours (s)", "oracle / ours"], table)]  # fmt: skip
    if stems:
        parts += ["", f"Four stems, forward {args.seconds:g} s (ours):", "",
                  common.markdown_table(
                      ["setup", "params", "time (s)", "speed-up"],
                      [[f"4 x {stems['single']} (vocals, bass, drums, other)",
                        f"{stems['four_params']:,}", f"{stems['four_s']:.3f}", "1.00x"],
                       [f"1 x {stems['simo']}", f"{stems['simo_params']:,}",
                        f"{stems['simo_s']:.3f}",
                        f"{stems['four_s'] / stems['simo_s']:.2f}x"]])]  # fmt: skip
    if sep_rows:
        parts += ["", f"Separating {args.separation_seconds:g} s of stereo through the "
                  "Separator (overlap 0.1):", "",
                  common.markdown_table(["model", "precision", "time (s)"],
                                        [[r["model"], r["precision"], f"{r['seconds']:.2f}"]
                                         for r in sep_rows])]  # fmt: skip
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--presets",
        nargs="+",
        default=None,
        help=f"default {' '.join(PRESETS)} (--quick: the tiny presets)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny presets, 2 s forward, 1 s train step, 2 repeats"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="forward: stereo seconds")
    parser.add_argument("--train-seconds", type=float, default=2.0)
    parser.add_argument("--train-batch", type=int, default=1)
    parser.add_argument("--no-train", action="store_true", help="forward only")
    parser.add_argument("--precisions", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    parser.add_argument(
        "--force-bf16",
        action="store_true",
        help="time bf16 on a CPU without native bf16 too (emulated; an LSTM "
        "fails there on CPUs without AVX-512)",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: per core)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default=None,
        help="process CPU time (CPU default) or wall-clock (GPU default)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=2e-6,
        help="largest fp32 difference, relative to the peak",
    )
    parser.add_argument(
        "--four-stems",
        action="store_true",
        help="also one simo-bsrnn forward against four bsrnn forwards",
    )
    parser.add_argument(
        "--separation",
        action="store_true",
        help="also bs-roformer against simo-bsrnn through the Separator",
    )
    parser.add_argument("--separation-seconds", type=float, default=30.0)
    parser.add_argument("--out", default=None, help="also write bench_model.md/.json there")
    args = parser.parse_args()  # fmt: skip
    if args.quick:
        args.seconds, args.train_seconds, args.repeats = 2.0, 1.0, 2
        args.separation_seconds = min(args.separation_seconds, 5.0)
    args.presets = args.presets or (QUICK_PRESETS if args.quick else PRESETS)
    device = torch.device(args.device)
    args.clock = "wall" if device.type == "cuda" else (args.clock or "cpu")
    threads = common.runtime.set_num_threads(args.threads)
    header = (f"{common.machine_line(device, threads)}\n\nforward: {args.seconds:g} s stereo, "
              f"batch 1; train step: {args.train_batch} x {args.train_seconds:g} s, the "
              f"architecture's loss, Adam; median of {args.repeats} interleaved repeats, "
              f"{'process CPU' if args.clock == 'cpu' else 'wall-clock'} time")  # fmt: skip
    print(header, flush=True)
    rows = [r for preset in args.presets for r in bench_preset(preset, args, device)]
    stems = four_stems(args, device) if args.four_stems else None
    sep_rows = separation(args, device) if args.separation else []
    text = report(args, header, rows, stems, sep_rows)
    print("\n" + text)
    common.write_results(args.out, "bench_model", text,
                         {"machine": common.machine_info(device, threads), "args": vars(args),
                          "rows": rows, "four_stems": stems, "separation": sep_rows})  # fmt: skip
    if any("error" in r and r["error"].startswith("outputs differ") for r in rows):
        sys.exit("bench_model: a network does not match its oracle (see the table)")


if __name__ == "__main__":
    main()
