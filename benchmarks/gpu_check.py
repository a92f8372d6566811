"""One prepared check of the GPU paths (about 8 minutes on one H100/H200), JSON and Markdown out.

    python benchmarks/gpu_check.py --out gpu_check/                 # on a GPU node
    python benchmarks/gpu_check.py --device cpu --quick --out tmp/  # smoke test of the script

Sections (each catches and reports its own exceptions, so one failure never hides the rest):

- ``environment``: device, torch/CUDA/cuDNN versions, native bf16 (the project's own rule).
- ``precision_matrix``: presets bsrnn, simo-bsrnn-opt, bs-roformer (and scnet when
  ``conf/src_mod/scnet.yaml`` exists) in fp32, bf16-mixed and 16-mixed (with a GradScaler):
  forward + loss + backward on one short batch; output dtypes (waveforms, STFTs, the RNNs'
  outputs), the loss against fp32's, finite gradients, or the exception.
- ``train_step``: training-step time and peak memory at each recipe's batch, segment and
  precision (``conf/experiment/*.yaml`` composed with Hydra), with matmul precision highest
  and high (TF32), and with ``torch.compile``.
- ``train_epoch``: ``train.py`` one epoch on the stand-in data (``dset=toy``, made by
  ``prep_dataset.py`` as the demo does) with ``trainer=gpu``, then ``evaluate.py`` on the
  device (subprocesses).
- ``gpu_vs_cpu``: the largest |device - CPU| difference of a 60 s separation (random weights,
  fp32, matmul precision highest).
- ``ddp_one_device``: ``train.py trainer=ddp trainer.devices=1`` one epoch.

``--quick`` uses the tiny presets, batch 2 and short audio (seconds on a CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import common  # noqa: F401  (first: puts src/ and the repository on sys.path)
import torch
from common import REPO, compose, sync

from bsrnn import runtime

PRESETS = ["bsrnn", "simo-bsrnn-opt", "bs-roformer", "scnet"]
QUICK_PRESETS = {"bsrnn": "bsrnn-tiny", "simo-bsrnn-opt": "simo-bsrnn-tiny",
                 "bs-roformer": "bs-roformer-tiny", "scnet": "scnet-tiny"}  # fmt: skip
#: The recipe (conf/experiment) whose batch, segment and precision each preset is timed at.
RECIPES = {"bsrnn": "bsrnn", "simo-bsrnn-opt": "obsrnn-simo", "bs-roformer": "bs-roformer",
           "scnet": "scnet"}  # fmt: skip
PRECISIONS = {"fp32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def _error(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err) else ''}"[:400]


def build(overrides: list[str]):
    """(settings, network, loss) of a composed config."""
    from bsrnn.losses import build_loss
    from bsrnn.models import build_model

    settings = common.run_settings(overrides)
    torch.manual_seed(0)
    net = build_model(settings.model)
    optim = settings.optim
    loss = build_loss(optim, net.loss_preference, net.stft_spec)
    return settings, net, loss


def presets(quick: bool) -> list[str]:
    present = [p for p in PRESETS if common.preset_exists(p)]
    if not quick:
        return present
    return [QUICK_PRESETS[p] for p in present if common.preset_exists(QUICK_PRESETS[p])]


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------
def environment(device: torch.device) -> dict[str, Any]:
    info = common.machine_info(device)
    info.update(
        name=info.get("gpu", info["cpu"]),
        cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        cuda=torch.version.cuda,
        line=common.machine_line(device),
    )
    if device.type == "cuda":
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
    return info


def _step(net, loss_fn, mixture, refs, dtype, device, scaler=None):
    """Forward + loss + backward under ``dtype`` autocast (None: fp32). Returns the loss, the
    output dtypes and whether every gradient is finite."""
    rnn_dtypes: set[str] = set()
    hooks = [m.register_forward_hook(lambda _m, _i, o: rnn_dtypes.add(str(o[0].dtype)))
             for m in net.modules() if isinstance(m, torch.nn.LSTM | torch.nn.GRU)]  # fmt: skip
    net.zero_grad(set_to_none=True)
    try:
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = net(mixture)
            loss = loss_fn(out.waveforms, refs[..., : out.waveforms.shape[-1]], out.stfts)
        (scaler.scale(loss) if scaler is not None else loss).backward()
    finally:
        for h in hooks:
            h.remove()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    return {
        "loss": float(loss.detach().float()),
        "waveforms_dtype": str(out.waveforms.dtype),
        "stfts_dtype": None if out.stfts is None else str(out.stfts.dtype),
        "rnn_output_dtypes": sorted(rnn_dtypes),
        "grads_finite": all(bool(torch.isfinite(g).all()) for g in grads),
    }


def precision_matrix(device: torch.device, quick: bool) -> list[dict[str, Any]]:
    rows = []
    seconds = 0.5 if quick else 3.0
    for preset in presets(quick):
        try:
            _, net, loss_fn = build([f"src_mod={preset}"])
        except Exception as err:  # noqa: BLE001
            rows.append({"preset": preset, "error": _error(err)})
            continue
        net = net.to(device).train()
        loss_fn = loss_fn.to(device)
        channels, samples = net.audio_channels or 2, int(seconds * net.sample_rate)
        g = torch.Generator().manual_seed(0)
        mixture = (torch.randn(2, channels, samples, generator=g) * 0.1).to(device)
        refs = (torch.randn(2, len(net.targets), channels, samples, generator=g) * 0.1).to(device)
        reference = None
        for name, dtype in PRECISIONS.items():
            row: dict[str, Any] = {"preset": preset, "precision": name}
            try:
                scaler = torch.amp.GradScaler(device.type) if name == "16-mixed" else None
                row.update(_step(net, loss_fn, mixture, refs, dtype, device, scaler))
                if reference is None:
                    reference = row["loss"]
                row["loss_rel_diff_vs_fp32"] = abs(row["loss"] - reference) / max(
                    abs(reference), 1e-12
                )
            except Exception as err:  # noqa: BLE001
                row["error"] = _error(err)
            rows.append(row)
        del net
    return rows


def _time_steps(net, loss_fn, batch, device, dtype, steps: int, warmup: int) -> dict[str, Any]:
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    mixture, refs = batch
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(warmup + steps):
        sync(device)
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = net(mixture)
            loss = loss_fn(out.waveforms, refs[..., : out.waveforms.shape[-1]], out.stfts)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    result = {"step_s": sum(times) / len(times), "min_step_s": min(times)}
    if device.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return result


def train_step(device: torch.device, quick: bool) -> list[dict[str, Any]]:
    rows = []
    for preset in presets(quick):
        base = preset.replace("-tiny", "") if quick else preset
        base = next((k for k, v in QUICK_PRESETS.items() if v == preset), base)
        recipe = RECIPES.get(base)
        if recipe is None or not common.experiment_exists(recipe):
            rows.append({"preset": preset, "error": f"no recipe conf/experiment/{recipe}.yaml"})
            continue
        overrides = [f"+experiment={recipe}"]
        if quick:
            # batch 2: the masked loss of the SCNet recipes refuses a batch of one
            overrides += [f"src_mod={preset}", "dset.batch_size=2", "dset.seq_duration=0.5"]
        try:
            cfg = compose(overrides)
            settings, net, loss_fn = build(overrides)
        except Exception as err:  # noqa: BLE001
            rows.append({"preset": preset, "recipe": recipe, "error": _error(err)})
            continue
        batch_size, seconds = int(cfg.dset.batch_size), float(cfg.dset.seq_duration)
        precision = str(cfg.trainer.precision)
        dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
        if dtype is torch.bfloat16 and not runtime.bf16_native(device)[0]:
            dtype, precision = None, f"32 ({precision} falls back here: no native bf16)"
        channels, samples = net.audio_channels or 2, int(seconds * net.sample_rate)
        batch = (
            torch.randn(batch_size, channels, samples, device=device) * 0.1,
            torch.randn(batch_size, len(net.targets), channels, samples, device=device) * 0.1,
        )
        variants = [("highest", False), ("high", False), ("high", True)]
        for matmul, compiled in variants:
            row = {"preset": preset, "recipe": recipe, "batch": batch_size,
                   "seconds": seconds, "precision": precision,
                   "matmul_precision": matmul, "compile": compiled}  # fmt: skip
            if compiled and quick:
                row["skipped"] = "--quick (compilation takes minutes)"
                rows.append(row)
                continue
            try:
                runtime.apply_matmul_precision(matmul)
                torch.manual_seed(0)
                model = build(overrides)[1].to(device).train()
                model = torch.compile(model) if compiled else model
                steps, warmup = (2, 1) if quick else (5, 2)
                row.update(
                    _time_steps(model, loss_fn.to(device), batch, device, dtype, steps, warmup)
                )
            except Exception as err:  # noqa: BLE001
                row["error"] = _error(err)
            finally:
                runtime.apply_matmul_precision("highest")
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            rows.append(row)
        del net, batch
    return rows


def _run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, **(env or {})))  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"command": " ".join(cmd[1:]), "ok": False, "error": f"timeout after {timeout} s"}
    result = {"command": " ".join(cmd[1:]), "ok": proc.returncode == 0,
              "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    if proc.returncode != 0:
        result["error"] = (proc.stderr or proc.stdout)[-1500:]
    return result


def _toy(work: Path, quick: bool) -> list[str]:
    data = work / "toy"
    small = ["dset.toy.n_train=3", "dset.toy.n_test=1", "dset.toy.min_duration=3.0",
             "dset.toy.max_duration=3.5"] if quick else []  # fmt: skip
    common = ["dset=toy", f"dset.data_dir={data}", *small, f"out_dir={work / 'outputs'}",
              f"tb_dir={work / 'tb'}", f"hydra.run.dir={work / 'hydra'}",
              "dset.num_workers=0", "trainer.enable_progress_bar=false"]  # fmt: skip
    return common + (["src_mod=bsrnn-tiny", "src_mod.feature_dim=8", "src_mod.num_repeat=1",
                      "dset.samples_per_track=2", "dset.seq_duration=1.0",
                      "dset.eval_seq_duration=1.0", "dset.validation_tracks=1"]
                     if quick else ["src_mod=bsrnn-tiny"])  # fmt: skip


def train_epoch(device: torch.device, quick: bool, work: Path) -> dict[str, Any]:
    py = sys.executable
    common = _toy(work, quick)
    trainer = ["trainer=gpu"] if device.type == "cuda" else ["trainer=cpu"]
    prep = [a for a in common if a.startswith(("dset", "hydra"))]
    steps = {"prep_dataset": _run([py, "prep_dataset.py", *prep], 600)}
    steps["train"] = _run([py, "train.py", *common, *trainer, "optim.max_epochs=1",
                           "trainer.num_sanity_val_steps=0"], 900)  # fmt: skip
    device_name = "cuda" if device.type == "cuda" else "cpu"
    steps["evaluate"] = _run([py, "evaluate.py", *common, f"eval.device={device_name}",
                              "eval.precision=auto"], 900)  # fmt: skip
    return steps


def ddp_one_device(device: torch.device, quick: bool, work: Path) -> dict[str, Any]:
    common = _toy(work, quick)
    trainer = (["trainer=ddp", "trainer.devices=1"] if device.type == "cuda"
               else ["trainer=ddp_cpu", "trainer.devices=1"])  # fmt: skip
    return _run([sys.executable, "train.py", *common, *trainer, "optim.max_epochs=1",
                 "trainer.num_sanity_val_steps=0", f"tb_dir={work / 'tb_ddp'}",
                 f"out_dir={work / 'outputs_ddp'}"], 900)  # fmt: skip


def gpu_vs_cpu(device: torch.device, quick: bool) -> dict[str, Any]:
    from bsrnn.separator import Separator

    preset = "bsrnn-tiny" if quick else "bsrnn"
    seconds = 5.0 if quick else 60.0
    _, net, _ = build([f"src_mod={preset}"])
    net.eval()
    g = torch.Generator().manual_seed(0)
    mixture = torch.randn(1, 2, int(seconds * net.sample_rate), generator=g) * 0.1
    runtime.apply_matmul_precision("highest")
    with torch.no_grad():
        cpu = Separator([net], device="cpu", precision="fp32")(mixture)
        other = Separator([net.to(device)], device=device, precision="fp32")(mixture.to(device))
    diff = (other.cpu() - cpu).abs()
    return {"preset": preset, "seconds": seconds, "max_abs_diff": float(diff.max()),
            "rms_diff": float(diff.pow(2).mean().sqrt()), "device": str(device),
            "note": "the same device: trivially 0" if device.type == "cpu" else ""}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [f"# GPU check: {env.get('name')} ({env.get('device')}), {env.get('date')}", "",
             f"torch {env.get('torch')}, CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')}, "
             f"native bf16: {env.get('bf16_native')} ({env.get('bf16_reason')})", "",
             env.get("line", ""), "",
             "## Precision matrix", "",
             "| preset | precision | loss | rel. diff vs fp32 | waveforms | STFTs | RNN out | "
             "grads finite | error |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in report["precision_matrix"]:
        lines.append(
            f"| {r.get('preset')} | {r.get('precision', '')} | {r.get('loss', '')} | "
            f"{r.get('loss_rel_diff_vs_fp32', '')} | {r.get('waveforms_dtype', '')} | "
            f"{r.get('stfts_dtype', '')} | {','.join(r.get('rnn_output_dtypes', []))} | "
            f"{r.get('grads_finite', '')} | {r.get('error', '')} |"
        )
    lines += ["", "## Training step", "",
              "| preset | recipe | batch x s | precision | matmul | compile | step (s) | "
              "peak GiB | note |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in report["train_step"]:
        step = f"{r['step_s']:.3f}" if "step_s" in r else ""
        peak = f"{r['peak_memory_gib']:.2f}" if "peak_memory_gib" in r else ""
        lines.append(
            f"| {r.get('preset')} | {r.get('recipe', '')} | {r.get('batch', '')} x "
            f"{r.get('seconds', '')} | {r.get('precision', '')} | "
            f"{r.get('matmul_precision', '')} | {r.get('compile', '')} | {step} | {peak} | "
            f"{r.get('error', r.get('skipped', ''))} |"
        )
    lines += ["", "## train.py / evaluate.py / DDP with one device", ""]
    runs = {**report["train_epoch"], "ddp_one_device": report["ddp_one_device"]}
    for name, r in runs.items():
        if isinstance(r, dict) and "command" in r:
            status = "ok" if r.get("ok") else "FAILED"
            lines.append(f"- {name}: {status} ({r.get('seconds', '?')} s) `{r['command']}`")
            if not r.get("ok"):
                lines.append(f"  ```\n  {r.get('error', '')[-600:]}\n  ```")
        else:
            lines.append(f"- {name}: {r}")
    g = report["gpu_vs_cpu"]
    lines += ["", "## Device vs CPU", "", f"{json.dumps(g)}", ""]
    lines += [f"Total: {report['seconds']:.0f} s", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny presets, short audio")
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSON and .md")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: --device cuda but CUDA is not available (--device cpu)")
    if args.threads is not None:
        runtime.set_num_threads(args.threads)
    t0 = time.perf_counter()
    report: dict[str, Any] = {"environment": environment(device), "quick": args.quick}
    sections = [
        ("precision_matrix", lambda: precision_matrix(device, args.quick)),
        ("train_step", lambda: train_step(device, args.quick)),
        ("gpu_vs_cpu", lambda: gpu_vs_cpu(device, args.quick)),
    ]
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        work = Path(tmp)
        sections += [
            ("train_epoch", lambda: train_epoch(device, args.quick, work)),
            ("ddp_one_device", lambda: ddp_one_device(device, args.quick, work)),
        ]
        for name, fn in sections:
            s0 = time.perf_counter()
            try:
                report[name] = fn()
            except Exception as err:  # noqa: BLE001
                report[name] = {"error": _error(err), "traceback": traceback.format_exc()[-2000:]}
            print(f"gpu_check: {name} done in {time.perf_counter() - s0:.1f} s", flush=True)
    report["seconds"] = time.perf_counter() - t0
    common.write_results(args.out, "gpu_check", markdown(report), report)
    return report


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
