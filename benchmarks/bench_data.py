"""Training examples per second delivered by the DataModule, next to the model's training rate.

    python benchmarks/bench_data.py                 # both datasets, 2 workers, CPU model step
    python benchmarks/bench_data.py --workers 4 --examples 400 --steps 5
    python benchmarks/bench_data.py --feature-dim 16 --num-repeat 2 --threads 1   # bsrnn-tiny
    python benchmarks/bench_data.py --quick         # a small stand-in set, seconds
    python benchmarks/bench_data.py --augment --workers 0 --examples 24 --no-model
        # augmentation cost: augment=none/reference/msst, then each heavy MSST effect made
        # certain (probability 1 for every source) against the light MSST set alone

The loaders run the real ``dset=musdb18hq`` and ``dset=musdb18hq_sad`` configs on the stand-in
data (data/toy/ when it is complete, else generated into a temporary folder). The model row
times a training step of the vocals network (64/8, or ``--feature-dim 16 --num-repeat 2``
for bsrnn-tiny): batch 2 x 3 s, forward, L1 loss on the waveform and the STFT, backward, Adam
step, after one warm-up step. The loader is not the bottleneck when it
delivers more examples per second than the step consumes.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (first: puts src/ and the repository on sys.path)
import torch
from common import REPO

from bsrnn.data import DataSettings, MusdbDataModule, generate_toy_dataset
from bsrnn.data.toy import toy_dataset_complete


def dataset_settings(overrides: list[str]) -> DataSettings:
    """The data settings of ``overrides`` composed from conf/, as train.py checks them."""
    return common.run_settings(overrides).data


#: A small stand-in dataset for ``--quick`` (four training tracks of 8-9 s, one test track).
QUICK_TOY = ["dset.toy.n_train=4", "dset.toy.n_test=1", "dset.toy.min_duration=8.0",
             "dset.toy.max_duration=9.0"]  # fmt: skip


def toy_dataset(tmp: str, quick: bool = False) -> Path:
    settings = dataset_settings(["dset=toy", *(QUICK_TOY if quick else [])])
    params = settings.toy
    local = REPO / settings.data_dir
    if toy_dataset_complete(local, params):
        return local
    root = Path(tmp) / "toy"
    print(f"# generating the stand-in dataset into {root}", flush=True)
    generate_toy_dataset(root, params, progress=False)
    return root


def loader_rate(
    dset: str, root: Path, args: argparse.Namespace, extra: tuple[str, ...] = (), what: str = ""
) -> dict:
    overrides = [
        f"dset={dset}",
        f"dset.data_dir={root}",
        "dset.validation_tracks=2",
        f"dset.num_workers={args.workers}",
        f"dset.batch_size={args.batch}",
        *extra,
    ]
    dm = MusdbDataModule(dataset_settings(overrides), targets=["vocals"])
    if dm.settings.sampling == "activity":
        dm.prepare_dataset(progress=False)
    dm.setup("fit")
    loader = dm.train_dataloader()
    n, epoch, start, first = 0, 0, time.perf_counter(), None
    while n < args.examples:
        loader.sampler.set_epoch(epoch)
        for mixture, _ in loader:
            if first is None:  # worker start-up and the first batch are warm-up
                first = time.perf_counter()
                continue
            n += mixture.shape[0]
            if n >= args.examples:
                break
        epoch += 1
    elapsed = time.perf_counter() - first
    what = what or f"loader {dset}"
    return {"what": what, "examples_s": n / elapsed, "warmup_s": first - start}


def augment_rows(root: Path, args: argparse.Namespace) -> list[dict]:
    """Loader rates (dset=musdb18hq) per augmentation set, then per heavy MSST effect."""
    from bsrnn.data.msst_augment import AUDIOMENTATIONS_EFFECTS, MSST_ALL, PEDALBOARD_EFFECTS

    heavy = (*AUDIOMENTATIONS_EFFECTS, *PEDALBOARD_EFFECTS)
    light = ["augment=msst", "dset.augment.mp3_compression_on_mixture=0"]
    light += [f"dset.augment.all.{e}=0" for e in heavy if e in MSST_ALL]
    for stem in ("vocals", "bass", "drums", "other"):
        light += [f"dset.augment.stems.{stem}.{e}=0" for e in heavy]
    light = _only_known(light)
    cases = [
        ("augment=none", ["augment=none"]),
        ("augment=reference", ["augment=reference"]),
        ("augment=msst (MSST's p)", ["augment=msst"]),
        ("msst light (heavy off)", light),
    ]
    for effect in heavy:
        cases.append((f"light + {effect} p=1", [*light, *_certain(effect)]))
    cases.append(
        ("light + mp3 of mixture p=1", [*light, "dset.augment.mp3_compression_on_mixture=1"])
    )
    rows = []
    for what, extra in cases:
        rows.append(loader_rate("musdb18hq", root, args, tuple(extra), what))
        print(f"{what:<40} {rows[-1]['examples_s']:>8.2f} examples/s", flush=True)
        gc.collect()
    return rows


def _certain(effect: str) -> list[str]:
    """Overrides that apply ``effect`` to every source (probability 1), with MSST's ranges
    (those of its vocals, else other, section for an effect that ``all`` does not state)."""
    from bsrnn.data.msst_augment import EFFECT_RANGES, MSST_ALL, MSST_STEMS

    out = [f"dset.augment.stems.{s}.{effect}=1.0" for s in MSST_STEMS if effect in MSST_STEMS[s]]
    if effect in MSST_ALL:
        return [*out, f"dset.augment.all.{effect}=1.0"]
    ranges = next(MSST_STEMS[s] for s in ("vocals", "other") if effect in MSST_STEMS[s])
    keys = [k for pair in EFFECT_RANGES[effect] for k in pair]
    return [
        *out,
        f"+dset.augment.all.{effect}=1.0",
        *(f"+dset.augment.all.{k}={ranges[k]}" for k in keys),
    ]


def _only_known(overrides: list[str]) -> list[str]:
    """Drop stem overrides of keys MSST's stem sections do not state (Hydra would add them)."""
    from bsrnn.data.msst_augment import MSST_STEMS

    out = []
    for o in overrides:
        parts = o.split("=")[0].split(".")
        if parts[:3] == ["dset", "augment", "stems"] and parts[4] not in MSST_STEMS[parts[3]]:
            continue
        out.append(o)
    return out


