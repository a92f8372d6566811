"""Train one BSRNN target network.

    python train.py                                    # vocals, default settings
    python train.py fast_tr=True                       # overfit one batch (debugging)
    python train.py optim.loss_domain=t+tf src_mod.num_repeat=10
    python train.py -m src_mod.target=vocals,bass,drums,other
    python train.py ckpt_path=outputs/bsrnn/vocals.ckpt   # resume (or ckpt_path=last / auto)

The best checkpoint (by ``optim.monitor_val``) goes to ``<out_dir>/<src_mod.name>/<target>.ckpt``
and the last one beside it as ``<target>-last.ckpt``; TensorBoard logs to
``<tb_dir>/<src_mod.name>-<target>/version_<N>``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("train")


def _run_info() -> tuple[list[str], dict[str, Any], bool]:
    """(command-line overrides, config group choices, is multirun) of the Hydra run, if any."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return [], {}, False
    hc = HydraConfig.get()
    choices = {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra")}
    return list(hc.overrides.task), dict(choices), hc.mode == RunMode.MULTIRUN


def validate_config(cfg: DictConfig) -> None:
    """Fail before anything is built when an option is invalid, listing the valid choices."""
    from bsrnn.losses import LOSS_DOMAINS, LOSS_TYPES
    from bsrnn.model import LAYER_TYPES
    from bsrnn.training import MONITORS, ConfigError

    sources = list(cfg.sources)
    checks = [
        ("src_mod.target", cfg.src_mod.target, sources),
        ("src_mod.time_layer", cfg.src_mod.time_layer, LAYER_TYPES),
        ("src_mod.band_layer", cfg.src_mod.band_layer, LAYER_TYPES),
        ("optim.loss_type", cfg.optim.loss_type, LOSS_TYPES),
        ("optim.loss_domain", cfg.optim.loss_domain, LOSS_DOMAINS),
        ("optim.monitor_val", cfg.optim.monitor_val, tuple(MONITORS)),
    ]
    for key, value, valid in checks:
        if value not in valid:
            raise ConfigError(f"invalid {key}={value!r}: expected one of {', '.join(valid)}")
    for key in ("max_epochs", "patience"):
        value = cfg.optim[key]
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"invalid optim.{key}={value!r}: expected a positive integer")
    if cfg.get("scheduler") is not None and "_target_" not in cfg.scheduler:
        raise ConfigError("invalid scheduler: expected a config group choice (step or plateau)")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Build everything from ``cfg`` and fit; returns the checkpoint paths and final metrics."""
    import lightning.pytorch as L
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from bsrnn import BSRNN
    from bsrnn.lit_module import BSRNNLitModule
    from bsrnn.losses import SeparationLoss
    from bsrnn.training import (
        ConfigError,
        RunRecorder,
        build_callbacks,
        build_logger,
        checkpoint_paths,
        read_resume_info,
        resolve_resume_path,
        route_lightning_logs_to_root,
    )

    route_lightning_logs_to_root()
    validate_config(cfg)
    target, name = str(cfg.src_mod.target), str(cfg.src_mod.name)
    best_path, last_path = checkpoint_paths(cfg.out_dir, name, target, fast_tr=bool(cfg.fast_tr))
    resume = resolve_resume_path(cfg.get("ckpt_path"), last_path)
    tb_version = cfg.get("tb_version")
    if resume is not None:
        previous = read_resume_info(resume)
        if tb_version is None and previous.get("name") == f"{name}-{target}":
            tb_version = previous.get("version")  # continue the same TensorBoard run
        log.info("resuming from %s", resume)

    L.seed_everything(int(cfg.seed), workers=True)
    src_mod = OmegaConf.to_container(cfg.src_mod, resolve=True)
    eval_cfg = cfg.get("eval") or {}
    try:
        net = BSRNN.from_config(src_mod)
        loss = SeparationLoss(
            loss_type=str(cfg.optim.loss_type),
            domain=str(cfg.optim.loss_domain),
            n_fft=int(cfg.src_mod.n_fft),
            n_hop=int(cfg.src_mod.n_hop),
        )
        optimizer = instantiate(cfg.optim.optimizer)
        scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") is not None else None
        module = BSRNNLitModule(
            net,
            loss,
            optimizer,
            scheduler,
            target_index=list(cfg.sources).index(target),
            monitor=str(cfg.optim.monitor_val),
            sample_rate=int(cfg.sample_rate),
            eval_segment_len=eval_cfg.get("segment_len", 10.0),
            eval_overlap=float(eval_cfg.get("overlap", 0.1)),
            eval_hop_size=eval_cfg.get("hop_size", None),
            eval_batch_chunks=eval_cfg.get("batch_chunks", None),
        )
        datamodule = instantiate(cfg.dset, target=target, fast_tr=bool(cfg.fast_tr))
    except (ValueError, TypeError, InstantiationException) as err:
        raise ConfigError(str(err)) from err

    overrides, choices, multirun = _run_info()
    recorder = RunRecorder(
        OmegaConf.to_container(cfg, resolve=True), overrides=overrides, choices=choices
    )
    callbacks = build_callbacks(
        best_path=best_path,
        last_path=last_path,
        monitor=str(cfg.optim.monitor_val),
        patience=int(cfg.optim.patience),
        progress_bar=bool(cfg.trainer.get("enable_progress_bar", True)),
        recorder=recorder,
    )
    logger = build_logger(cfg.tb_dir, f"{name}-{target}", version=tb_version)
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        logger=logger,
        callbacks=callbacks,
        overfit_batches=1 if cfg.fast_tr else 0.0,
    )
    env = getattr(trainer.strategy, "cluster_environment", None)
    if multirun and trainer.world_size > 1 and env is not None:
        if not env.creates_processes_externally:
            raise ConfigError(
                "a multirun (-m) cannot use several devices launched by Lightning (each process "
                "would re-run the whole sweep): run one job per setting (jobs/params.txt), "
                "use trainer.devices=1, or launch with torchrun/srun (jobs/README.md)"
            )
    if trainer.is_global_zero:
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
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
    }


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    from bsrnn.audio import AudioError
    from bsrnn.checkpoints import CheckpointError
    from bsrnn.data import DatasetError
    from bsrnn.training import ConfigError, NonFiniteLossError

    try:
        train(cfg)
    except (ConfigError, NonFiniteLossError, DatasetError, CheckpointError, AudioError) as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        raise SystemExit(f"train.py: {err}") from None


if __name__ == "__main__":
    main()
