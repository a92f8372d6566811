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

from bsrnn.cli import config_to_plain, register_schemas, run_entry, settings_from_config

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


def scaled_lr(lr: float, batch_size: int, world_size: int, accumulate: int) -> float:
    """The reference's rule: ``lr * batch_size * devices * accumulate / 16`` (devices >= 1)."""
    return float(lr) * int(batch_size) * max(1, int(world_size)) * int(accumulate) / 16.0


def _override(value: Any) -> str:
    """``value`` as a command-line override writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return "[" + ",".join(_override(v) for v in value) + "]"
    return str(value)


def check_same_network(ckpt_path: Any, ours: Any, theirs: Any) -> None:
    """A ConfigError naming only the options that differ between the network ``src_mod``
    describes (``ours``) and the one in ``ckpt_path`` (``theirs``), with the override that
    fixes each; options that cannot change the network are ignored."""
    from bsrnn.errors import ConfigError

    differing = ours.differences(theirs)
    if not differing:
        return
    if "arch" in differing:
        mine, other = differing["arch"]
        raise ConfigError(
            f"ckpt_path={ckpt_path} holds a {other} network, src_mod describes a {mine}: "
            "choose a preset of its architecture"
        )
    what = "; ".join(f"{k}: checkpoint {t!r}, src_mod {o!r}" for k, (o, t) in differing.items())
    fix = " ".join(f"src_mod.{k}={_override(t)}" for k, (_, t) in differing.items())
    raise ConfigError(f"ckpt_path={ckpt_path} holds another network ({what}): add {fix}")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Build everything from ``cfg`` (every option checked first) and fit; returns the
    checkpoint paths and final metrics."""
    settings = settings_from_config(cfg)

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
    from bsrnn.losses import build_loss
    from bsrnn.models import build_model
    from bsrnn.paths import (
        checkpoint_path,
        last_checkpoint_path,
        model_dir,
        resolve_resume_path,
        run_root_dir,
    )
    from bsrnn.runtime import apply_matmul_precision, prepare_determinism, training_precision

    route_lightning_logs_to_root()
    optim, data = settings.optim, settings.data
    L.seed_everything(settings.seed, workers=True)  # before the network draws its weights
    net = build_model(settings.model)
    name, targets = settings.model_name, list(net.targets)
    folder = model_dir(settings.out_dir, name, fast_tr=settings.fast_tr)
    best_path, last_path = checkpoint_path(folder, targets), last_checkpoint_path(folder, targets)
    run_name = f"{name}-{best_path.stem}"
    resume = resolve_resume_path(settings.ckpt_path, last_path)
    tb_version, resume_kind = settings.tb_version, None
    if resume is not None:
        resume_kind, previous = read_resume_info(resume)
        if tb_version is None and previous.get("name") == run_name:
            tb_version = previous.get("version")  # continue the same TensorBoard run

    if resume_kind == "weights":  # e.g. a published or imported checkpoint
        source = load_model(resume)
        check_same_network(resume, net.config, source.config)
        net.load_state_dict(source.state_dict())
        log.info(
            "initialised the network from %s (its optimizer and scheduler state is not carried "
            "over; training starts at epoch 0)",
            resume,
        )
        resume = None
    loss = build_loss(optim, net.loss_preference, net.stft_spec)
    datamodule = MusdbDataModule(data, targets=targets, fast_tr=settings.fast_tr)

    overrides, choices, multirun = _run_info()
    recorder = RunRecorder(config_to_plain(cfg), overrides=overrides, choices=choices)
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    callbacks = build_callbacks(
        best_path=best_path,
        last_path=last_path,
        monitor_key=optim.monitor_key,
        monitor_mode=optim.monitor_mode,
        patience=optim.patience,
        progress_bar=bool(trainer_cfg.get("enable_progress_bar", True)),
        recorder=recorder,
        warmup_steps=settings.scheduler.warmup_steps,
        ema_momentum=optim.ema_momentum,
    )
    logger = build_logger(settings.tb_dir, run_name, version=tb_version)
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    trainer_cfg["precision"] = training_precision(trainer_cfg.get("precision", 32), accelerator)
    apply_matmul_precision(trainer_cfg.pop("matmul_precision", "highest"))
    trainer_cfg["deterministic"] = prepare_determinism(
        trainer_cfg.get("deterministic"), accelerator
    )
    # Lightning's SLURM auto-requeue saves and restores hpc_ckpt_<N>.ckpt in default_root_dir:
    # the run's own folder, so that one array task never resumes another task's run
    trainer_cfg["default_root_dir"] = str(run_root_dir(folder, best_path))
    try:
        trainer = L.Trainer(
            **{k: v for k, v in trainer_cfg.items() if k != "_target_"},
            logger=logger,
            callbacks=callbacks,
            overfit_batches=1 if settings.fast_tr else 0.0,
        )
    except (MisconfigurationException, TypeError, ValueError) as err:
        raise ConfigError(f"invalid trainer settings: {err}") from None
    env = getattr(trainer.strategy, "cluster_environment", None)
    if multirun and trainer.world_size > 1 and env is not None:
        if not env.creates_processes_externally:
            raise ConfigError(
                "a multirun (-m) cannot use several devices launched by Lightning (each process "
                "would re-run the whole sweep): run one job per setting (jobs/params.txt), "
                "use trainer.devices=1, or launch with torchrun/srun (jobs/README.md)"
            )
    lr = optim.lr
    if optim.scale_lr:
        lr = scaled_lr(optim.lr, data.batch_size, trainer.world_size,
                       optim.accumulate_grad_batches)  # fmt: skip
        log.info("optim.scale_lr: lr %.3g -> %.3g (batch %d x %d devices x %d accumulated / 16)",
                 optim.lr, lr, data.batch_size, trainer.world_size,
                 optim.accumulate_grad_batches)  # fmt: skip
    module = SeparationLitModule(
        net,
        loss,
        optim.optimizer_factory(lr),
        settings.scheduler,
        chunking=settings.chunking,
        val_loss=optim.val_loss,
        val_metrics=tuple(m for m in settings.eval.metrics or () if m not in ("usdr", "csdr")),
    )
    if trainer.is_global_zero:
        log.info("model %s: targets %s; loss %s", name, ", ".join(targets), loss.extra_repr())
        log.info("checkpoints: %s (best), %s (last)", best_path, last_path)
        log.info("TensorBoard: %s", logger.log_dir)
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume) if resume else None)

    ckpt_cb = trainer.checkpoint_callback
    best_score = getattr(ckpt_cb, "best_model_score", None)
    if trainer.is_global_zero:
        log.info(
            "done: best %s = %s at %s",
            optim.monitor_key,
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
        "lr": lr,
        "precision": str(trainer.precision),
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
    }


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    run_entry("train.py", lambda: train(cfg))


if __name__ == "__main__":
    main()
