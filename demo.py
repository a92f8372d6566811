"""The main job end to end on the stand-in dataset (what `make demo` runs).

1. make the stand-in dataset and its activity index      python prep_dataset.py dset=toy
2. train simo-bsrnn-tiny: one model for the four stems   python train.py dset=toy src_mod=...
3. evaluate on the stand-in test set, model and the "mixture as estimate" baseline,
   uSDR and cSDR                                         python evaluate.py dset=toy ...
4. separate one test mixture into outputs/demo/          python inference.py ...
5. export the model to ONNX and separate the same mixture without PyTorch
                                                         bsrnn-export, python -m bsrnn.onnx_runtime

Each step is the project's own command, run as a user would run it; a second `make demo`
reuses what the first one made (the data, finished trainings, finished evaluations).
Options: --epochs N (default 8); --model bsrnn-tiny trains one network per target instead
(the seed's `python train.py -m src_mod.target=...`), with --targets vocals,bass,...
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent
MODELS = ("simo-bsrnn-tiny", "bsrnn-tiny")
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


def summary_row(kind: str, model: str, targets: list[str]) -> dict[str, float]:
    path = OUT / f"test_results_{kind}.csv"
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["model"] == model:
                return {k: float(row[k]) for k in [*targets, "average"]}
    sys.exit(f"demo: no row for {model!r} in {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description="bsrnn end-to-end demo on the stand-in data")
    parser.add_argument("--epochs", type=int, default=8, help="training epochs (per model)")
    parser.add_argument("--model", default=MODELS[0], choices=MODELS)
    parser.add_argument("--targets", default="vocals,bass,drums,other")
    args = parser.parse_args()
    model = args.model
    targets = args.targets.split(",")
    common = ["dset=toy", f"src_mod={model}", f"targets=[{','.join(targets)}]"]
    train = ["train.py", "dset=toy", f"src_mod={model}", f"optim.max_epochs={args.epochs}",
             "ckpt_path=auto"]  # fmt: skip
    if model == "bsrnn-tiny":  # one network per target: the seed's multirun
        train[1:1] = ["-m", f"src_mod.target={','.join(targets)}"]
    t0 = time.monotonic()

    run("1/5 stand-in dataset and activity index", ["prep_dataset.py", "dset=toy"])
    run(f"2/5 training {model} for {', '.join(targets)} ({args.epochs} epochs)", train)
    for kind, sdr_type in (("usdr", "usdr"), ("csdr", "museval")):
        evaluate = ["evaluate.py", *common, f"eval.sdr_type={sdr_type}"]
        run(f"3/5 evaluation ({kind}), model", evaluate)
        run(
            f"3/5 evaluation ({kind}), mixture baseline",
            [*evaluate, "eval.baseline=mixture"],
        )
    track = sorted(p for p in (DATA / "test").iterdir() if p.is_dir())[0]
    rec_dir = OUT / "demo"
    run(
        f"4/5 separating {track.name}",
        ["inference.py", *common, f"+file_path={track / 'mixture.wav'}", f"+rec_dir={rec_dir}"],
    )
    exported, onnx_dir = OUT / f"{model}-onnx", OUT / "demo-onnx"
    run("5/5 ONNX export", ["-m", "bsrnn.export", "-m", str(OUT / model), "-o", str(exported)])
    run(
        f"5/5 separating {track.name} with ONNX Runtime, without PyTorch",
        ["-m", "bsrnn.onnx_runtime", "-m", str(exported), str(track / "mixture.wav"),
         "-o", str(onnx_dir)],
    )  # fmt: skip

    print(f"\n=== Results on the stand-in test set ({model}, {args.epochs} epochs)")
    width = len(model)
    for kind, label in (("usdr", "uSDR (mean over tracks)"), ("csdr", "cSDR (median, museval)")):
        ours, base = summary_row(kind, model, targets), summary_row(kind, "mixture", targets)
        print(f"\n{label}, dB")
        print(f"| {'target':<8} | {model:>{width}} | {'mixture':>8} | {'margin':>7} |")
        print(f"|{'-' * 10}|{'-' * (width + 2)}|{'-' * 10}|{'-' * 9}|")
        for name in [*targets, "average"]:
            m, b = ours[name], base[name]
            print(f"| {name:<8} | {m:>{width}.2f} | {b:>8.2f} | {m - b:>+7.2f} |")
    stems = ", ".join(sorted(p.name for p in rec_dir.glob("*.wav")))
    print(f"\nSeparated stems of {track.name}: {rec_dir}/ ({stems})")
    differences = []
    for target in targets:
        ours, _ = sf.read(rec_dir / f"{target}.wav", dtype="float32")
        theirs, _ = sf.read(onnx_dir / "mixture" / f"{target}.wav", dtype="float32")
        differences.append(np.abs(ours - theirs).max() / max(np.abs(ours).max(), 1e-12))
    print(
        f"The same stems through ONNX Runtime: {onnx_dir}/mixture/ (largest difference from "
        f"PyTorch's: {max(differences):.1e} of the peak)"
    )
    print(f"Demo finished in {(time.monotonic() - t0) / 60:.1f} min.")


if __name__ == "__main__":
    main()
