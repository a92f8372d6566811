"""Separation: speed and memory against HTDemucs, and what each separation option costs and brings.

Tables (``--tables``, default ``speed``; ``all`` for every one):

``speed``: four-stem separation of the same stereo mixture (``--seconds``, default 10 s,
44.1 kHz, random audio) with

  (a) four per-target BSRNN networks (``--preset``, default ``bsrnn``; ``--feature-dim`` /
      ``--num-repeat`` override its size), fp32;
  (b) the same networks under bf16 autocast (n/a where the device has no native bf16:
      emulated bf16 is slower; ``--force-bf16`` runs it anyway);
  (c) one multi-target network (``--simo-preset``, default ``simo-bsrnn``), fp32 and bf16;
  (d) HTDemucs (the ``htdemucs`` architecture, random weights) through
      ``demucs.apply.apply_model`` with its defaults (shifts=1, split=True, overlap=0.25,
      7.8 s segments); skipped when demucs is not installed (benchmarks/requirements.txt);
  (e) the per-band oracle (tests/reference/per_band_baseline.py) for the four targets, holding
      the weights of (a): its SNR against (a) checks that both compute the same function.

  BSRNN networks separate through ``bsrnn.separator.Separator`` (10 s chunks, overlap 0.1).
  Each row runs in a fresh subprocess with ``--threads`` torch threads (``OMP_NUM_THREADS``
  too): one warm-up separation of ``--warmup-seconds``, then ``--repeats`` timed separations;
  the best counts. Memory (Linux): "peak RSS" is the process's resident-set high-water mark
  during the timed separations (``VmHWM``, reset through ``/proc/self/clear_refs``; it
  includes Python, torch and the weights); "RSS growth" is that peak minus the resident set
  just before them (the working memory of one separation, its output included). The SNR
  column (dB, mean over stems, min in brackets) compares outputs with the fp32 twin.

``quality``: a trained model folder (``--model-dir``, default the demo's
``outputs/simo-bsrnn-tiny``) on the stand-in test set (``--data-dir``, default data/toy; ``make
demo`` makes both): uSDR and cSDR per stem and the separation time of the whole test set for
plain (10 s segments, overlap 0.1), TTA, Wiener 1 and 2, Wiener 1 with a residual, overlap 0.25
and 0.5, and bf16.

``batch-chunks``: the ``--simo-preset`` network (random weights) separating a
``--long-seconds`` track (default 180) with ``batch_chunks`` 1 / 2 / 4 at each of
``--long-threads`` (default 1 2); one timed run each after a warm-up.

``cost``: the options' cost (plain, TTA, Wiener 1 and 2, bf16) on the same network, a
``--cost-seconds`` track (default 30) at ``--cost-threads`` (default 2).

    python benchmarks/bench_separation.py                          # speed table, 10 s, 1 thread
    python benchmarks/bench_separation.py --quick                  # tiny presets, 2 s: seconds
    python benchmarks/bench_separation.py --threads 2 --repeats 3
    python benchmarks/bench_separation.py --only a,d               # a subset of the rows
    python benchmarks/bench_separation.py --device cuda --batch-chunks 8 --seconds 180 --only a,c
    python benchmarks/bench_separation.py --tables quality batch-chunks cost   # the options
    python benchmarks/bench_separation.py --tables cost --cost-threads 1 --out results/
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common  # noqa: F401  (first: puts src/ and the repository on sys.path)
import torch
from common import REPO, SR
from torch import nn

from bsrnn import runtime

TABLES = ("speed", "quality", "batch-chunks", "cost")


# --------------------------------------------------------------------------------------------
# The networks
# --------------------------------------------------------------------------------------------
def size_overrides(cfg: dict[str, Any]) -> list[str]:
    """``src_mod`` overrides of the network size asked for on the command line."""
    out = []
    for key in ("feature_dim", "num_repeat"):
        if cfg.get(key) is not None:
            out.append(f"src_mod.{key}={cfg[key]}")
    return out


def make_separator(models: list[nn.Module], cfg: dict[str, Any], precision: str) -> Any:
    """The users' separator on ``cfg["device"]`` (10 s chunks, ``batch_chunks`` per pass) in
    ``precision``; ``force_bf16`` keeps bf16 where the separator would fall back to fp32."""
    from bsrnn.chunking import ChunkSettings
    from bsrnn.separator import Separator

    chunking = ChunkSettings(segment_len=10.0, batch_chunks=cfg["batch_chunks"])
    sep = Separator(models, device=cfg["device"], precision=precision, chunking=chunking)
    if cfg["force_bf16"]:
        sep.precision = precision
    return sep


class OracleAdapter(nn.Module):
    """The per-band oracle behind the model interface the separator expects:
    ``[B, C, T] -> ModelOutput`` with ``waveforms`` ``[B, 1, C, T]``."""

    COPIED = ("targets", "sample_rate", "min_samples", "segment_samples", "audio_channels",
              "stft_spec", "config", "framing")  # fmt: skip

    def __init__(self, oracle: nn.Module, ours: nn.Module) -> None:
        super().__init__()
        self.oracle = oracle
        for name in self.COPIED:  # what the separator reads of a model: ours' values
            setattr(self, name, getattr(ours, name, None))

    def forward(self, mixture: torch.Tensor) -> Any:
        from bsrnn.models import ModelOutput

        return ModelOutput(self.oracle(mixture))


def per_target_networks(cfg: dict[str, Any]) -> tuple[list[nn.Module], list[nn.Module]]:
    """``(ours, oracles)``: for each target, our network of ``cfg["preset"]`` and the per-band
    oracle holding the same random weights."""
    ours, oracles = [], []
    for i, target in enumerate(common.STEMS):
        overrides = [f"src_mod.target={target}", *size_overrides(cfg)]
        pair = common.oracle_pair(cfg["preset"], overrides, seed=cfg["seed"] + i)
        if isinstance(pair, str):
            raise SystemExit(pair)
        net, oracle = pair
        ours.append(net.eval())
        oracles.append(OracleAdapter(oracle, net).eval())
    return ours, oracles


# --------------------------------------------------------------------------------------------
# The speed table: one row per child process
# --------------------------------------------------------------------------------------------
def child(cfg: dict[str, Any]) -> dict[str, Any]:
    """Build one configuration, warm up, time it; the result as a JSON-able dict."""
    threads = runtime.set_num_threads(cfg["threads"])
    kind, precision, device, seed = cfg["kind"], cfg["precision"], cfg["device"], cfg["seed"]
    if kind in ("bsrnn", "oracle"):
        ours, oracles = per_target_networks(cfg)
        models = ours if kind == "bsrnn" else oracles
        del ours, oracles
        run = make_separator(models, cfg, precision)
        params = sum(p.numel() for m in models for p in m.parameters())
    elif kind == "simo":
        model = common.preset_model(cfg["simo_preset"], size_overrides(cfg), seed=seed).eval()
        run = make_separator([model], cfg, precision)
        params = sum(p.numel() for p in model.parameters())
    elif kind == "htdemucs":
        model, run = common.htdemucs(seed, device)
        params = sum(p.numel() for p in model.parameters())
    else:
        raise ValueError(f"unknown configuration kind {kind!r}")
    gc.collect()

    mix = common.mixture(cfg["seconds"], seed)[None]  # [1, 2, T]
    run(common.mixture(cfg["warmup_seconds"], seed + 1)[None])
    gc.collect()
    exact = common.reset_peak_rss()
    before = common.status_kib("VmRSS") / 1024
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    last: list[torch.Tensor] = []  # the output of the last timed run

    def separate() -> None:
        last.clear()  # the previous output freed before the next run, as a user's loop would
        last.append(run(mix))

    times = common.best_of(separate, cfg["repeats"], warmup=0, device=device)
    peak = common.peak_rss_mib(exact)
    if cfg.get("save"):
        torch.save(last[0].float(), cfg["save"])
    return {
        "best_s": times.best("wall"),
        "times": times.to_dict(),
        "params": params,
        "threads": threads,
        "peak_rss_mib": peak,
        "rss_growth_mib": peak - before,
        "exact_peak": exact,
        "gpu_peak_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
    }


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


def speed_table(args, threads: int) -> tuple[str, dict]:
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    device = torch.device(args.device)
    bf16_skip = common.bf16_skip(device, args.force_bf16)
    size = f"{args.preset}" + (f" {args.feature_dim}/{args.num_repeat}"
                              if args.feature_dim or args.num_repeat else "")  # fmt: skip
    rows = [  # (key, letter, label, kind, precision, fp32 twin)
        ("a", "a", f"(a) {size} x4 targets, fp32", "bsrnn", "fp32", None),
        ("b", "b", f"(b) {size} x4 targets, bf16", "bsrnn", "bf16", "a"),
        ("c32", "c", f"(c) {args.simo_preset}, fp32", "simo", "fp32", None),
        ("c16", "c", f"(c) {args.simo_preset}, bf16", "simo", "bf16", "c32"),
        ("d", "d", "(d) htdemucs (apply_model defaults)", "htdemucs", "fp32", None),
        ("e", "e", f"(e) per-band oracle {size} x4, fp32", "oracle", "fp32", "a"),
    ]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_sep_") as tmp:
        for key, letter, label, kind, precision, _twin in rows:
            if letter not in only:
                continue
            if precision == "bf16" and bf16_skip:
                results[key] = {"skip": bf16_skip}
                continue
            if kind == "htdemucs" and common.demucs_version() is None:
                results[key] = {"skip": "skipped: demucs not installed (pip install --no-deps "
                                "-r benchmarks/requirements.txt)"}  # fmt: skip
                continue
            cfg = {"kind": kind, "precision": precision, "force_bf16": bool(args.force_bf16),
                   "device": args.device, "batch_chunks": args.batch_chunks,
                   "threads": threads, "seconds": args.seconds,
                   "warmup_seconds": args.warmup_seconds, "repeats": args.repeats,
                   "preset": args.preset, "simo_preset": args.simo_preset,
                   "feature_dim": args.feature_dim, "num_repeat": args.num_repeat,
                   "seed": args.seed, "save": str(Path(tmp) / f"{key}.pt")}  # fmt: skip
            print(f"... {label}", file=sys.stderr, flush=True)
            results[key] = common.run_child(__file__, cfg, threads)
        for key, *_rest, twin in rows:
            r = results.get(key, {})
            if twin and "best_s" in r and "best_s" in results.get(twin, {}):
                try:
                    r["snr"] = snr_db(str(Path(tmp) / f"{key}.pt"), str(Path(tmp) / f"{twin}.pt"))
                except (OSError, ValueError, RuntimeError) as err:
                    r["snr_error"] = str(err)

    t_demucs = results.get("d", {}).get("best_s")
    t_a = results.get("a", {}).get("best_s")
    table = []
    for key, letter, label, *_rest in rows:
        if letter not in only:
            continue
        r = results.get(key, {})
        if "best_s" not in r:
            note = r.get("skip") or f"failed: {r.get('error', 'no result')}"
            table.append([label, "", "", "", "", "", "", "", note])
            continue
        t = r["best_s"]
        snr = f"{r['snr'][0]:.1f} ({r['snr'][1]:.1f})" if "snr" in r else r.get("snr_error", "")
        mem = "" if r["exact_peak"] else " (process peak)"
        if r.get("gpu_peak_mib") is not None:
            mem += f", GPU {r['gpu_peak_mib']:.0f}"
        table.append([label, f"{r['params'] / 1e6:.1f} M", f"{t:.2f}", f"{args.seconds / t:.2f}",
                      f"{t_demucs / t:.2f}x" if t_demucs else "-",
                      f"{t_a / t:.2f}x" if t_a else "-", f"{r['peak_rss_mib']:.0f}{mem}",
                      f"{r['rss_growth_mib']:.0f}", snr])  # fmt: skip
    text = "\n".join([
        f"Four-stem separation of {args.seconds:g} s stereo at {SR} Hz, best of "
        f"{args.repeats} after a {args.warmup_seconds:g} s warm-up, one process per row, "
        f"demucs {common.demucs_version() or 'not installed'}:", "",
        common.markdown_table(["configuration", "params", "wall s", "audio s/s",
                               "speed vs HTDemucs", "speed vs (a)", "peak RSS MiB",
                               "RSS growth MiB", "SNR vs fp32 twin dB"], table), "",
        "speed vs X: X's wall time / this row's (> 1: faster). SNR: bf16 rows against their "
        "fp32 twin, (e) against (a) (same weights: checks the two compute the same function).",
    ])  # fmt: skip
    return text, results


# --------------------------------------------------------------------------------------------
# The options: quality on a test set, batch_chunks on a long track, the options' cost
# --------------------------------------------------------------------------------------------
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
#: (label, Separator kwargs) of the cost table.
COST_VARIANTS = [
    ("plain", {}),
    ("TTA", {"tta": True}),
    ("Wiener 1", {"wiener_iterations": 1}),
    ("Wiener 2", {"wiener_iterations": 2}),
    ("bf16", {"precision": "bf16"}),
]


def quality_table(model_dir: Path, data_dir: Path, threads: int) -> tuple[str, list]:
    """uSDR and cSDR per stem and the separation time of each option on a test set."""
    from bsrnn.chunking import ChunkSettings
    from bsrnn.data import DataSettings, read_track_audio
    from bsrnn.evaluation import EvalSettings, score_track
    from bsrnn.model_folder import load_separator
    from bsrnn.results import EvalResult

    runtime.set_num_threads(threads)
    data = DataSettings(data_dir=data_dir)
    tracks = data.tracks("test")
    audio = {t.name: read_track_audio(t, list(data.sources)) for t in tracks}
    rows, data_rows, targets, base_time = [], [], [], None
    for label, chunk_kw, sep_kw in VARIANTS:
        sep = load_separator(model_dir, chunking=ChunkSettings(**chunk_kw), **sep_kw)
        if sep_kw.get("precision") == "bf16" and sep.precision != "bf16":
            rows.append([label, "n/a (no native bf16)"])
            continue
        targets = sep.targets
        scores: dict[str, dict] = {"usdr": {}, "csdr": {}}
        seconds = 0.0
        for t in tracks:
            mix, stems = audio[t.name]
            refs = stems[[list(data.sources).index(s) for s in targets]]
            t0 = time.perf_counter()
            est = sep.separate_audio(mix, t.sample_rate)
            seconds += time.perf_counter() - t0
            for kind in scores:
                sdr = score_track(refs, est, t.sample_rate, EvalSettings(sdr_type=kind),
                                  names=targets, track=t.name)  # fmt: skip
                scores[kind][t.name] = dict(zip(targets, map(float, sdr)))
        results = {k: EvalResult(label, k, targets, v) for k, v in scores.items()}
        base_time = base_time or seconds
        cells = [label]
        for kind in ("usdr", "csdr"):
            r = results[kind]
            cells += [f"{r.aggregate[t]:.2f}" for t in targets] + [f"{r.average:.2f}"]
        rows.append([*cells, f"{seconds:.1f} s", f"{seconds / base_time:.2f}"])
        data_rows.append({"option": label, "seconds": seconds, "scores": scores})
        print(f"  {label}: {seconds:.1f} s", file=sys.stderr, flush=True)
    total = sum(t.frames / t.sample_rate for t in tracks)
    head = ["option"] + [f"uSDR {t}" for t in targets] + ["uSDR avg"]
    head += [f"cSDR {t}" for t in targets] + ["cSDR avg", "time", "x plain"]
    note = (f"{len(tracks)} test tracks ({total:.0f} s of stereo audio), model `{model_dir}`, "
            f"{threads} thread(s); time: the separation of the whole test set (resampling, "
            "chunks, options), scoring excluded.")  # fmt: skip
    return note + "\n\n" + common.markdown_table(head, rows), data_rows


def _timed_separation(sep, mixture: torch.Tensor) -> float:
    sep(mixture[..., : 3 * SR])  # warm-up
    return common.timed(lambda: sep(mixture))[0]


def batch_chunks_table(model: nn.Module, seconds: float, threads: list[int]) -> tuple[str, dict]:
    """Wall time of a long track with batch_chunks 1 / 2 / 4 at each thread count."""
    from bsrnn.chunking import ChunkSettings
    from bsrnn.separator import Separator

    track = common.noise((1, 2, int(seconds * SR)), seed=0)
    times: dict[str, float] = {}
    rows = []
    for bc in (1, 2, 4):
        cells = [str(bc)]
        for n in threads:
            runtime.set_num_threads(n)
            sep = Separator([model], chunking=ChunkSettings(batch_chunks=bc))
            t = times[f"{bc},{n}"] = _timed_separation(sep, track)
            cells.append(f"{t:.1f} s ({seconds / t:.1f}x real time; load "
                         f"{os.getloadavg()[0]:.1f})")  # fmt: skip
            print(f"  batch_chunks {bc}, {n} thread(s): {t:.1f} s", file=sys.stderr, flush=True)
        rows.append(cells)
    head = ["batch_chunks"] + [f"{n} thread(s)" for n in threads]
    note = (f"Random-weight network ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M "
            f"parameters), fp32, a {seconds:g} s stereo track (10 s segments, overlap 0.1), "
            "one timed run each after a warm-up:")  # fmt: skip
    return note + "\n\n" + common.markdown_table(head, rows), times


def cost_table(model: nn.Module, seconds: float, threads: int) -> tuple[str, dict]:
    """Wall time of each option (TTA, Wiener, bf16) against the plain separation."""
    from bsrnn.separator import Separator

    runtime.set_num_threads(threads)
    track = common.noise((1, 2, int(seconds * SR)), seed=0)
    rows, times, base = [], {}, None
    for label, sep_kw in COST_VARIANTS:
        sep = Separator([model], **sep_kw)
        if sep_kw.get("precision") == "bf16" and sep.precision != "bf16":
            rows.append([label, "n/a (no native bf16)", "", ""])
            continue
        t = times[label] = _timed_separation(sep, track)
        base = base or t
        rows.append([label, f"{t:.1f} s", f"{t / base:.2f}", f"{os.getloadavg()[0]:.1f}"])
        print(f"  {label}: {t:.1f} s", file=sys.stderr, flush=True)
    note = f"The options' cost, a {seconds:g} s stereo track, {threads} thread(s):"
    table = common.markdown_table(["option", "time", "x plain", "load (1 min)"], rows)
    return note + "\n\n" + table, times


# --------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", choices=[*TABLES, "all"], default=["speed"])
    parser.add_argument(
        "--quick", action="store_true", help="tiny presets, 2 s mixture, 1 repeat, short tracks"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="speed: mixture length")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: per core)")
    parser.add_argument("--repeats", type=int, default=2, help="speed: timed runs (best counts)")
    parser.add_argument("--warmup-seconds", type=float, default=2.0)
    parser.add_argument("--preset", default="bsrnn", help="per-target network of (a), (b), (e)")
    parser.add_argument("--simo-preset", default="simo-bsrnn")
    parser.add_argument("--feature-dim", type=int, default=None, help="override the presets'")
    parser.add_argument("--num-repeat", type=int, default=None, help="override the presets'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="a,b,c,d,e", help="speed rows: letters a-e")
    parser.add_argument(
        "--force-bf16",
        action="store_true",
        help="bf16 rows even without native bf16 (emulated: slow; the LSTM "
        "fails on CPUs without AVX-512)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (GPU: peak GPU memory)")
    parser.add_argument(
        "--batch-chunks",
        type=int,
        default=None,
        help="speed: chunks per forward (null: 1 CPU, 4 GPU)",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=REPO / "outputs" / "simo-bsrnn-tiny",
        help="quality: a trained model folder",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=REPO / "data" / "toy",
        help="quality: a dataset with a test split",
    )
    parser.add_argument("--long-seconds", type=float, default=180.0, help="batch-chunks track")
    parser.add_argument("--long-threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cost-seconds", type=float, default=30.0)
    parser.add_argument("--cost-threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="also write bench_separation.md/.json")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()  # fmt: skip

    if args.child is not None:
        print(json.dumps(child(json.loads(args.child))))
        return
    tables = TABLES if "all" in args.tables else args.tables
    if args.quick:
        args.preset, args.simo_preset = "bsrnn-tiny", "simo-bsrnn-tiny"
        args.seconds, args.repeats, args.warmup_seconds = 2.0, 1, 1.0
        args.long_seconds, args.long_threads, args.cost_seconds = 12.0, [1], 5.0
        args.cost_threads = 1
    threads = args.threads or runtime.physical_cores()
    header = common.machine_line(args.device, threads)
    print(header, flush=True)
    parts, data = [header], {"machine": common.machine_info(args.device, threads),
                             "args": {k: str(v) for k, v in vars(args).items()}}  # fmt: skip
    if "speed" in tables:
        text, data["speed"] = speed_table(args, threads)
        parts += ["## Four stems against HTDemucs", text]
    if "quality" in tables:
        print("quality:", file=sys.stderr)
        text, data["quality"] = quality_table(args.model_dir, args.data_dir, args.threads or 1)
        parts += ["## Options: quality and time on a test set", text]
    simo = None
    if "batch-chunks" in tables or "cost" in tables:
        simo = common.preset_model(args.simo_preset).eval()
    if "batch-chunks" in tables:
        print("batch_chunks:", file=sys.stderr)
        text, data["batch_chunks"] = batch_chunks_table(simo, args.long_seconds,
                                                        args.long_threads)  # fmt: skip
        parts += ["## batch_chunks on a long track", text]
    if "cost" in tables:
        print("cost:", file=sys.stderr)
        text, data["cost"] = cost_table(simo, args.cost_seconds, args.cost_threads)
        parts += ["## The options' cost", text]
    text = "\n\n".join(parts)
    print("\n" + text)
    common.write_results(args.out, "bench_separation", text, data)


if __name__ == "__main__":
    main()
