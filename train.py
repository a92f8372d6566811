"""Train a separation network: one target (``src_mod.target``) or several (SIMO presets).

    python train.py                                    # vocals, bsrnn, activity-detected segments
    python train.py fast_tr=True                       # overfit one batch (debugging)
    python train.py optim.loss_domain=t+tf src_mod.num_repeat=10
    python train.py -m src_mod.target=vocals,bass,drums,other
    python train.py src_mod=simo-bsrnn                 # one model for the four stems
    python train.py ckpt_path=outputs/bsrnn/vocals.ckpt   # resume (or ckpt_path=last / auto)

The best checkpoint (by ``optim.monitor_val``) goes to ``<out_dir>/<src_mod.name>/<stem>.ckpt``
and the last one beside it as ``<stem>-last.ckpt`` (``stem``: the target, or ``separator`` for a
model of several targets); TensorBoard logs to ``<tb_dir>/<src_mod.name>-<stem>/version_<N>``.
"""

from __future__ import annotations

import logging
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from bsrnn.cli import plain, register_schemas, run_entry

log = logging.getLogger("train")
register_schemas()


def _run_info() -> tuple[list[str], dict[str, Any], bool]:
    """(command-line overrides, config group choices, is multirun) of the Hydra run, if any."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return [], {}, False
    hc = HydraConfig.get()
    choices = {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra")}
    return list(hc.overrides.task), dict(choices), hc.mode == RunMode.MULTIRUN


def _instantiate(node: Any, key: str) -> Any:
    """``hydra.utils.instantiate`` with a ConfigError naming the config key on failure."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from bsrnn.errors import ConfigError

    try:
        return instantiate(node)
    except InstantiationException as err:
        raise ConfigError(f"cannot build {key}: {err}") from None


def scaled_lr(lr: float, batch_size: int, world_size: int, accumulate: int) -> float:
    """The reference's rule: ``lr * batch_size * devices * accumulate / 16`` (devices >= 1)."""
    return float(lr) * int(batch_size) * max(1, int(world_size)) * int(accumulate) / 16.0


def check_config(cfg: DictConfig) -> tuple[Any, Any, Any]:
    """Fail before anything is built or run when an option is invalid (a ConfigError naming
    the key and the valid choices); returns the typed ``(model config, DataSettings,
    ChunkSettings)`` of the run."""
    from bsrnn.callbacks import monitor_spec
    from bsrnn.chunking import ChunkSettings
    from bsrnn.data import DataSettings
    from bsrnn.errors import ConfigError
    from bsrnn.lit_module import VAL_LOSSES
    from bsrnn.losses import LOSS_DOMAINS, LOSS_TYPES
    from bsrnn.models import model_config

    _, model = model_config(plain(cfg.src_mod))
    data = DataSettings.from_mapping(plain(cfg.dset))
    chunking = ChunkSettings.from_mapping(plain(cfg.eval))
    monitor_spec(str(cfg.optim.monitor_val))
    for key, valid in (("loss_type", LOSS_TYPES), ("loss_domain", LOSS_DOMAINS),
                       ("val_loss", VAL_LOSSES)):  # fmt: skip
        if cfg.optim[key] not in valid:
            raise ConfigError(
                f"invalid optim.{key}={cfg.optim[key]!r}: expected one of {', '.join(valid)}"
            )
    for key in ("max_epochs", "patience"):
        value = cfg.optim[key]
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"invalid optim.{key}={value!r}: expected a positive integer")
    return model, data, chunking