def model_rate(args: argparse.Namespace) -> dict:
    size = [f"src_mod.feature_dim={args.feature_dim}", f"src_mod.num_repeat={args.num_repeat}"]
    net = common.preset_model("bsrnn", size, seed=0).train()
    loss_fn = common.preset_loss(net)
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-4)
    n = 3 * 44100
    sources = 0.1 * torch.randn(args.batch, 1, 2, n)
    mixture = sources[:, 0] + 0.1 * torch.randn(args.batch, 2, n)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        out = net(mixture)
        loss_fn(out.waveforms, sources, est_stfts=out.stfts).backward()
        optimizer.step()

    start = time.perf_counter()
    step()  # warm-up
    first = time.perf_counter()
    for _ in range(args.steps):
        step()
    elapsed = time.perf_counter() - first
    rate = args.batch * args.steps / elapsed
    what = f"train step bsrnn {args.feature_dim}/{args.num_repeat} (CPU)"
    return {"what": what, "examples_s": rate, "warmup_s": first - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--examples", type=int, default=200, help="timed examples per loader")
    parser.add_argument("--steps", type=int, default=3, help="timed model steps")
    parser.add_argument("--no-model", action="store_true", help="skip the model step")
    parser.add_argument("--feature-dim", type=int, default=64, help="16 for bsrnn-tiny")
    parser.add_argument("--num-repeat", type=int, default=8, help="2 for bsrnn-tiny")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (model)")
    parser.add_argument(
        "--augment", action="store_true", help="loader rate per augmentation (dset=musdb18hq)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small stand-in set, bsrnn-tiny's size, 8 examples, 1 step",
    )
    args = parser.parse_args()  # fmt: skip
    if args.quick:
        args.feature_dim, args.num_repeat, args.examples, args.steps = 16, 2, 8, 1
        args.workers, args.threads = 0, args.threads or 1
    if args.threads:
        torch.set_num_threads(args.threads)
    print(common.machine_line("cpu"))
    print(f"# batch {args.batch} x 3 s stereo 44.1 kHz; {args.workers} loader workers")
    with tempfile.TemporaryDirectory() as tmp:
        root = toy_dataset(tmp, args.quick)
        if args.augment:
            rows = augment_rows(root, args)
        else:
            rows = [loader_rate(d, root, args) for d in ("musdb18hq", "musdb18hq_sad")]
        gc.collect()  # stop the loaders' worker processes before timing the model
    if not args.no_model:
        rows.append(model_rate(args))
    print(f"{'':<40} {'examples/s':>10} {'batches/s':>9} {'warm-up s':>9}")
    for r in rows:
        print(
            f"{r['what']:<40} {r['examples_s']:>10.2f} {r['examples_s'] / args.batch:>9.2f} "
            f"{r['warmup_s']:>9.2f}"
        )
    if not args.no_model:
        slowest = min(r["examples_s"] for r in rows[:-1])
        print(f"# slowest loader / model step: {slowest / rows[-1]['examples_s']:.1f}x")


if __name__ == "__main__":
    main()
