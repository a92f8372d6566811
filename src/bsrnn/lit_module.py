"""LightningModule that trains one BSRNN target network.

The network, the loss and the optimizer/scheduler factories are built by the entry script
(``train.py``) and injected here. Batches are ``(mixture [B, C, T], sources [B, S, C, T])``
with the sources in the data's order; ``target_index`` picks the network's target among them.

Training runs the network on random segments; validation separates whole tracks in chunks
(:func:`bsrnn.chunking.separate_in_chunks`, as evaluation does) and logs ``val/loss`` and
``val/usdr``. ``monitor`` (``"loss"``: ``val/loss``, lower is better; ``"sdr"``: ``val/usdr``,
higher is better) drives checkpointing, early stopping and the plateau scheduler.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from bsrnn.chunking import separate_in_chunks
from bsrnn.metrics import usdr
from bsrnn.training import NonFiniteLossError, monitor_spec, spectrogram_image

log = logging.getLogger(__name__)

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


def _factory_class(factory: Callable[..., Any]) -> Any:
    """The class a ``functools.partial`` (or a class) builds."""
    while isinstance(factory, functools.partial):
        factory = factory.func
    return factory


class BSRNNLitModule(L.LightningModule):
    """Train/validate a target network ``net`` (``net(mixture) -> ModelOutput``).

    Args:
        net: the separation network; ``net(mixture [B, C, T])`` returns ``.waveforms``
            [B, 1, C, T] and ``.stfts`` [B, 1, C, F, frames]; ``net.config`` (its constructor
            arguments) is stored in checkpoints as ``bsrnn_config``.
        loss: ``loss(est_waveforms, ref_waveforms, est_stfts=None) -> scalar``
            (:class:`bsrnn.losses.SeparationLoss`).
        optimizer: factory ``optimizer(params=...) -> Optimizer`` (e.g. a partial of Adam).
        scheduler: factory ``scheduler(optimizer=...) -> LRScheduler`` or None. A
            ``ReduceLROnPlateau`` gets ``mode`` from ``monitor`` unless the factory sets it.
        target_index: index of the network's target in the batch's sources axis.
        monitor: ``"loss"`` or ``"sdr"``.
        sample_rate: of the audio (validation chunking and logged audio).
        eval_segment_len, eval_overlap, eval_hop_size, eval_batch_chunks: whole-track
            validation in chunks (seconds; see :func:`bsrnn.chunking.separate_in_chunks`;
            ``eval_batch_chunks`` None: 1 on the CPU, 4 on a GPU).
        media_seconds: seconds of the first validation track logged as audio/spectrogram each
            epoch (0 disables).
    """

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        *,
        target_index: int = 0,
        monitor: str = "loss",
        sample_rate: int = 44100,
        eval_segment_len: float = 10.0,
        eval_overlap: float = 0.1,
        eval_hop_size: float | None = None,
        eval_batch_chunks: int | None = None,
        media_seconds: float = 5.0,
    ) -> None:
        super().__init__()
        self.monitor_key, self.monitor_mode = monitor_spec(monitor)
        if int(target_index) < 0:
            raise ValueError(f"target_index must be >= 0, got {target_index}")
        # plain values only (checkpoints must load with torch.load(weights_only=True));
        # the run's configuration is logged by bsrnn.training.RunRecorder instead.
        self.save_hyperparameters(ignore=["net", "loss", "optimizer", "scheduler"], logger=False)
        self.net = net
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.target_index = int(target_index)
        self.monitor = monitor
        self.sample_rate = int(sample_rate)
        self.eval_kwargs = dict(
            segment_len=eval_segment_len,
            overlap=eval_overlap,
            hop_size=eval_hop_size,
        )
        self.eval_batch_chunks = None if eval_batch_chunks is None else int(eval_batch_chunks)
        self.media_seconds = float(media_seconds)

    # ----------------------------------------------------------------------------------------
    # Steps
    # ----------------------------------------------------------------------------------------
    def forward(self, mixture: torch.Tensor) -> Any:
        """``mixture [B, C, T]`` -> the network's output (``.waveforms``, ``.stfts``)."""
        return self.net(mixture)

    def _separate_track(self, mixture: torch.Tensor) -> torch.Tensor:
        """Whole-track estimate in chunks: ``[B, C, T]`` -> ``[B, 1, C, T]``."""
        batch_chunks = self.eval_batch_chunks
        if batch_chunks is None:  # as evaluation does: 1 chunk per pass on the CPU, 4 on a GPU
            batch_chunks = 1 if mixture.device.type == "cpu" else 4
        return separate_in_chunks(
            lambda chunk: self.net(chunk).waveforms,
            mixture,
            self.sample_rate,
            batch_chunks=batch_chunks,
            **self.eval_kwargs,
        )

    def _reference(self, sources: torch.Tensor) -> torch.Tensor:
        """The target among ``sources [B, S, C, T]`` -> ``[B, 1, C, T]``."""
        if sources.dim() != 4 or sources.shape[1] <= self.target_index:
            raise ValueError(
                f"expected sources [batch, sources, channels, samples] with more than "
                f"{self.target_index} sources (target_index), got shape {tuple(sources.shape)}"
            )
        return sources[:, self.target_index : self.target_index + 1]

    def _check_finite(self, loss: torch.Tensor, stage: str, batch_idx: int) -> None:
        """Raise :class:`NonFiniteLossError` (on every rank at once) when ``loss`` is NaN/inf."""
        finite = bool(torch.isfinite(loss.detach()).all())
        if self._trainer is not None:
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        if not finite:
            raise NonFiniteLossError(
                f"non-finite {stage} loss ({float(loss.detach().float()):.4g} on this rank) at "
                f"epoch {self.current_epoch}, global step {self.global_step}, batch {batch_idx}: "
                "training stopped. Try a lower optim.lr, trainer.precision=32, or check the data."
            )

    def shared_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, stage: str
    ) -> dict[str, torch.Tensor]:
        """One step for ``stage`` in ``train``/``val``/``test``: estimate, loss, metrics, logs.

        Training runs the network on the batch's segments; validation/test separate the whole
        track in chunks. Returns ``{"loss", "estimate" [B, 1, C, T], "reference"}``.
        """
        mixture, sources = batch[0], batch[1]
        reference = self._reference(sources)
        if stage == "train":
            out = self.net(mixture)
            estimate, est_stfts = out.waveforms, out.stfts
        else:
            estimate, est_stfts = self._separate_track(mixture), None
        loss = self.loss(estimate, reference, est_stfts=est_stfts)
        self._check_finite(loss, stage, batch_idx)

        batch_size = mixture.shape[0]
        if stage == "train":
            self.log(
                "train/loss",
                loss,
                on_step=True,
                on_epoch=False,
                prog_bar=True,
                batch_size=batch_size,
            )
            self.log(
                "train/loss_epoch",
                loss,
                on_step=False,
                on_epoch=True,
                batch_size=batch_size,
                sync_dist=True,
            )
        else:
            sdr = usdr(reference, estimate).float().mean()
            self.log(f"{stage}/loss", loss, on_epoch=True, batch_size=batch_size, sync_dist=True)
            self.log(
                f"{stage}/usdr",
                sdr,
                on_epoch=True,
                prog_bar=True,
                batch_size=batch_size,
                sync_dist=True,
            )
        return {"loss": loss, "estimate": estimate.detach(), "reference": reference}

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.shared_step(batch, batch_idx, "train")["loss"]

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        out = self.shared_step(batch, batch_idx, "val")
        if batch_idx == 0:
            self._log_media(batch[0], out["reference"], out["estimate"])

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.shared_step(batch, batch_idx, "test")

    # ----------------------------------------------------------------------------------------
    # Media (first validation track): audio of mixture/reference/estimate and a spectrogram
    # ----------------------------------------------------------------------------------------
    def _log_media(
        self, mixture: torch.Tensor, reference: torch.Tensor, estimate: torch.Tensor
    ) -> None:
        if (
            self.media_seconds <= 0
            or self._trainer is None
            or self.trainer.sanity_checking
            or not self.trainer.is_global_zero
            or not isinstance(self.logger, TensorBoardLogger)
        ):
            return
        n_samples = mixture.shape[-1]
        length = min(n_samples, int(self.media_seconds * self.sample_rate))
        start = (n_samples - length) // 2  # a fixed excerpt from the middle of the track

        def excerpt(x: torch.Tensor) -> torch.Tensor:  # [..., C, T] (first item) -> mono [L]
            return x.reshape(-1, *x.shape[-2:])[0, :, start : start + length].float().mean(0)

        writer = self.logger.experiment
        step = self.current_epoch
        clips = {
            "mixture": excerpt(mixture),
            "reference": excerpt(reference),
            "estimate": excerpt(estimate),
        }
        for name, clip in clips.items():
            writer.add_audio(f"val_media/{name}", clip.clamp(-1, 1).cpu(), step, self.sample_rate)
        image = spectrogram_image(
            clips["reference"].cpu().numpy(),
            clips["estimate"].cpu().numpy(),
            n_fft=getattr(getattr(self.loss, "stft", None), "n_fft", 2048),
        )
        writer.add_image(
            "val_media/spectrogram_reference_vs_estimate", image, step, dataformats="HW"
        )

    # ----------------------------------------------------------------------------------------
    # Optimizer, scheduler, checkpoints
    # ----------------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        extra: dict[str, Any] = {}
        cls = _factory_class(self.scheduler_factory)
        is_plateau = isinstance(cls, type) and issubclass(
            cls, torch.optim.lr_scheduler.ReduceLROnPlateau
        )
        keywords = getattr(self.scheduler_factory, "keywords", {}) or {}
        if is_plateau and "mode" not in keywords:
            extra["mode"] = self.monitor_mode
        scheduler = self.scheduler_factory(optimizer=optimizer, **extra)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": "epoch",
                "frequency": 1,
                "monitor": self.monitor_key,
                "name": "lr",
            },
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the network's constructor arguments (``BSRNN.from_checkpoint`` reads them)."""
        config = getattr(self.net, "config", None)
        if config is not None:
            checkpoint["bsrnn_config"] = dict(config)
        if isinstance(self.logger, TensorBoardLogger):
            checkpoint["tb_log"] = {"name": self.logger.name, "version": self.logger.version}

    def n_parameters(self) -> int:
        """Trainable parameters of the network."""
        return sum(p.numel() for p in self.net.parameters() if p.requires_grad)
