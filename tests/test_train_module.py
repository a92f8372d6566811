"""SeparationLitModule and training helpers on tiny real networks and in-memory batches."""

from __future__ import annotations

import functools

import lightning.pytorch as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from bsrnn.callbacks import WeightsSyncCheck, build_callbacks, build_logger
from bsrnn.checkpoints import load_model, read_checkpoint
from bsrnn.chunking import ChunkSettings, separate_in_chunks
from bsrnn.errors import ConfigError, NonFiniteLossError
from bsrnn.figures import spectrogram_image
from bsrnn.lit_module import SeparationLitModule
from bsrnn.losses import SeparationLoss
from bsrnn.metrics import usdr
from bsrnn.models import StftSpec, build_model
from bsrnn.paths import checkpoint_path, last_checkpoint_path, model_dir, resolve_resume_path
from bsrnn.settings import OptimSettings, SchedulerSettings

SR = 44100


CHUNKS = ChunkSettings(segment_len=0.5)


def _module(scheduler=None, targets=("bass",), **kwargs) -> SeparationLitModule:
    torch.manual_seed(0)
    net = build_model(dict(targets=list(targets), feature_dim=8, num_repeat=1))
    return SeparationLitModule(
        net,
        SeparationLoss("L1", "t+tf"),
        functools.partial(torch.optim.Adam, lr=1e-3),
        scheduler,
        chunking=CHUNKS,
        **kwargs,
    )


