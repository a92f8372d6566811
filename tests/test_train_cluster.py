"""Cluster behaviour of train.py on the CPU: DDP validation counts each track once, and SLURM
auto-requeue restores only the run's own ``hpc_ckpt``."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from conftest import run_config  # noqa: E402

import train as train_script  # noqa: E402
from bsrnn.paths import run_root_dir  # noqa: E402


@pytest.fixture(scope="module")
def five_songs(tmp_path_factory) -> Path:
    """5 stand-in songs of 2-2.5 s: 3 for validation, 2 for training."""
    from bsrnn.data.toy import ToyParams, generate_toy_dataset

    root = tmp_path_factory.mktemp("toy5") / "toy"
    params = ToyParams(n_train=5, n_test=1, min_duration=2.0, max_duration=2.5, seed=1)
    generate_toy_dataset(root, params, progress=False)
    return root


def overrides(toy: Path, tmp: Path, *extra: str) -> list[str]:
    return [
        "dset=toy",
        f"dset.data_dir={toy}",
        f"out_dir={tmp / 'outputs'}",
        f"tb_dir={tmp / 'tb'}",
        "src_mod=bsrnn-tiny",
        "src_mod.feature_dim=8",
        "src_mod.num_repeat=1",
        "optim.max_epochs=1",
        "dset.samples_per_track=2",
        "dset.seq_duration=1.0",
        "dset.eval_seq_duration=1.0",
        "dset.num_workers=0",
        "trainer.accelerator=cpu",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        *extra,
    ]


def scalars(tb_dir: Path) -> dict[str, float]:
    """The last value of every scalar in the (only) TensorBoard run under ``tb_dir``."""
    (run,) = [p.parent for p in tb_dir.rglob("events.out.tfevents.*")][:1]
    acc = EventAccumulator(str(run))
    acc.Reload()
    return {tag: acc.Scalars(tag)[-1].value for tag in acc.Tags()["scalars"]}


@pytest.mark.slow
def test_ddp_validation_counts_each_of_three_tracks_once(five_songs, tmp_path):
    """3 validation tracks on 2 processes (2 + 1): the same val/usdr and val/loss as one
    process (lr 0: both validate the same initial network)."""
    common = ("dset.validation_tracks=3", "optim.lr=0", "optim.scale_lr=false")
    single = train_script.train(run_config(overrides(five_songs, tmp_path / "one", *common)))
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    args = overrides(five_songs, tmp_path / "two", *common, "trainer=ddp_cpu",
                     "trainer.accelerator=cpu", f"hydra.run.dir={tmp_path / 'hydra'}")  # fmt: skip
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    ddp = scalars(tmp_path / "two" / "tb")
    assert single["metrics"]["val/tracks"] == 3 and ddp["val/tracks"] == 3
    for key in ("val/usdr", "val/usdr_vocals", "val/loss"):
        assert ddp[key] == pytest.approx(single["metrics"][key], abs=1e-4), key


SLURM = {
    "SLURM_JOB_ID": "4242",
    "SLURM_JOB_NAME": "bsrnn-train",  # not "bash"/"interactive": Lightning manages the job
    "SLURM_NTASKS": "1",
    "SLURM_NTASKS_PER_NODE": "1",
    "SLURM_NNODES": "1",
    "SLURM_NODELIST": "node1",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
    "SLURM_ARRAY_TASK_ID": "1",
}


def test_slurm_requeue_restores_only_the_runs_own_hpc_checkpoint(
    toy_data, tmp_path, monkeypatch, caplog
):
    for key, value in SLURM.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)  # the working directory every array task shares
    base = overrides(toy_data, tmp_path, "dset.validation_tracks=1")
    # another task's requeue checkpoint in the shared working directory (not loadable here)
    (tmp_path / "hpc_ckpt_1.ckpt").write_bytes(b"another array task's checkpoint")
    with caplog.at_level(logging.INFO):
        first = train_script.train(run_config(base))
    assert "hpc_ckpt" not in caplog.text  # a fresh run: the foreign file was not restored
    assert first["epochs"] == 1 and first["global_step"] > 0
    caplog.clear()

    # requeued: the same task's own hpc_ckpt is resumed (and trains a second epoch)
    folder = tmp_path / "outputs" / "bsrnn-tiny"
    own = run_root_dir(folder, folder / "vocals.ckpt")
    own.mkdir(parents=True, exist_ok=True)
    shutil.copy(first["last_path"], own / "hpc_ckpt_1.ckpt")
    with caplog.at_level(logging.INFO):
        again = train_script.train(run_config([*base, "optim.max_epochs=2"]))
    restored = f"Restoring states from the checkpoint path at {own / 'hpc_ckpt_1.ckpt'}"
    assert restored in caplog.text
    assert again["epochs"] == 2 and again["global_step"] == 2 * first["global_step"]


def test_shard_sampler_takes_each_item_once_without_padding():
    from bsrnn.data.datasets import ShardSampler

    items = list(range(14))  # MUSDB's 14 validation tracks on 4 GPUs: 4, 4, 3, 3 (not 16)
    shards = [list(ShardSampler(items, num_replicas=4, rank=r)) for r in range(4)]
    assert sorted(i for s in shards for i in s) == items
    assert [len(s) for s in shards] == [4, 4, 3, 3]
    # fewer items than ranks: the rank without one repeats one but counts none
    lone = ShardSampler([0, 1], num_replicas=3, rank=2)
    assert list(lone) == [0] and lone.counted == 0
    assert ShardSampler([0, 1], num_replicas=3, rank=1).counted == 1
