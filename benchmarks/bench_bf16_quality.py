"""The quality cost of bf16: the stand-in test set separated in fp32 and in bf16 with the same
checkpoints (uSDR and cSDR per target), and a few epochs of training of a tiny network in both.

    python benchmarks/bench_bf16_quality.py                 # after `make demo` (its checkpoints)
    python benchmarks/bench_bf16_quality.py --preset bsrnn-tiny --train-epochs 3

On a CPU with native bf16 (AVX-512 BF16 or AMX) the bf16 runs use CPU autocast, as
``eval.precision=bf16`` and ``trainer.precision=bf16-mixed`` do. On a CPU without it, oneDNN
cannot run an LSTM in bf16 at all, so the bf16 *numerics* are emulated: oneDNN off, autocast on,
and the recurrent layers' inputs cast to bf16 (ATen's own bf16 LSTM). That measures the quality
cost only; emulated bf16 is several times slower, so no speed is reported for it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import common  # noqa: F401  (first: puts src/ and the repository on sys.path)
import numpy as np
import torch
from common import REPO
from torch import nn

from bsrnn.checkpoints import load_model
from bsrnn.chunking import ChunkSettings
from bsrnn.data import DataSettings, read_track_audio
from bsrnn.losses import SeparationLoss
from bsrnn.metrics import csdr, usdr
from bsrnn.models import SeparationModel, build_model
from bsrnn.paths import checkpoint_path
from bsrnn.runtime import cpu_bf16_support
from bsrnn.separator import Separator


@contextlib.contextmanager
def bf16(model: nn.Module, native: bool) -> Iterator[None]:
    """CPU bf16 autocast, or its numerics emulated where the CPU has no native bf16."""
    if native:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yield
        return
    rnns = [m for m in model.modules() if isinstance(m, nn.LSTM | nn.GRU)]
    hooks = [m.register_forward_pre_hook(lambda _, a: (a[0].to(torch.bfloat16),)) for m in rnns]
    try:
        with torch.backends.mkldnn.flags(enabled=False), torch.autocast("cpu", torch.bfloat16):
            yield
    finally:
        for hook in hooks:
            hook.remove()


def evaluate(models: list[SeparationModel], data: DataSettings, native: bool) -> dict:
    """``{"fp32"|"bf16": {"usdr"|"csdr": [S]}}`` means/medians over the test tracks."""
    targets = [t for m in models for t in m.targets]
    scores: dict[str, dict[str, list]] = {"fp32": {"usdr": [], "csdr": []}}
    scores["bf16"] = {"usdr": [], "csdr": []}
    separator = Separator(models, chunking=ChunkSettings(segment_len=10.0))
    for track in data.tracks("test"):
        mix, stems = read_track_audio(track, data.sources, mixture=data.mixture)
        refs = stems[[list(data.sources).index(t) for t in targets]]
        x = torch.from_numpy(mix)[None]
        for precision in ("fp32", "bf16"):
            context = contextlib.nullcontext() if precision == "fp32" else bf16(separator, native)
            with context:
                est = separator(x)[0].float().numpy()
            scores[precision]["usdr"].append(usdr(refs, est))
            scores[precision]["csdr"].append(csdr(refs, est, track.sample_rate, track.sample_rate))
    return {
        p: {"usdr": np.mean(s["usdr"], 0), "csdr": np.nanmedian(s["csdr"], 0)}
        for p, s in scores.items()
    } | {"targets": targets}


def train_curves(preset_options: dict, epochs: int, native: bool, steps: int) -> dict:
    """Mean training loss per epoch, fp32 and bf16, from the same initial weights and batches
    (synthetic stand-in songs, 1 s examples, batch 2, Adam 5e-4, t+tf L1)."""
    from bsrnn.data.toy import synthesize_track

    songs = [synthesize_track(seed, 4.0, 44100) for seed in range(4)]
    stems = [np.stack([s[n] for n in ("vocals", "bass", "drums", "other")]) for s in songs]
    curves = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        net = build_model(preset_options).train()
        targets = net.targets
        optimizer = torch.optim.Adam(net.parameters(), lr=5e-4)
        loss_fn = SeparationLoss("L1", "t+tf")
        draw = np.random.default_rng(1)
        curve = []
        for _ in range(epochs):
            losses = []
            for _ in range(steps):
                batch = []
                for _ in range(2):
                    song = stems[int(draw.integers(len(stems)))]
                    start = int(draw.integers(song.shape[-1] - 44100))
                    batch.append(song[..., start : start + 44100])
                sources = torch.from_numpy(np.stack(batch)).float()  # [B, 4, C, T]
                refs = sources[:, [("vocals", "bass", "drums", "other").index(t) for t in targets]]
                mixture = sources.sum(1)
                optimizer.zero_grad(set_to_none=True)
                context = contextlib.nullcontext() if precision == "fp32" else bf16(net, native)
                with context:
                    out = net(mixture)
                    loss = loss_fn(out.waveforms.float(), refs, est_stfts=out.stfts)
                loss.backward()
                optimizer.step()
                losses.append(float(loss))
            curve.append(float(np.mean(losses)))
        curves[precision] = curve
    return curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="simo-bsrnn-tiny", help="model folder in outputs/")
    parser.add_argument("--data-dir", default=str(REPO / "data" / "toy"))
    parser.add_argument("--out-dir", default=str(REPO / "outputs"))
    parser.add_argument("--train-epochs", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=10, help="steps per epoch")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    native, why = cpu_bf16_support()
    mode = "native (CPU autocast)" if native else f"EMULATED numerics ({why})"
    print(common.machine_line("cpu", args.threads))
    print(f"bf16: {mode}")

    folder = Path(args.out_dir) / args.preset
    multi = checkpoint_path(folder, ["vocals", "bass"])
    paths = [multi] if multi.is_file() else sorted(folder.glob("[a-z]*.ckpt"))
    paths = [p for p in paths if not p.stem.endswith("-last")]
    if not paths:
        sys.exit(f"no checkpoints in {folder}: run `make demo` first (or pass --preset)")
    models = [load_model(p) for p in paths]
    data = DataSettings(data_dir=Path(args.data_dir))
    result = evaluate(models, data, native)
    print(f"\nstand-in test set, {args.preset} ({', '.join(p.name for p in paths)})")
    print("| dB | uSDR fp32 | uSDR bf16 | change | cSDR fp32 | cSDR bf16 | change |")
    print("|---|---|---|---|---|---|---|")
    for i, target in enumerate(result["targets"]):
        u32, u16 = result["fp32"]["usdr"][i], result["bf16"]["usdr"][i]
        c32, c16 = result["fp32"]["csdr"][i], result["bf16"]["csdr"][i]
        print(f"| {target} | {u32:.3f} | {u16:.3f} | {u16 - u32:+.3f} | {c32:.3f} | {c16:.3f} "
              f"| {c16 - c32:+.3f} |")  # fmt: skip

    if args.train_epochs > 0:
        options = dict(models[0].config.to_dict())
        curves = train_curves(options, args.train_epochs, native, args.train_steps)
        print(f"\ntraining loss per epoch ({args.train_steps} steps of 2 x 1 s, same batches):")
        print("| epoch | fp32 | bf16 | relative change |")
        print("|---|---|---|---|")
        for e, (a, b) in enumerate(zip(curves["fp32"], curves["bf16"])):
            print(f"| {e + 1} | {a:.4f} | {b:.4f} | {(b - a) / a:+.2%} |")


if __name__ == "__main__":
    main()
