"""Speed of our BSRNN against the plain per-band-loop baseline of the reference's newest network.

For each preset (``bsrnn``, ``bsrnn-opt``, ``simo-bsrnn``; options spelled out in PRESETS below,
mirroring ``conf/src_mod/*.yaml``), our network (``bsrnn.models.build_model``) and the
per-band baseline (``benchmarks/per_band_baseline.py``) hold the same weights (the baseline's
are mapped onto ours), so they compute the same function. Times a no-grad forward on
``--seconds`` of stereo audio and, with ``--train``, a training step (forward, t+tf L1 loss,
backward, Adam) on ``--train-batch`` x ``--train-seconds`` of stereo audio, and prints
baseline / ours. Then the "four stems" comparison: one ``simo-bsrnn`` forward against four
per-target ``bsrnn`` forwards (vocals, bass, drums, other), both ours, same input, same threads.
Measurements alternate between the networks so that they share the machine's noise.

    python benchmarks/bench_model.py [--seconds 10] [--repeats 3] [--threads 1] [--train]
        [--presets bsrnn bsrnn-opt simo-bsrnn] [--no-four-stems] [--device cpu]
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import time

import torch
from per_band_baseline import PerBandBSRNN

from bsrnn.models import build_model, count_parameters
from bsrnn.models.bsrnn_checkpoints import convert_reference_state_dict

SR = 44100
STEMS = ["vocals", "bass", "drums", "other"]

#: Every network option of each preset (conf/src_mod/<name>.yaml with the defaults filled in).
#: The same dict builds our network (build_model) and the per-band baseline (PerBandBSRNN).
PRESETS: dict[str, dict] = {
    "bsrnn": dict(
        targets=["vocals"], feature_dim=64, num_repeat=8, time_layer="lstm", band_layer="lstm",
        n_heads=1, group_num=1, fac_sep=2, bidirectional=True, n_att_head=0, attn_enc_dim=16,
        stereo=None, fac_tac=3, act_tac="tanh", fac_mask=4, mask_ctxt=0, joint_bandsplit=False,
        subtract_last_trgt=False, nb_channels=2, sample_rate=SR, n_fft=2048, n_hop=512,
        eps=1e-7,
    ),
    "bsrnn-opt": dict(
        targets=["vocals"], feature_dim=128, num_repeat=12, time_layer="lstm", band_layer="lstm",
        n_heads=1, group_num=1, fac_sep=2, bidirectional=True, n_att_head=2, attn_enc_dim=16,
        stereo="tac", fac_tac=3, act_tac="prelu", fac_mask=4, mask_ctxt=0, joint_bandsplit=False,
        subtract_last_trgt=False, nb_channels=2, sample_rate=SR, n_fft=2048, n_hop=512,
        eps=1e-7,
    ),
    # several targets: the joint 57-band split (joint_bandsplit is implied)
    "simo-bsrnn": dict(
        targets=STEMS, feature_dim=64, num_repeat=8, time_layer="lstm", band_layer="lstm",
        n_heads=1, group_num=1, fac_sep=2, bidirectional=True, n_att_head=0, attn_enc_dim=16,
        stereo=None, fac_tac=3, act_tac="tanh", fac_mask=4, mask_ctxt=0, joint_bandsplit=False,
        subtract_last_trgt=True, nb_channels=2, sample_rate=SR, n_fft=2048, n_hop=512,
        eps=1e-7,
    ),
}  # fmt: skip


def t_tf_loss(out, target_wave: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """The reference's t+tf L1: mean |wave error| + mean |Re error| + mean |Im error|."""
    n = target_wave.shape[-1]
    ref = torch.stft(
        target_wave.reshape(-1, n), 2048, 512, window=window, return_complex=True
    ).reshape(out["stfts"].shape)
    est = out["stfts"]
    return (
        (out["waveforms"] - target_wave).abs().mean()
        + (est.real - ref.real).abs().mean()
        + (est.imag - ref.imag).abs().mean()
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_forward(model, x, device) -> float:
    sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        model(x)
    sync(device)
    return time.perf_counter() - start


def time_train_step(model, opt, x, y, window, device) -> float:
    sync(device)
    start = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss = t_tf_loss(model(x), y, window)
    loss.backward()
    opt.step()
    sync(device)
    return time.perf_counter() - start


def pair(name: str, device: torch.device) -> dict[str, torch.nn.Module]:
    """The per-band baseline with random weights, and ours holding the same weights."""
    options = PRESETS[name]
    torch.manual_seed(0)
    baseline = PerBandBSRNN(**options)
    ours = build_model(options)
    ours.load_state_dict(convert_reference_state_dict(baseline.state_dict(), ours))
    assert count_parameters(ours) == count_parameters(baseline)
    return {"per-band baseline": baseline.to(device), "bsrnn (ours)": ours.to(device)}


def bench_preset(name: str, args, device: torch.device) -> None:
    models = pair(name, device)
    n_t = len(PRESETS[name]["targets"])
    params = count_parameters(models["bsrnn (ours)"])
    gen = torch.Generator().manual_seed(1)
    x = (0.1 * torch.randn(1, 2, int(args.seconds * SR), generator=gen)).to(device)
    warm = (0.1 * torch.randn(1, 2, SR, generator=gen)).to(device)

    outs = {}
    for label, model in models.items():  # warm-up (1 s), and a check that they agree
        model.eval()
        with torch.inference_mode():
            outs[label] = model(warm)["waveforms"]
    ref = outs["per-band baseline"]
    agree = ((outs["bsrnn (ours)"] - ref).abs().max() / ref.abs().max()).item()

    fwd: dict[str, list[float]] = {k: [] for k in models}
    train: dict[str, list[float]] = {k: [] for k in models}
    if args.train:
        window = torch.hann_window(2048, device=device)
        tx = 0.1 * torch.randn(args.train_batch, 2, int(args.train_seconds * SR), generator=gen)
        ty = 0.05 * torch.randn(args.train_batch, n_t, 2, tx.shape[-1], generator=gen)
        tx, ty = tx.to(device), ty.to(device)
        opts = {k: torch.optim.Adam(m.parameters(), lr=5e-4) for k, m in models.items()}
        for label, model in models.items():  # warm-up
            model.train()
            time_train_step(model, opts[label], tx, ty, window, device)
    for _ in range(args.repeats):
        for label, model in models.items():
            model.eval()
            fwd[label].append(time_forward(model, x, device))
            if args.train:
                model.train()
                train[label].append(time_train_step(model, opts[label], tx, ty, window, device))

    print(f"\n== {name}: {params:,} parameters, {n_t} target(s); ours vs baseline on 1 s: "
          f"max error {agree:.1e} of the peak")  # fmt: skip
    head = f"{'model':<20}{f'forward {args.seconds:g} s (s)':>22}{'speed-up':>10}"
    if args.train:
        title = f"train step {args.train_batch}x{args.train_seconds:g} s (s)"
        head += f"{title:>28}{'speed-up':>10}"
    print(head)
    base = "per-band baseline"
    fw0 = statistics.median(fwd[base])
    for label in models:
        fw = statistics.median(fwd[label])
        line = f"{label:<20}{fw:>22.3f}{fw0 / fw:>9.2f}x"
        if args.train:
            tr, tr0 = statistics.median(train[label]), statistics.median(train[base])
            line += f"{tr:>28.3f}{tr0 / tr:>9.2f}x"
        print(line)
    del models, outs
    gc.collect()


def bench_four_stems(args, device: torch.device) -> None:
    torch.manual_seed(0)
    simo = build_model(PRESETS["simo-bsrnn"]).to(device).eval()
    singles = {
        stem: build_model({**PRESETS["bsrnn"], "targets": [stem]}).to(device).eval()
        for stem in STEMS
    }
    gen = torch.Generator().manual_seed(2)
    x = (0.1 * torch.randn(1, 2, int(args.seconds * SR), generator=gen)).to(device)
    warm = x[..., :SR]
    time_forward(simo, warm, device)
    for model in singles.values():
        time_forward(model, warm, device)
    t_simo, t_four = [], []
    for _ in range(args.repeats):
        t_simo.append(time_forward(simo, x, device))
        t_four.append(sum(time_forward(m, x, device) for m in singles.values()))
    simo_s, four_s = statistics.median(t_simo), statistics.median(t_four)
    n_single = sum(count_parameters(m) for m in singles.values())
    print(f"\n== four stems, forward {args.seconds:g} s (ours)")
    print(f"{'setup':<42}{'params':>14}{'time (s)':>12}{'speed-up':>10}")
    print(f"{'4 x bsrnn (vocals, bass, drums, other)':<42}{n_single:>14,}{four_s:>12.3f}"
          f"{1.0:>9.2f}x")  # fmt: skip
    print(f"{'1 x simo-bsrnn':<42}{count_parameters(simo):>14,}{simo_s:>12.3f}"
          f"{four_s / simo_s:>9.2f}x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", choices=list(PRESETS), default=list(PRESETS))
    parser.add_argument("--seconds", "--forward-seconds", type=float, default=10.0,
                        help="stereo audio per timed forward (default 10)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--train", action="store_true", help="also time a training step")
    parser.add_argument("--train-batch", type=int, default=2)
    parser.add_argument("--train-seconds", type=float, default=3.0)
    parser.add_argument("--four-stems", action=argparse.BooleanOptionalAction, default=True,
                        help="compare one simo-bsrnn forward with four bsrnn forwards")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"machine: {platform.processor() or platform.machine()}, {args.threads} thread(s), "
          f"device {device}, torch {torch.__version__}")  # fmt: skip
    for name in args.presets:
        bench_preset(name, args, device)
    if args.four_stems:
        bench_four_stems(args, device)


if __name__ == "__main__":
    main()
