"""Lightning callbacks and logger of a training run: monitors, checkpoints, early stopping,
run records, the DDP weights check; and reading a checkpoint to resume from.

Everything here receives plain values (no Hydra config); ``train.py`` builds the objects.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
import yaml
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    TQDMProgressBar,
    WeightAveraging,
)
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info

from bsrnn.errors import CheckpointError, ConfigError
from bsrnn.figures import spectrogram_image
from bsrnn.files import write_text_atomic
from bsrnn.settings import MONITORS

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Resuming
# --------------------------------------------------------------------------------------------
def read_resume_info(path: Path) -> tuple[str, dict[str, Any]]:
    """What ``ckpt_path`` points at: ``("training", tb_log record)`` for a training checkpoint
    of ours (Lightning resumes it: epoch, optimizer, scheduler, callbacks), or
    ``("weights", {})`` for a file that only holds a network (the reference implementation's
    checkpoints, or a standalone model file): its weights initialise the network.

    Raises :class:`ConfigError` for a file that is neither.
    """
    from bsrnn.checkpoints import checkpoint_format, read_checkpoint

    try:
        ckpt = read_checkpoint(path)
        kind = checkpoint_format(ckpt)
    except CheckpointError as err:
        raise ConfigError(f"ckpt_path={path}: {err}") from err
    if kind == "reference" or "optimizer_states" not in ckpt or "loops" not in ckpt:
        return "weights", {}
    return "training", dict(ckpt.get("tb_log") or {})


# --------------------------------------------------------------------------------------------
# Callbacks and logger
# --------------------------------------------------------------------------------------------
class WeightsSyncCheck(Callback):
    """At the end of training, check that every process holds the same network weights.

    Each rank logs a digest of its weights; with several processes the digests are gathered
    and a mismatch raises ``RuntimeError`` (data-parallel replicas must never drift apart).
    """

    @staticmethod
    def digest(module: torch.nn.Module) -> str:
        """Hex SHA-1 of the module's parameters (names, shapes and bytes)."""
        sha = hashlib.sha1()
        for name, param in module.state_dict().items():
            sha.update(name.encode())
            tensor = param.detach().cpu().contiguous()
            sha.update(str(tuple(tensor.shape)).encode())
            sha.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
        return sha.hexdigest()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        net = getattr(pl_module, "net", pl_module)
        digest = self.digest(net)
        log.info(
            "rank %d/%d: network weights digest %s",
            trainer.global_rank,
            trainer.world_size,
            digest,
        )
        if trainer.world_size <= 1:
            return
        code = torch.tensor([int(digest[:15], 16)], dtype=torch.int64, device=pl_module.device)
        gathered = trainer.strategy.all_gather(code).reshape(-1).tolist()
        if len(set(gathered)) != 1:
            raise RuntimeError(
                f"network weights differ across the {trainer.world_size} processes at the end "
                f"of training (digest prefixes {[f'{c:015x}' for c in gathered]})"
            )
        rank_zero_info(f"weights identical on all {trainer.world_size} processes")


