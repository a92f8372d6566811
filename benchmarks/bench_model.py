"""Speed of our BSRNN against the plain per-band-loop baseline, in one run.

Times (a) a training step (forward, t+tf L1 loss, backward, Adam) on batch 2 x 3 s stereo and
(b) a no-grad forward on 30 s stereo, for the vocals 64/8 model, and prints the ratios.
Both networks hold the same weights (the baseline's are mapped onto ours), so they compute the
same function; the measurements alternate between them to share the machine's noise.

    python benchmarks/bench_model.py [--repeats 3] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from per_band_baseline import PerBandBSRNN

from bsrnn import BSRNN
from bsrnn.checkpoints import convert_reference_state_dict

SR = 44100


def t_tf_loss(out, target_wave: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """L1 on the waveform + L1 on real and imaginary parts of the STFT."""
    b, s, c, n = target_wave.shape
    ref = torch.stft(target_wave.reshape(-1, n), 2048, 512, window=window, return_complex=True)
    est = out["stfts"].reshape(ref.shape)
    return (out["waveforms"] - target_wave).abs().mean() + (
        torch.view_as_real(est) - torch.view_as_real(ref)
    ).abs().mean()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_train_step(model, opt, x, y, window, device) -> float:
    sync(device)
    start = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss = t_tf_loss(model(x), y, window)
    loss.backward()
    opt.step()
    sync(device)
    return time.perf_counter() - start


def time_forward(model, x, device) -> float:
    sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        model(x)
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--forward-seconds", type=float, default=30.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)

    baseline = PerBandBSRNN(target="vocals", feature_dim=64, num_repeat=8).to(device)
    ours = BSRNN(target="vocals", feature_dim=64, num_repeat=8)
    ours.load_state_dict(convert_reference_state_dict(baseline.state_dict(), ours))
    ours.to(device)
    models = {"per-band baseline": baseline, "bsrnn (ours)": ours}
    opts = {k: torch.optim.Adam(m.parameters(), lr=5e-4) for k, m in models.items()}
    window = torch.hann_window(2048, device=device)

    x = torch.randn(2, 2, 3 * SR, device=device) * 0.1
    y = torch.randn(2, 1, 2, 3 * SR, device=device) * 0.05
    long_x = torch.randn(1, 2, int(args.forward_seconds * SR), device=device) * 0.1

    train: dict[str, list[float]] = {k: [] for k in models}
    fwd: dict[str, list[float]] = {k: [] for k in models}
    for name, model in models.items():  # warm-up
        model.train()
        time_train_step(model, opts[name], x, y, window, device)
    for _ in range(args.repeats):
        for name, model in models.items():
            model.train()
            train[name].append(time_train_step(model, opts[name], x, y, window, device))
            model.eval()
            fwd[name].append(time_forward(model, long_x, device))

    base = "per-band baseline"
    print(f"machine: {platform.processor() or platform.machine()}, {args.threads} threads, "
          f"device {device}, torch {torch.__version__}")  # fmt: skip
    fwd_title = f"forward {args.forward_seconds:g} s (s)"
    print(f"{'model':<20}{'train step (s)':>16}{'speed-up':>10}{fwd_title:>20}{'speed-up':>10}")
    for name in models:
        tr, fw = statistics.median(train[name]), statistics.median(fwd[name])
        tr0, fw0 = statistics.median(train[base]), statistics.median(fwd[base])
        print(f"{name:<20}{tr:>16.3f}{tr0 / tr:>9.2f}x{fw:>20.3f}{fw0 / fw:>9.2f}x")


if __name__ == "__main__":
    main()
