"""Shared test helpers: paths to the repository and to the reference fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bsrnn.cli import register_schemas

# One torch thread for the whole suite: the models here are tiny, and on a 2-core machine two
# OpenMP threads stall badly whenever anything else (a data worker, a subprocess) needs a core.
torch.set_num_threads(1)  # subprocesses get OMP_NUM_THREADS=1 from the tests that start them

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures" / "reference-ckpt"
NEWEST_FIXTURES = SHARED / "fixtures" / "reference-newest"

# the presets in conf/src_mod/ build on the architecture schemas the entry scripts register
register_schemas()


def run_config(overrides: list[str]):
    """The config an entry script would get for these overrides (of the real conf/), with
    Hydra's run information set as in a run."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = hydra_compose("config", overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def small_run(toy: Path, tmp: Path, preset: str) -> list[str]:
    """Overrides of a one-epoch run of ``preset`` on the stand-in data ``toy`` that takes
    seconds: one validation track, two 1 s examples per track, outputs under ``tmp``."""
    return [
        "dset=toy", f"dset.data_dir={toy}", f"out_dir={tmp / 'outputs'}", f"tb_dir={tmp / 'tb'}",
        f"src_mod={preset}", "optim.max_epochs=1", "dset.validation_tracks=1",
        "dset.samples_per_track=2", "dset.seq_duration=1.0", "dset.eval_seq_duration=1.5",
        "dset.num_workers=0", "trainer.accelerator=cpu", "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
        "eval.progress=false",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> Path:
    """A tiny stand-in dataset (one per test module): 3 training songs (1 for validation) of
    3-3.5 s and 1 test song."""
    from bsrnn.data.toy import ToyParams, generate_toy_dataset

    root = tmp_path_factory.mktemp("toy") / "toy"
    params = ToyParams(n_train=3, n_test=1, min_duration=3.0, max_duration=3.5, seed=0)
    generate_toy_dataset(root, params, progress=False)
    return root


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"reference fixtures not found at {FIXTURES} (shared/ sits beside the repo)")
    return FIXTURES


@pytest.fixture(scope="session")
def newest_fixtures_dir() -> Path:
    if not NEWEST_FIXTURES.is_dir():
        pytest.fail(f"reference fixtures not found at {NEWEST_FIXTURES}")
    return NEWEST_FIXTURES


@pytest.fixture(scope="session")
def compose():
    """``compose("src_mod=bsrnn-opt", ...)`` -> the resolved plain config of the real conf/."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    def _compose(*overrides: str) -> dict:
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
            cfg = hydra_compose("config", overrides=list(overrides))
        return OmegaConf.to_container(cfg, resolve=True)

    return _compose