class RunRecorder(Callback):
    """Record what a run is: the resolved config, its command-line overrides, its Hydra group
    choices and the network size, into the TensorBoard version folder (``config.yaml``,
    ``overrides.yaml``) and as TensorBoard hyperparameters (rank 0 only).

    A resumed run that continues in the same folder writes ``config-resume<N>.yaml`` and
    ``overrides-resume<N>.yaml`` and keeps the first record as the run's hyperparameters.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        overrides: Sequence[str] = (),
        choices: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = dict(config)
        self.overrides = [str(o) for o in overrides]
        self.choices = {str(k): v for k, v in (choices or {}).items()}

    def hparams(self, n_params: int) -> dict[str, Any]:
        """Flat ``{key: str|int|float|bool}`` hyperparameters of the run."""
        flat = flatten(self.config)
        flat.update({f"choice/{k}": v for k, v in self.choices.items()})
        flat["n_params"] = int(n_params)
        flat["overrides"] = " ".join(self.overrides)
        return {k: _hparam_value(v) for k, v in flat.items()}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        n_params = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
        rank_zero_info(f"network: {n_params:,} trainable parameters")
        logger = trainer.logger
        if not trainer.is_global_zero or not isinstance(logger, TensorBoardLogger):
            return
        folder = Path(logger.log_dir)
        folder.mkdir(parents=True, exist_ok=True)
        record = {"config": self.config, "choices": self.choices, "n_params": n_params}
        if (folder / "config.yaml").exists():  # resumed into the same version folder
            n = 1
            while (folder / f"config-resume{n}.yaml").exists():
                n += 1
            write_yaml(folder / f"config-resume{n}.yaml", record)
            write_yaml(folder / f"overrides-resume{n}.yaml", self.overrides)
            return
        write_yaml(folder / "config.yaml", record)
        write_yaml(folder / "overrides.yaml", self.overrides)
        from torch.utils.tensorboard.summary import hparams

        metrics = {key: 0.0 for key, _ in MONITORS.values()}
        writer = logger.experiment
        for summary in hparams(self.hparams(n_params), metrics):
            writer.file_writer.add_summary(summary)
        writer.add_text("run/overrides", " ".join(self.overrides) or "(none)", 0)
        writer.flush()


class MediaLogger(Callback):
    """Log ``seconds`` of the first validation track each epoch to TensorBoard: the audio of
    the mixture, the reference and the estimate (first target, mono), and a spectrogram of the
    reference against the estimate (with the network's STFT size). Rank 0, not during the
    sanity check; 0 seconds disables it."""

    def __init__(self, seconds: float = 5.0) -> None:
        self.seconds = float(seconds)

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if (
            batch_idx != 0
            or self.seconds <= 0
            or trainer.sanity_checking
            or not trainer.is_global_zero
            or not isinstance(trainer.logger, TensorBoardLogger)
            or not isinstance(outputs, Mapping)
        ):
            return
        mixture = batch[0]
        rate = int(pl_module.net.sample_rate)
        n_samples = mixture.shape[-1]
        length = min(n_samples, int(self.seconds * rate))
        start = (n_samples - length) // 2  # a fixed excerpt from the middle of the track

        def excerpt(x: torch.Tensor) -> torch.Tensor:  # [..., C, T] (first item) -> mono [L]
            return x.reshape(-1, *x.shape[-2:])[0, :, start : start + length].float().mean(0)

        writer = trainer.logger.experiment
        step = trainer.current_epoch
        clips = {
            "mixture": excerpt(mixture),
            "reference": excerpt(outputs["reference"]),
            "estimate": excerpt(outputs["estimate"]),
        }
        for name, clip in clips.items():
            writer.add_audio(f"val_media/{name}", clip.clamp(-1, 1).cpu(), step, rate)
        image = spectrogram_image(
            clips["reference"].cpu(), clips["estimate"].cpu(), pl_module.net.stft_spec
        )
        writer.add_image(
            "val_media/spectrogram_reference_vs_estimate", image, step, dataformats="HW"
        )


class LinearWarmup(Callback):
    """The learning rate rises linearly from ``lr / steps`` to ``lr`` over the first ``steps``
    optimizer steps (each group's rate as the optimizer was built); schedulers act after."""

    def __init__(self, steps: int) -> None:
        self.steps = int(steps)
        self._base: list[list[float]] | None = None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if self.steps <= 0 or step > self.steps:
            return
        if self._base is None:
            self._base = [[g["lr"] for g in opt.param_groups] for opt in trainer.optimizers]
        scale = min(1.0, (step + 1) / self.steps)
        for opt, rates in zip(trainer.optimizers, self._base):
            for group, rate in zip(opt.param_groups, rates):
                group["lr"] = rate * scale


def ema_callback(momentum: float) -> WeightAveraging:
    """Lightning's :class:`WeightAveraging` as MSST keeps its EMA: an ``AveragedModel`` of the
    parameters with ``get_ema_multi_avg_fn(momentum)`` (``avg = momentum * avg + (1 -
    momentum) * w`` after each optimizer step, starting from the first step's weights),
    buffers not averaged (they are constants here: STFT windows, band indices, which an
    average would corrupt). Validation runs on the average, and every checkpoint's
    ``state_dict`` holds it (the raw weights go to ``current_model_state``), so ``<target>.ckpt``
    and everything that loads it (evaluation, separation) use the averaged weights;
    ``ckpt_path=last`` resumes both."""
    from torch.optim.swa_utils import get_ema_multi_avg_fn

    return WeightAveraging(use_buffers=False, multi_avg_fn=get_ema_multi_avg_fn(momentum))


def build_callbacks(
    *,
    best_path: Path,
    last_path: Path,
    monitor_key: str,
    monitor_mode: str,
    patience: int | None,
    progress_bar: bool = True,
    recorder: RunRecorder | None = None,
    warmup_steps: int = 0,
    media_seconds: float = 5.0,
    ema_momentum: float | None = None,
) -> list[Callback]:
    """Checkpoints (best by ``monitor_key`` in ``monitor_mode`` → ``best_path``; last →
    ``last_path``), early stopping after ``patience`` epochs without improvement (None:
    none), the
    learning-rate warm-up and logging, validation media, the progress bar, the DDP weights
    check, the run recorder, and the EMA of the weights (``ema_momentum``; None: none)."""
    if best_path.parent != last_path.parent:
        raise ValueError(f"best and last checkpoints must share a folder: {best_path}, {last_path}")
    key, mode = monitor_key, monitor_mode
    checkpoint = ModelCheckpoint(
        dirpath=best_path.parent,
        filename=best_path.stem,
        monitor=key,
        mode=mode,
        save_top_k=1,
        save_last=True,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    checkpoint.CHECKPOINT_NAME_LAST = last_path.stem
    callbacks: list[Callback] = [
        checkpoint,
        LearningRateMonitor(logging_interval="epoch"),
        WeightsSyncCheck(),
        MediaLogger(media_seconds),
    ]
    if ema_momentum is not None:
        callbacks.append(ema_callback(ema_momentum))
    if patience is not None:
        callbacks.append(EarlyStopping(monitor=key, mode=mode, patience=int(patience)))
    if warmup_steps > 0:
        callbacks.append(LinearWarmup(warmup_steps))
    if progress_bar:
        callbacks.append(TQDMProgressBar())
    if recorder is not None:
        callbacks.append(recorder)
    return callbacks


def build_logger(
    tb_dir: str | os.PathLike, name: str, version: int | str | None = None
) -> TensorBoardLogger:
    """TensorBoard logger writing ``<tb_dir>/<name>/version_<N>`` (or ``<version>``)."""
    return TensorBoardLogger(
        save_dir=str(tb_dir), name=name, version=version, default_hp_metric=False
    )


# --------------------------------------------------------------------------------------------
# Small utilities
# --------------------------------------------------------------------------------------------
def route_lightning_logs_to_root() -> None:
    """Let Lightning's messages go through the root logger only (Hydra's console and log file).

    ``import lightning`` gives the ``lightning`` logger a console handler of its own, which
    prints every message twice once the root logger is configured."""
    if logging.getLogger().hasHandlers():
        lightning_logger = logging.getLogger("lightning")
        for handler in list(lightning_logger.handlers):
            lightning_logger.removeHandler(handler)


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, prefix=f"{name}."))
        else:
            out[name] = value
    return out


def _hparam_value(value: Any) -> str | int | float | bool:
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)


def write_yaml(path: Path, data: Any) -> None:
    """Write ``data`` as YAML to ``path`` atomically."""
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))
