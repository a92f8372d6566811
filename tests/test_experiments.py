"""conf/experiment/: every published recipe composes, builds valid settings, and sets what its
source did (values below: the reference's training setup and presets, REFERENCE.md,
REFERENCE-NEWEST.md and tuning.md; MSST's MUSDB18 configs at commit 333c089 for the RoFormers).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import train  # noqa: E402, F401  (registers the settings schemas)
from bsrnn.cli import build_settings  # noqa: E402
from bsrnn.models import build_model, count_parameters  # noqa: E402

EXPERIMENTS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))

#: What each recipe's source sets: model, optimizer, scheduler, dataset, trainer.
SOURCES: dict[str, dict] = {
    "bsrnn": dict(
        preset="bsrnn", targets=("vocals",), feature_dim=64, num_repeat=8, params=8_020_296,
        lr=5e-4, optimizer="torch.optim.Adam", loss_domain="t+tf", grad_clip=5.0, patience=10,
        scheduler=("torch.optim.lr_scheduler.StepLR", {"step_size": 2, "gamma": 0.98}),
        dset="musdb18hq_sad", seq_duration=3.0, batch_size=2, n_samples=20000,
        devices=4, precision=32,
    ),
    "bsrnn-large": dict(
        preset="bsrnn-large", targets=("vocals",), feature_dim=128, num_repeat=12,
        params=36_417_160, lr=2.5e-4, optimizer="torch.optim.Adam", loss_domain="t+tf",
        grad_clip=5.0, patience=10,
        scheduler=("torch.optim.lr_scheduler.StepLR", {"step_size": 2, "gamma": 0.98}),
        dset="musdb18hq_sad", seq_duration=3.0, batch_size=2, n_samples=20000,
        devices=2, precision=32,
    ),
    "obsrnn": dict(
        preset="bsrnn-opt", targets=("vocals",), feature_dim=128, num_repeat=12,
        params=40_777_192, lr=2.5e-4, optimizer="torch.optim.Adam", loss_domain="t+tf",
        grad_clip=5.0, patience=10,
        scheduler=("torch.optim.lr_scheduler.StepLR", {"step_size": 2, "gamma": 0.98}),
        dset="musdb18hq", seq_duration=3.0, batch_size=2, n_samples=None,
        devices=2, precision=32,
    ),
    "obsrnn-simo": dict(
        preset="simo-bsrnn-opt", targets=("vocals", "bass", "drums", "other"),
        feature_dim=128, num_repeat=12, params=108_727_540, lr=2.5e-4,
        optimizer="torch.optim.Adam", loss_domain="t+tf", grad_clip=5.0, patience=10,
        scheduler=("torch.optim.lr_scheduler.StepLR", {"step_size": 2, "gamma": 0.98}),
        dset="musdb18hq", seq_duration=3.0, batch_size=2, n_samples=None,
        devices=2, precision=32,
    ),
}  # fmt: skip


def compose_experiment(name: str, overrides: tuple[str, ...] = ()):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        return compose("config", overrides=[f"+experiment={name}", *overrides])


def test_every_experiment_has_a_source():
    assert set(EXPERIMENTS) == set(SOURCES), "an experiment without its source's values"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_sets_what_its_source_did(name):
    source = SOURCES[name]
    cfg = compose_experiment(name)
    settings = build_settings(cfg)
    model = settings.model
    assert cfg.src_mod.name == source["preset"]
    assert model.targets == source["targets"]
    for key in ("feature_dim", "num_repeat", "dim", "depth"):
        if key in source:
            assert getattr(model, key) == source[key], key
    optim = settings.optim
    assert optim.lr == pytest.approx(source["lr"])
    assert optim.optimizer["_target_"] == source["optimizer"]
    assert optim.loss_domain_for(model.default_loss_domain) == source["loss_domain"]
    assert optim.grad_clip_norm == source["grad_clip"]
    assert optim.patience == source["patience"]
    target, kwargs = source["scheduler"]
    node = dict(settings.scheduler.node)
    assert node.pop("_target_") == target and node == kwargs
    data = settings.data
    assert data.name == source["dset"]
    assert data.seq_duration == pytest.approx(source["seq_duration"])
    assert (data.batch_size, data.n_samples) == (source["batch_size"], source["n_samples"])
    assert cfg.trainer.devices == source["devices"]
    assert str(cfg.trainer.precision) == str(source["precision"])


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_network_has_the_published_size(name):
    source = SOURCES[name]
    settings = build_settings(compose_experiment(name))
    import torch

    with torch.device("meta"):
        net = build_model(settings.model)
    assert count_parameters(net) == source["params"]
