"""Speed of separation with ONNX Runtime (``bsrnn.onnx_runtime``) against our PyTorch path
(``bsrnn.separator.Separator``), same exported networks, same chunks, same threads.

For each preset (composed from ``conf/src_mod``; random weights), the network is saved to a
model folder, exported with ``bsrnn-export``, and both paths separate the same ``--seconds`` of
stereo noise-and-tones at the model's rate (no resampling), in the model's chunks; each is
timed ``--repeats`` times, alternating, and the best time is kept (process CPU time: with
one thread, what the work costs, robust to other processes sharing the machine). Prints the
machine, the times and PyTorch / ONNX Runtime (> 1: ONNX Runtime is faster), and the largest
difference of the stems relative to their peak.

    python benchmarks/bench_onnx.py [--seconds 30] [--repeats 2] [--threads 1]
        [--presets simo-bsrnn bs-roformer scnet]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import common  # noqa: F401  (first: puts src/ and the repository on sys.path)
import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["simo-bsrnn", "bs-roformer", "scnet"])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import onnxruntime

    from bsrnn.apply import preferred_segment
    from bsrnn.checkpoints import save_model
    from bsrnn.chunking import ChunkSettings
    from bsrnn.export import export_model_dir
    from bsrnn.model_folder import load_separator
    from bsrnn.onnx_runtime import OnnxSeparator
    from bsrnn.paths import checkpoint_path

    torch.set_num_threads(args.threads)
    print(f"{common.machine_line('cpu', args.threads)}; onnxruntime {onnxruntime.__version__}")
    print(f"{'preset':<14} {'PyTorch s':>10} {'ORT s':>8} {'PT/ORT':>7} {'max diff':>9}")
    presets = [p for p in args.presets if common.preset_exists(p)]
    for name in args.presets:
        if name not in presets:
            print(f"{name:<14} (no preset conf/src_mod/{name}.yaml: skipped)")
    for name in presets:
        model = common.preset_model(name, seed=0).eval()
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = Path(tmp) / "model"
            model_dir.mkdir()
            save_model(model, checkpoint_path(model_dir, model.targets))
            export_model_dir(model_dir, Path(tmp) / "exported", check=False)
            rate = model.sample_rate
            n = int(args.seconds * rate)
            rng = np.random.default_rng(0)
            t = np.arange(n) / rate
            mix = np.stack([0.3 * np.sin(2 * np.pi * f * t) for f in (220, 330)])
            mix = (mix + 0.05 * rng.standard_normal(mix.shape)).astype(np.float32)

            ours = load_separator(model_dir, precision="fp32")
            ort = OnnxSeparator(Path(tmp) / "exported", threads=args.threads)
            segment = preferred_segment(ours.models)
            if segment is not None:
                ours.chunking = ChunkSettings(segment_len=segment)
            assert ort.chunking == ours.chunking, (ort.chunking, ours.chunking)
            times: dict[str, list[float]] = {"pt": [], "ort": []}
            outs = {}
            for _ in range(args.repeats):
                for key, runner in (("pt", ours), ("ort", ort)):
                    _, cpu, outs[key] = common.timed(
                        lambda r=runner, m=mix, sr=rate: r.separate_audio(m, sr)
                    )
                    times[key].append(cpu)
            pt, rt = min(times["pt"]), min(times["ort"])
            diff = np.abs(outs["pt"] - outs["ort"]).max() / np.abs(outs["pt"]).max()
            print(f"{name:<14} {pt:>10.1f} {rt:>8.1f} {pt / rt:>7.2f} {diff:>9.1e}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