class _Data(L.LightningDataModule):
    """Two training batches of 2 x 0.5 s and one 1.2 s validation 'track': mixtures of 4
    sources, references of the first ``n_targets``."""

    def __init__(self, nan_batch: int | None = None, n_targets: int = 1) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.src = 0.1 * torch.randn(4, 4, 2, SR // 2, generator=g)
        self.mix = self.src.sum(1)
        if nan_batch is not None:
            self.mix[2 * nan_batch] = float("nan")
        self.val_src = 0.1 * torch.randn(1, 4, 2, int(1.2 * SR), generator=g)
        self.n = n_targets

    def train_dataloader(self):
        return DataLoader(TensorDataset(self.mix, self.src[:, : self.n]), batch_size=2)

    def val_dataloader(self):
        val = TensorDataset(self.val_src.sum(1), self.val_src[:, : self.n])
        return DataLoader(val, batch_size=1)


def _trainer(tmp_path, **kwargs) -> L.Trainer:
    defaults = dict(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    defaults.update(kwargs)
    return L.Trainer(**defaults)


def test_optim_settings_check_every_key_once():
    with pytest.raises(ConfigError, match=r"optim\.monitor_val='acc'.*loss, sdr"):
        OptimSettings(monitor_val="acc")
    with pytest.raises(ConfigError, match=r"optim\.val_loss='median'.*chunks, track"):
        OptimSettings(val_loss="median")
    with pytest.raises(ConfigError, match=r"optim\.lr='abc': expected a number"):
        OptimSettings(lr="abc")
    with pytest.raises(ConfigError, match=r"optim\.optimizer: Invalid beta"):
        OptimSettings(optimizer={"_target_": "torch.optim.Adam", "betas": [2.0, 0.9]})
    assert (OptimSettings().monitor_key, OptimSettings().monitor_mode) == ("val/loss", "min")
    sdr = OptimSettings(monitor_val="sdr")
    assert (sdr.monitor_key, sdr.monitor_mode) == ("val/usdr", "max")
    adam = OptimSettings(lr=1e-3).optimizer_factory(2e-3)([torch.nn.Parameter(torch.zeros(1))])
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["lr"] == 2e-3


def test_configure_optimizers_step_and_plateau():
    step = _module(scheduler=SchedulerSettings.from_mapping(
        {"_target_": "torch.optim.lr_scheduler.StepLR", "step_size": 2, "gamma": 0.98}
    ))  # fmt: skip
    conf = step.configure_optimizers()
    assert isinstance(conf["optimizer"], torch.optim.Adam)
    assert conf["optimizer"].param_groups[0]["lr"] == pytest.approx(1e-3)
    sched = conf["lr_scheduler"]
    assert isinstance(sched["scheduler"], torch.optim.lr_scheduler.StepLR)
    assert (sched["scheduler"].step_size, sched["scheduler"].gamma) == (2, 0.98)
    assert sched["interval"] == "epoch" and sched["name"] == "lr"

    plateau = SchedulerSettings.from_mapping({
        "_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau", "factor": 0.5, "patience": 5
    })  # fmt: skip
    conf = _module(scheduler=plateau).configure_optimizers()
    sched = conf["lr_scheduler"]  # as in the reference: the plateau follows val/loss
    assert sched["monitor"] == "val/loss" and sched["scheduler"].mode == "min"
    assert (sched["scheduler"].factor, sched["scheduler"].patience) == (0.5, 5)
    warm = SchedulerSettings.from_mapping({"interval": "step", "frequency": 2,
                                           "monitor": "val/usdr",
                                           **plateau.node})  # fmt: skip
    sched = _module(scheduler=warm).configure_optimizers()["lr_scheduler"]
    assert (sched["interval"], sched["frequency"], sched["monitor"]) == ("step", 2, "val/usdr")
    with pytest.raises(ConfigError, match=r"scheduler\.gamma='abc': expected a number"):
        SchedulerSettings.from_mapping({"_target_": "torch.optim.lr_scheduler.StepLR",
                                        "step_size": 2, "gamma": "abc"})  # fmt: skip
    with pytest.raises(ConfigError, match=r"scheduler\.interval='batch'"):
        SchedulerSettings.from_mapping({"interval": "batch"})
    assert isinstance(_module().configure_optimizers(), torch.optim.Adam)  # no scheduler


def test_train_and_validation_steps_log_and_checkpoint_records_network(tmp_path):
    module = _module(scheduler=SchedulerSettings.from_mapping(
        {"_target_": "torch.optim.lr_scheduler.StepLR", "step_size": 1, "gamma": 0.5}
    ))  # fmt: skip
    folder = model_dir(tmp_path / "out", "bsrnn-tiny")
    best, last = checkpoint_path(folder, ["bass"]), last_checkpoint_path(folder, ["bass"])
    trainer = _trainer(
        tmp_path,
        enable_checkpointing=True,
        callbacks=build_callbacks(
            best_path=best,
            last_path=last,
            monitor_key="val/loss",
            monitor_mode="min",
            patience=3,
            progress_bar=False,
        ),
        gradient_clip_val=5.0,
        logger=build_logger(tmp_path / "tb", "bsrnn-tiny-bass"),
    )
    before = {k: v.clone() for k, v in module.net.state_dict().items()}
    trainer.fit(module, datamodule=_Data())
    metrics = trainer.callback_metrics
    for key in ("train/loss", "train/loss_epoch", "val/loss", "val/usdr", "val/usdr_bass"):
        assert key in metrics and torch.isfinite(metrics[key])
    assert trainer.global_step == 2
    changed = [k for k, v in module.net.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "training did not update the network"
    assert best.is_file() and last.is_file()
    ckpt = read_checkpoint(best)  # loads with weights_only=True
    assert ckpt["model"]["config"] == module.net.config.to_dict()
    assert all(k.startswith(("net.", "loss.")) for k in ckpt["state_dict"])
    rebuilt = load_model(best)
    for key, value in module.net.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value)
    # StepLR(step 1, gamma 0.5) stepped once at the end of the epoch
    assert ckpt["lr_schedulers"][0]["_last_lr"][0] == pytest.approx(5e-4)


@pytest.mark.parametrize("targets", [("bass",), ("vocals", "bass", "drums")])
def test_validation_as_the_reference_computes_it(tmp_path, targets):
    """val/usdr: uSDR of the chunk-assembled track (mean over targets, one scalar per target);
    val/loss: the median over chunks of each chunk's loss, with the network's own STFT."""
    module = _module(targets=targets)
    data = _Data(n_targets=len(targets))
    trainer = _trainer(tmp_path, max_epochs=0)
    trainer.validate(module, datamodule=data, verbose=False)
    mix, ref = data.val_src.sum(1), data.val_src[:, : len(targets)]
    with torch.no_grad():
        est = separate_in_chunks(lambda x: module.net(x).waveforms, mix, SR, CHUNKS)
        # the reference's chunks for 1.2 s at segment_len 0.5, overlap 0.1: 0-0.55, 0.5-1.1,
        # 1.05-1.2 s (REFERENCE chunk layout; sample bounds as in tests/test_chunking.py)
        bounds = [(0, 24255), (22050, 48510), (46305, 52920)]
        loss = SeparationLoss("L1", "t+tf")
        chunk_losses = []
        for a, b in bounds:
            out = module.net(mix[..., a:b])
            chunk_losses.append(loss(out.waveforms, ref[..., a:b], est_stfts=out.stfts))
    metrics = trainer.callback_metrics
    sdr = usdr(ref, est)[0]
    assert metrics["val/usdr"].item() == pytest.approx(sdr.mean().item(), abs=1e-4)
    for target, value in zip(targets, sdr):
        assert metrics[f"val/usdr_{target}"].item() == pytest.approx(value.item(), abs=1e-4)
    assert metrics["val/loss"].item() == pytest.approx(
        torch.stack(chunk_losses).median().item(), rel=1e-4
    )


def test_non_finite_loss_stops_with_the_step(tmp_path):
    module = _module()
    trainer = _trainer(tmp_path, limit_val_batches=0)
    with pytest.raises(NonFiniteLossError, match=r"epoch 0, global step 1, batch 1"):
        trainer.fit(module, datamodule=_Data(nan_batch=1))
    assert trainer.global_step == 1  # the first (finite) batch was trained, the second not


def test_weights_digest_changes_with_weights():
    net = build_model(dict(target="vocals", feature_dim=8, num_repeat=1))
    digest = WeightsSyncCheck.digest(net)
    assert digest == WeightsSyncCheck.digest(net)
    with torch.no_grad():
        next(net.parameters())[0].add_(1e-6)
    assert WeightsSyncCheck.digest(net) != digest


def test_resolve_resume_path_and_run_paths(tmp_path):
    last = tmp_path / "vocals-last.ckpt"
    assert resolve_resume_path(None, last) is None
    assert resolve_resume_path("auto", last) is None
    with pytest.raises(ConfigError, match="checkpoint not found"):
        resolve_resume_path("last", last)
    with pytest.raises(ConfigError, match="nowhere.ckpt"):
        resolve_resume_path(str(tmp_path / "nowhere.ckpt"), last)
    last.write_bytes(b"x")
    assert resolve_resume_path("auto", last) == last
    assert resolve_resume_path("last", last) == last
    folder = model_dir("out", "bsrnn")
    assert str(checkpoint_path(folder, ["drums"])) == "out/bsrnn/drums.ckpt"
    assert str(last_checkpoint_path(folder, ["drums"])) == "out/bsrnn/drums-last.ckpt"
    assert str(checkpoint_path(folder, ["vocals", "bass"])) == "out/bsrnn/separator.ckpt"
    assert str(model_dir("out", "bsrnn", fast_tr=True)) == "out/bsrnn/fast_tr"


def test_spectrogram_image_layout():
    t = np.arange(SR) / SR
    ref = 0.5 * np.sin(2 * np.pi * 440 * t)
    est = np.zeros_like(ref)
    img = spectrogram_image(torch.from_numpy(ref), torch.from_numpy(est), StftSpec(2048, 512))
    frames = 1 + SR // 512
    assert img.shape == (512 + 4 + 512, frames) and img.dtype == np.float32
    assert img.min() >= 0.0 and img.max() <= 1.0
    top, line, bottom = img[:512], img[512:516], img[516:]
    assert np.all(line == 1.0)
    assert bottom.max() == 0.0  # a silent estimate is black on the reference's scale
    # 440 Hz is bin 20 of 1025 -> pooled row 10 from the bottom of the reference panel
    row = int(np.argmax(top.mean(axis=1)))
    assert 512 - 1 - row == 440 * 2048 // SR // 2