def train(cfg: DictConfig) -> dict[str, Any]:
    """Build everything from ``cfg`` and fit; returns the checkpoint paths and final metrics."""
    import lightning.pytorch as L
    import torch
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from bsrnn.callbacks import (
        RunRecorder,
        build_callbacks,
        build_logger,
        read_resume_info,
        route_lightning_logs_to_root,
    )
    from bsrnn.checkpoints import load_model
    from bsrnn.data import MusdbDataModule
    from bsrnn.errors import ConfigError
    from bsrnn.lit_module import SeparationLitModule
    from bsrnn.losses import SeparationLoss
    from bsrnn.models import build_model
    from bsrnn.paths import checkpoint_path, last_checkpoint_path, model_dir, resolve_resume_path
    from bsrnn.runtime import training_precision

    route_lightning_logs_to_root()
    net_config, data, chunking = check_config(cfg)
    L.seed_everything(int(cfg.seed), workers=True)  # before the network draws its weights
    net = build_model(net_config)
    monitor = str(cfg.optim.monitor_val)
    name, targets = str(cfg.src_mod.name), list(net.targets)
    folder = model_dir(cfg.out_dir, name, fast_tr=bool(cfg.fast_tr))
    best_path, last_path = checkpoint_path(folder, targets), last_checkpoint_path(folder, targets)
    run_name = f"{name}-{best_path.stem}"
    resume = resolve_resume_path(cfg.get("ckpt_path"), last_path)
    tb_version, resume_kind = cfg.get("tb_version"), None
    if resume is not None:
        resume_kind, previous = read_resume_info(resume)
        if tb_version is None and previous.get("name") == run_name:
            tb_version = previous.get("version")  # continue the same TensorBoard run

    if resume_kind == "weights":  # e.g. a checkpoint published by the reference
        source = load_model(resume)
        if source.config != net.config:
            raise ConfigError(
                f"ckpt_path={resume} holds a {source.config} network, but src_mod describes "
                f"{net.config}: choose the matching preset and options"
            )
        net.load_state_dict(source.state_dict())
        log.info(
            "initialised the network from %s (its optimizer and scheduler state is not carried "
            "over; training starts at epoch 0)",
            resume,
        )
        resume = None
    loss = SeparationLoss(
        loss_type=str(cfg.optim.loss_type),
        domain=str(cfg.optim.loss_domain),
        n_fft=net.stft_spec.n_fft,
        n_hop=net.stft_spec.hop_length,
    )
    optimizer = _instantiate(cfg.optim.optimizer, "optim.optimizer")
    scheduler = _instantiate(cfg.scheduler, "scheduler") if cfg.get("scheduler") else None
    module = SeparationLitModule(
        net,
        loss,
        optimizer,
        scheduler,
        monitor=monitor,
        chunking=chunking,
        val_loss=str(cfg.optim.val_loss),
    )
    datamodule = MusdbDataModule(data, targets=targets, fast_tr=bool(cfg.fast_tr))

    overrides, choices, multirun = _run_info()
    recorder = RunRecorder(plain(cfg), overrides=overrides, choices=choices)
    callbacks = build_callbacks(
        best_path=best_path,
        last_path=last_path,
        monitor=monitor,
        patience=int(cfg.optim.patience),
        progress_bar=bool(cfg.trainer.get("enable_progress_bar", True)),
        recorder=recorder,
    )
    logger = build_logger(cfg.tb_dir, run_name, version=tb_version)
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    trainer_cfg["precision"] = training_precision(trainer_cfg.get("precision", 32), accelerator)
    try:
        trainer = L.Trainer(
            **{k: v for k, v in trainer_cfg.items() if k != "_target_"},
            logger=logger,
            callbacks=callbacks,
            overfit_batches=1 if cfg.fast_tr else 0.0,
        )
    except MisconfigurationException as err:
        raise ConfigError(f"invalid trainer settings: {err}") from None
    env = getattr(trainer.strategy, "cluster_environment", None)
    if multirun and trainer.world_size > 1 and env is not None:
        if not env.creates_processes_externally:
            raise ConfigError(
                "a multirun (-m) cannot use several devices launched by Lightning (each process "
                "would re-run the whole sweep): run one job per setting (jobs/params.txt), "
                "use trainer.devices=1, or launch with torchrun/srun (jobs/README.md)"
            )
    if bool(cfg.optim.get("scale_lr", False)):
        lr = scaled_lr(
            cfg.optim.lr, data.batch_size, trainer.world_size, cfg.optim.accumulate_grad_batches
        )
        module.optimizer_factory.keywords["lr"] = lr
        log.info("optim.scale_lr: lr %.3g -> %.3g (batch %d x %d devices x %d accumulated / 16)",
                 cfg.optim.lr, lr, data.batch_size, trainer.world_size,
                 cfg.optim.accumulate_grad_batches)  # fmt: skip
    if trainer.is_global_zero:
        log.info("model %s: targets %s", name, ", ".join(targets))
        log.info("checkpoints: %s (best), %s (last)", best_path, last_path)
        log.info("TensorBoard: %s", logger.log_dir)
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume) if resume else None)

    ckpt_cb = trainer.checkpoint_callback
    best_score = getattr(ckpt_cb, "best_model_score", None)
    if trainer.is_global_zero:
        log.info(
            "done: best %s = %s at %s",
            module.monitor_key,
            None if best_score is None else f"{float(best_score):.4f}",
            getattr(ckpt_cb, "best_model_path", ""),
        )
    return {
        "best_path": best_path,
        "last_path": last_path,
        "best_score": None if best_score is None else float(best_score),
        "log_dir": logger.log_dir,
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "lr": module.optimizer_factory.keywords.get("lr"),
        "precision": str(trainer.precision),
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
    }


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    run_entry("train.py", lambda: train(cfg))


if __name__ == "__main__":
    main()
