"""The main job end to end on the stand-in dataset (what `make demo` runs).

1. make the stand-in dataset and its activity index      python prep_dataset.py dset=toy
2. train bsrnn-tiny for every target                     python train.py -m dset=toy ...
3. evaluate on the stand-in test set, model and the "mixture as estimate" baseline,
   uSDR and cSDR                                         python evaluate.py dset=toy ...
4. separate one test mixture into outputs/demo/          python inference.py ...

Each step is the project's own command, run as a user would run it; a second `make demo`
reuses what the first one made (the data, finished trainings, finished evaluations).
Options: --epochs N (default 5), --targets vocals,bass,... (default all four).
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
MODEL = "bsrnn-tiny"
DATA = ROOT / "data" / "toy"
OUT = ROOT / "outputs"


def run(step: str, args: list[str]) -> None:
    cmd = [sys.executable, *args]
    print(f"\n=== {step}\n$ python {' '.join(args)}", flush=True)
    start = time.monotonic()
    done = subprocess.run(cmd, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"demo: step '{step}' failed (exit code {done.returncode})")
    print(f"--- {step}: {time.monotonic() - start:.0f} s", flush=True)


def summary_row(kind: str, model: str) -> dict[str, float]:
    path = OUT / f"test_results_{kind}.csv"
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["model"] == model:
                return {k: float(v) for k, v in row.items() if k != "model" and v != ""}
    sys.exit(f"demo: no row for {model!r} in {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description="bsrnn end-to-end demo on the stand-in data")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs per target")
    parser.add_argument("--targets", default="vocals,bass,drums,other")
    args = parser.parse_args()
    targets = args.targets.split(",")
    common = ["dset=toy", f"src_mod={MODEL}", f"targets=[{','.join(targets)}]"]
    t0 = time.monotonic()

    run("1/4 stand-in dataset and activity index", ["prep_dataset.py", "dset=toy"])
    run(
        f"2/4 training {MODEL} for {', '.join(targets)} ({args.epochs} epochs each)",
        ["train.py", "-m", "dset=toy", f"src_mod={MODEL}", f"src_mod.target={','.join(targets)}",
         f"optim.max_epochs={args.epochs}", "ckpt_path=auto"],
    )  # fmt: skip
    for kind, sdr_type in (("usdr", "usdr"), ("csdr", "museval")):
        evaluate = ["evaluate.py", *common, f"eval.sdr_type={sdr_type}"]
        run(f"3/4 evaluation ({kind}), model", evaluate)
        run(
            f"3/4 evaluation ({kind}), mixture baseline",
            [*evaluate, "eval.baseline=mixture"],
        )
    track = sorted(p for p in (DATA / "test").iterdir() if p.is_dir())[0]
    rec_dir = OUT / "demo"
    run(
        f"4/4 separating {track.name}",
        ["inference.py", *common, f"+file_path={track / 'mixture.wav'}", f"+rec_dir={rec_dir}"],
    )

    print(f"\n=== Results on the stand-in test set ({MODEL}, {args.epochs} epochs per target)")
    for kind, label in (("usdr", "uSDR (mean over tracks)"), ("csdr", "cSDR (median, museval)")):
        model, base = summary_row(kind, MODEL), summary_row(kind, "mixture")
        print(f"\n{label}, dB")
        print(f"| {'target':<8} | {MODEL:>10} | {'mixture':>8} | {'margin':>7} |")
        print(f"|{'-' * 10}|{'-' * 12}|{'-' * 10}|{'-' * 9}|")
        for name in [*targets, "average"]:
            m, b = model[name], base[name]
            print(f"| {name:<8} | {m:>10.2f} | {b:>8.2f} | {m - b:>+7.2f} |")
    stems = ", ".join(sorted(p.name for p in rec_dir.glob("*.wav")))
    print(f"\nSeparated stems of {track.name}: {rec_dir}/ ({stems})")
    print(f"Demo finished in {(time.monotonic() - t0) / 60:.1f} min.")


if __name__ == "__main__":
    main()
