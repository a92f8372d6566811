"""jobs/: the parameter array, the OAR booking script and the SLURM array script.

The schedulers are replaced by stand-ins on PATH (``oarsub``, ``srun``) and the interpreter by
one that records its arguments, so the scripts' own logic runs for real.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[1]
JOBS = REPO / "jobs"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import train  # noqa: E402, F401  (registers the schemas)
from bsrnn.cli import settings_from_config  # noqa: E402


def active_lines(path: Path) -> list[str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _stub(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)
    return path


@pytest.fixture
def stubs(tmp_path):
    """PATH with recording oarsub/srun, and $PYTHON recording train.py's arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "calls.txt"
    _stub(bin_dir, "oarsub", f'printf "oarsub %s\\n" "$*" >> {record}\n')
    _stub(bin_dir, "srun", f'printf "srun\\n" >> {record}\nexec "$@"\n')
    python = _stub(
        bin_dir,
        "fake-python",
        f'for a in "$@"; do printf "[%s]" "$a"; done >> {record}\necho >> {record}\n',
    )
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", PYTHON=str(python))
    env.pop("SLURM_ARRAY_TASK_ID", None)
    return env, record


def test_params_lines_are_valid_training_configs():
    lines = active_lines(JOBS / "params.txt")
    assert len(lines) >= 15
    assert '"optim.loss_domain=t"' in lines and '"src_mod.time_layer=gru"' in lines
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        for line in lines:
            assert line.startswith('"') and line.endswith('"'), line  # the seed's quoted form
            cfg = compose("config", overrides=shlex.split(line)[0].split())
            settings_from_config(cfg)  # raises on an invalid option


def test_run_train_gives_each_variant_its_place_and_resumes(stubs):
    env, record = stubs
    proc = subprocess.run(
        ["bash", str(JOBS / "run_train.sh"), "src_mod.n_att_head=1 src_mod.attn_enc_dim=4"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    slug = "src_mod.n_att_head-1_src_mod.attn_enc_dim-4"
    assert record.read_text().strip() == (
        f"[train.py][out_dir=outputs/variants/{slug}][tb_version={slug}][ckpt_path=auto]"
        "[src_mod.n_att_head=1][src_mod.attn_enc_dim=4]"
    )


def test_run_train_composes_with_hydra():
    """The overrides the script builds are accepted by train.py's config (``--cfg job``)."""
    env = dict(os.environ, PYTHON=sys.executable, TRAIN_ARGS="--cfg job")
    proc = subprocess.run(
        ["bash", str(JOBS / "run_train.sh"), '"src_mod=bsrnn-large optim=large"'],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "out_dir: outputs/variants/src_mod-bsrnn-large_optim-large" in proc.stdout
    assert "feature_dim: 128" in proc.stdout and "lr: 0.00025" in proc.stdout


def test_book_train_submits_an_oar_array_over_params(stubs, tmp_path):
    env, record = stubs
    proc = subprocess.run(
        [str(JOBS / "book_train"), "gruss"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    n = len(active_lines(JOBS / "params.txt"))
    assert f"{n} job(s)" in proc.stdout
    call = record.read_text().strip()
    assert call.startswith("oarsub ")
    assert "--array-param-file jobs/params.txt jobs/run_train.sh" in call
    assert "-p gruss" in call and "walltime=24" in call

    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    proc = subprocess.run(
        [str(JOBS / "book_train")],
        env=dict(env, PARAMS=str(empty)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "no active line" in proc.stderr


def test_slurm_array_task_runs_its_line(stubs, tmp_path):
    env, record = stubs
    params = tmp_path / "params.txt"
    lines = ["# header", '"optim.loss_domain=t"', "", "# group"]
    lines += ['"src_mod.n_att_head=2 src_mod.attn_enc_dim=10"']
    params.write_text("\n".join(lines) + "\n")
    env = dict(
        env,
        PARAMS=str(params),
        SLURM_ARRAY_TASK_ID="2",
        SLURM_GPUS_ON_NODE="4",
        SLURM_NNODES="2",
        SLURM_SUBMIT_DIR=str(REPO),
    )
    proc = subprocess.run(
        ["bash", str(JOBS / "slurm_train.sbatch")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    calls = record.read_text().splitlines()
    assert calls[0] == "srun"
    assert "[src_mod.n_att_head=2][src_mod.attn_enc_dim=10]" in calls[1]
    assert calls[1].endswith("[trainer.devices=4][trainer.num_nodes=2]")

    proc = subprocess.run(
        ["bash", str(JOBS / "slurm_train.sbatch")],
        env=dict(env, SLURM_ARRAY_TASK_ID="3"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "no active line 3" in proc.stderr
