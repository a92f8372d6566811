"""What the separation options cost and bring: TTA, Wiener filtering, overlap, batch_chunks.

Quality (``--model-dir``, default the demo's ``outputs/simo-bsrnn-tiny``, on the stand-in test
set ``data/toy/test``; ``make demo`` makes both): uSDR (mean over tracks) and cSDR (median over
1 s frames, then over tracks) per stem, and the separation time of the whole test set relative
to the plain separation, for

  plain (10 s segments, overlap 0.1: the reference's procedure), TTA, Wiener 1 and 2 EM
  iterations, Wiener 1 with a residual source, overlap 0.25 and 0.5, and bf16.

Speed (random weights of the ``simo-bsrnn`` preset, 64/8, 20.9 M parameters; stereo noise):
the separation of a ``--speed-seconds`` track (default 180) with ``batch_chunks`` 1 / 2 / 4 at
1 and 2 threads; then the cost of TTA and Wiener on the same network (``--cost-seconds``,
default 30 s, ``--cost-threads``). Each row is one timed run after a warm-up: the machine of the
table was shared, so the table states its load.

    python benchmarks/bench_separation_options.py                     # everything, -> stdout
    python benchmarks/bench_separation_options.py --write benchmarks/SEPARATION_OPTIONS.md
    python benchmarks/bench_separation_options.py --skip-speed        # quality table only
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402

from bsrnn.chunking import ChunkSettings  # noqa: E402
from bsrnn.data import DataSettings, read_track_audio  # noqa: E402
from bsrnn.evaluation import EvalSettings, score_track  # noqa: E402
from bsrnn.model_folder import load_separator  # noqa: E402
from bsrnn.models import build_model, count_parameters  # noqa: E402
from bsrnn.results import EvalResult  # noqa: E402
from bsrnn.runtime import cpu_bf16_support, cpu_model  # noqa: E402
from bsrnn.separate_cli import _preset_values, presets_dir  # noqa: E402
from bsrnn.separator import Separator  # noqa: E402

SR = 44100

#: (label, ChunkSettings kwargs, Separator kwargs) of the quality table.
VARIANTS = [
    ("plain (overlap 0.1)", {}, {}),
    ("TTA", {}, {"tta": True}),
    ("Wiener 1", {}, {"wiener_iterations": 1}),
    ("Wiener 2", {}, {"wiener_iterations": 2}),
    ("Wiener 1 + residual", {}, {"wiener_iterations": 1, "wiener_residual": True}),
    ("overlap 0.25", {"overlap": 0.25}, {}),
    ("overlap 0.5", {"overlap": 0.5}, {}),
    ("bf16", {}, {"precision": "bf16"}),
]


def quality(model_dir: Path, data_dir: Path, threads: int) -> str:
    torch.set_num_threads(threads)
    data = DataSettings(data_dir=data_dir)
    tracks = data.tracks("test")
    audio = {t.name: read_track_audio(t, list(data.sources)) for t in tracks}
    lines = []
    base_time = None
    rows = []
    targets: list[str] = []
    for label, chunk_kw, sep_kw in VARIANTS:
        sep = load_separator(model_dir, chunking=ChunkSettings(**chunk_kw), **sep_kw)
        if sep_kw.get("precision") == "bf16" and sep.precision != "bf16":
            rows.append((label, None, None, None))
            continue
        targets = sep.targets
        scores = {"usdr": {}, "csdr": {}}
        seconds = 0.0
        for t in tracks:
            mix, stems = audio[t.name]
            refs = stems[[list(data.sources).index(s) for s in targets]]
            t0 = time.perf_counter()
            est = sep.separate_audio(mix, t.sample_rate)
            seconds += time.perf_counter() - t0
            for kind in scores:
                sdr = score_track(
                    refs,
                    est,
                    t.sample_rate,
                    EvalSettings(sdr_type=kind),
                    names=targets,
                    track=t.name,
                )
                scores[kind][t.name] = dict(zip(targets, map(float, sdr)))
        results = {k: EvalResult(label, k, targets, v) for k, v in scores.items()}
        base_time = base_time or seconds
        rows.append((label, results, seconds, seconds / base_time))
        print(f"  {label}: {seconds:.1f} s", file=sys.stderr, flush=True)
    total = sum(t.frames / t.sample_rate for t in tracks)
    head = ["option"] + [f"uSDR {t}" for t in targets] + ["uSDR avg"]
    head += [f"cSDR {t}" for t in targets] + ["cSDR avg", "time", "x plain"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    for label, results, seconds, rel in rows:
        if results is None:
            lines.append(f"| {label} | " + " | ".join(["n/a"] * (len(head) - 1)) + " |")
            continue
        cells = [label]
        for kind in ("usdr", "csdr"):
            r = results[kind]
            cells += [f"{r.aggregate[t]:.2f}" for t in targets] + [f"{r.average:.2f}"]
        cells += [f"{seconds:.1f} s", f"{rel:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        f"{len(tracks)} test tracks of the stand-in set ({total:.0f} s of stereo audio), model "
        f"`{model_dir}`, {threads} thread(s); time: the separation of the whole test set "
        "(resampling, chunks, options), scoring excluded."
    )
    return note + "\n\n" + "\n".join(lines)


def simo_bsrnn() -> torch.nn.Module:
    folder = presets_dir()
    options = _preset_values(folder, "simo-bsrnn") if folder else {}
    options = {k: v for k, v in options.items() if k not in ("name", "target")}
    options.setdefault("targets", ["vocals", "bass", "drums", "other"])
    torch.manual_seed(0)
    return build_model(options).eval()


def timed(sep: Separator, mixture: torch.Tensor) -> float:
    t0 = time.perf_counter()
    sep(mixture)
    return time.perf_counter() - t0


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def speed(
    seconds: float,
    threads: list[int],
    cost_seconds: float,
    cost_threads: int,
    batch_chunks: bool = True,
) -> str:
    model = simo_bsrnn()
    gen = torch.Generator().manual_seed(0)
    track = 0.1 * torch.randn(1, 2, int(max(seconds, cost_seconds) * SR), generator=gen)
    warm = track[..., : 3 * SR]
    lines = (
        []
        if not batch_chunks
        else [
            f"Random-weight `simo-bsrnn` ({count_parameters(model) / 1e6:.1f} M parameters), "
            f"fp32, a {seconds:.0f} s stereo track (10 s segments, overlap 0.1), one timed run "
            "each after a warm-up:",
            "",
            "| batch_chunks | " + " | ".join(f"{n} thread(s)" for n in threads) + " |",
            "|---:|" + "---:|" * len(threads),
        ]
    )
    times: dict[tuple[int, int], float] = {}
    loads: dict[tuple[int, int], str] = {}
    for bc in (1, 2, 4) if batch_chunks else ():
        for n in threads:
            torch.set_num_threads(n)
            sep = Separator([model], chunking=ChunkSettings(batch_chunks=bc))
            timed(sep, warm)
            times[bc, n] = timed(sep, track[..., : int(seconds * SR)])
            loads[bc, n] = load()
            print(
                f"  batch_chunks {bc}, {n} thread(s): {times[bc, n]:.1f} s",
                file=sys.stderr,
                flush=True,
            )
    for bc in (1, 2, 4) if batch_chunks else ():
        cells = [
            f"{times[bc, n]:.1f} s ({seconds / times[bc, n]:.1f}x real time; load {loads[bc, n]})"
            for n in threads
        ]
        lines.append(f"| {bc} | " + " | ".join(cells) + " |")

    torch.set_num_threads(cost_threads)
    short = track[..., : int(cost_seconds * SR)]
    lines += [
        "",
        f"The options' cost on the same network, a {cost_seconds:.0f} s track, "
        f"{cost_threads} thread(s):",
        "",
        "| option | time | x plain | load (1 min) |",
        "|---|---:|---:|---:|",
    ]
    base = None
    for label, sep_kw in [
        ("plain", {}),
        ("TTA", {"tta": True}),
        ("Wiener 1", {"wiener_iterations": 1}),
        ("Wiener 2", {"wiener_iterations": 2}),
        ("bf16", {"precision": "bf16"}),
    ]:
        sep = Separator([model], **sep_kw)
        if sep_kw.get("precision") == "bf16" and sep.precision != "bf16":
            lines.append(f"| {label} | n/a (no native bf16) | |")
            continue
        timed(sep, warm)
        t = timed(sep, short)
        base = base or t
        lines.append(f"| {label} | {t:.1f} s | {t / base:.2f} | {load()} |")
        print(f"  {label}: {t:.1f} s", file=sys.stderr, flush=True)
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", type=Path, default=REPO / "outputs" / "simo-bsrnn-tiny")
    p.add_argument("--data-dir", type=Path, default=REPO / "data" / "toy")
    p.add_argument("--threads", type=int, default=1, help="threads of the quality table")
    p.add_argument("--speed-seconds", type=float, default=180.0)
    p.add_argument("--speed-threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--cost-seconds", type=float, default=30.0)
    p.add_argument("--cost-threads", type=int, default=2)
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-batch-chunks", action="store_true", help="only the options' cost")
    p.add_argument("--write", type=Path, help="also write the Markdown report there")
    args = p.parse_args()

    bf16, why = cpu_bf16_support()
    header = [
        "# Separation options: measured",
        "",
        f"Machine: {cpu_model()} ({os.cpu_count()} logical CPUs, "
        f"{'native bf16: ' if bf16 else 'no native bf16: '}{why}), torch {torch.__version__}, "
        f"Python {platform.python_version()}; load average at the start "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} (a machine shared with other jobs: "
        "times vary by 10-30 %). Date: "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "",
        "Produced by `python benchmarks/bench_separation_options.py`.",
    ]
    parts = ["\n".join(header)]
    if not args.skip_quality:
        print("quality:", file=sys.stderr)
        parts.append(
            "## Quality and time on the stand-in test set\n\n"
            + quality(args.model_dir, args.data_dir, args.threads)
        )
    if not args.skip_speed:
        print("speed:", file=sys.stderr)
        parts.append(
            "## Speed on a long track\n\n"
            + speed(
                args.speed_seconds,
                args.speed_threads,
                args.cost_seconds,
                args.cost_threads,
                batch_chunks=not args.skip_batch_chunks,
            )
        )
    text = "\n\n".join(parts) + "\n"
    print(text)
    if args.write:
        args.write.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
