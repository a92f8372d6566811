"""conf/experiment/: every published recipe composes, builds valid settings, and sets what its
source did (values below: the reference's training setup and presets, REFERENCE.md,
REFERENCE-NEWEST.md and tuning.md; MSST's MUSDB18 configs at commit 333c089 for the RoFormers,
their EMA and accumulation as at ccc011a).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import train  # noqa: E402, F401  (registers the settings schemas)
from bsrnn.cli import settings_from_config  # noqa: E402
from bsrnn.models import architecture, build_model, count_parameters  # noqa: E402

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
    # MSST configs/config_musdb18_bs_roformer.yaml: model section; training lr 5e-5, Adam,
    # grad_clip 0, patience 2 / reduce_factor 0.95 on the validation SDR, batch 10 x 131584
    # samples, 1000 steps per epoch, 1000 epochs, use_amp; loudness 0.5-1.5; ema_momentum 0.999,
    # gradient_accumulation_steps 1 (q/coarse_loss_clip: unused, the RoFormers' own loss)
    "bs-roformer": dict(
        preset="bs-roformer", targets=("vocals",), dim=192, depth=6, params=24_591_276,
        lr=5e-5, optimizer="torch.optim.Adam", loss_domain="t+mrstft", grad_clip=None,
        patience=None, monitor="sdr",
        scheduler=("torch.optim.lr_scheduler.ReduceLROnPlateau",
                   {"mode": "max", "factor": 0.95, "patience": 2}),
        scheduler_monitor="val/usdr",
        dset="musdb18hq", seq_duration=131584 / 44100, batch_size=10, n_samples=10000,
        augmentations=("randomcrop", "rescale"), rescale=(0.5, 1.5),
        devices=1, precision="16-mixed", ema_momentum=0.999, loss_type="L1",
    ),
    # MSST configs/config_musdb18_mel_band_roformer_all_stems.yaml: lr 1e-5, batch 1 x 352800
    # samples, 1000 steps per epoch; loudness 0.5-1.5, channel_shuffle 0.5; ema_momentum 0.999,
    # gradient_accumulation_steps 1
    "mel-roformer": dict(
        preset="mel-roformer", targets=("drums", "bass", "other", "vocals"), dim=384, depth=6,
        params=832_598_700, lr=1e-5, optimizer="torch.optim.Adam", loss_domain="t+mrstft",
        grad_clip=None, patience=None, monitor="sdr",
        scheduler=("torch.optim.lr_scheduler.ReduceLROnPlateau",
                   {"mode": "max", "factor": 0.95, "patience": 2}),
        scheduler_monitor="val/usdr",
        dset="musdb18hq", seq_duration=8.0, batch_size=1, n_samples=1000,
        augment=dict(name="msst", loudness=(0.5, 1.5), mixup=(0.2, 0.02),
                     all={"channel_shuffle": 0.5, "random_inverse": 0.1, "random_polarity": 0.5}),
        devices=1, precision="16-mixed", ema_momentum=0.999, loss_type="L1",
    ),
    # MSST configs/config_musdb18_scnet.yaml / _large: lr 5e-4, Adam, grad_clip 0, patience 2 /
    # reduce_factor 0.95 on the validation SDR, batch 10 (large: 6) x 485100 samples, 1000
    # steps per epoch, use_amp; loudness 0.5-1.5, mixup (0.2, 0.02); q 0.95, coarse_loss_clip;
    # ema_momentum 0.999
    "scnet": dict(
        preset="scnet", targets=("drums", "bass", "other", "vocals"), params=10_578_768,
        lr=5e-4, optimizer="torch.optim.Adam", loss_domain="t", grad_clip=None,
        patience=None, monitor="sdr",
        scheduler=("torch.optim.lr_scheduler.ReduceLROnPlateau",
                   {"mode": "max", "factor": 0.95, "patience": 2}),
        scheduler_monitor="val/usdr",
        dset="musdb18hq", seq_duration=11.0, batch_size=10, n_samples=10000,
        augment=dict(name="msst", loudness=(0.5, 1.5), mixup=(0.2, 0.02)),
        devices=1, precision="16-mixed", ema_momentum=0.999, loss_type="masked_mse",
    ),
    "scnet-large": dict(
        preset="scnet-large", targets=("drums", "bass", "other", "vocals"), dims=(4, 64, 128, 256),
        params=42_181_232, lr=5e-4, optimizer="torch.optim.Adam", loss_domain="t",
        grad_clip=None, patience=None, monitor="sdr",
        scheduler=("torch.optim.lr_scheduler.ReduceLROnPlateau",
                   {"mode": "max", "factor": 0.95, "patience": 2}),
        scheduler_monitor="val/usdr",
        dset="musdb18hq", seq_duration=11.0, batch_size=6, n_samples=6000,
        augment=dict(name="msst", loudness=(0.5, 1.5), mixup=(0.2, 0.02)),
        devices=1, precision="16-mixed", ema_momentum=0.999, loss_type="masked_mse",
    ),
}  # fmt: skip


def compose_experiment(name: str, overrides: tuple[str, ...] = ()):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        return compose("config", overrides=[f"+experiment={name}", *overrides])


def test_every_experiment_has_a_source():
    assert set(EXPERIMENTS) == set(SOURCES), "an experiment without its source's values"


def _is_probability(key: str) -> bool:
    """An effect's probability key (not one of its ranges or options)."""
    return not any(part in key for part in ("_min", "_max", "backend", "bitrate"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_sets_what_its_source_did(name):
    source = SOURCES[name]
    cfg = compose_experiment(name)
    settings = settings_from_config(cfg)
    model = settings.model
    assert cfg.src_mod.name == source["preset"]
    assert model.targets == source["targets"]
    for key in ("feature_dim", "num_repeat", "dim", "depth", "dims"):
        if key in source:
            assert getattr(model, key) == source[key], key
    optim = settings.optim
    assert optim.lr == pytest.approx(source["lr"])
    assert optim.optimizer["_target_"] == source["optimizer"]
    # the loss the network declares (read from its config without building a large network)
    preference = architecture(settings.arch).model.loss_preference.fget(
        SimpleNamespace(config=model)
    )
    assert (optim.loss_domain or preference.domain) == source["loss_domain"]
    assert optim.grad_clip_norm == source["grad_clip"]
    assert optim.patience == source["patience"]
    assert optim.monitor_val == source.get("monitor", "loss")
    assert optim.ema_momentum == source.get("ema_momentum")
    assert (optim.loss_type or preference.type) == source.get("loss_type", "L1")
    assert optim.accumulate_grad_batches == 1
    target, kwargs = source["scheduler"]
    node = dict(settings.scheduler.node)
    assert node.pop("_target_") == target and node == kwargs
    assert settings.scheduler.monitor == source.get("scheduler_monitor", "val/loss")
    data = settings.data
    assert data.name == source["dset"]
    assert data.seq_duration == pytest.approx(source["seq_duration"])
    assert (data.batch_size, data.n_samples) == (source["batch_size"], source["n_samples"])
    if "augmentations" in source:
        assert data.augment.name == "reference"
        assert data.augmentations == source["augmentations"]
        assert (data.rescale_min, data.rescale_max) == source["rescale"]
    if "augment" in source:  # MSST's augmentations: what its config enables, nothing else
        want, augment = source["augment"], data.augment
        assert augment.name == want["name"]
        assert augment.loudness and (augment.loudness_min, augment.loudness_max) == want["loudness"]
        assert augment.mixup and augment.mixup_probs == want["mixup"]
        assert augment.mp3_compression_on_mixture == 0
        on = {k: v for k, v in augment.all.items() if _is_probability(k) and v > 0}
        assert on == want.get("all", {})
        assert not any(
            v > 0 for stem in augment.stems.values() for k, v in stem.items() if _is_probability(k)
        )
    if source.get("loss_type") == "masked_mse":
        assert (optim.loss_q, optim.loss_coarse) == (0.95, True)
    assert cfg.trainer.devices == source["devices"]
    assert str(cfg.trainer.precision) == str(source["precision"])


def _is_probability(key: str) -> bool:
    """An effect's probability key (not one of its ranges or options)."""
    return not any(part in key for part in ("_min", "_max", "backend", "bitrate"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_network_has_the_published_size(name):
    source = SOURCES[name]
    settings = settings_from_config(compose_experiment(name))
    import torch

    with torch.device("meta"):
        net = build_model(settings.model)
    assert count_parameters(net) == source["params"]
