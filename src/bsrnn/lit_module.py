"""LightningModule that trains a separation network (one target or several).

The entry script (``train.py``) builds everything from the run's typed settings and injects
it here: the network, the loss, the optimizer factory (its learning rate already final, scaled
or not) and the scheduler settings. Batches are ``(mixture [B, C, T], references [B, S, C, T])``
with the references in the order of the network's targets (the data module stacks them so).

Training runs the network on random segments; the loss covers every target at once (the mean
over targets, as the reference computes it). The network always runs through
:func:`bsrnn.apply.run_network` (channels adapted, output fitted to its input), as in
evaluation and separation. Validation separates each whole track in chunks as evaluation does
(the model's preferred segment unless ``eval.segment_len`` sets one,
:func:`bsrnn.apply.separate_track`) and logs ``val/usdr`` (the mean over
targets) and ``val/usdr_<target>`` per target; ``val/loss`` is, by default, the reference's:
the median over the chunks of each chunk's loss, with the network's own STFT output for the tf
term when it gives one (``val_loss="track"``: the loss of the whole assembled estimate instead).
Media (audio, spectrograms) are logged by :class:`bsrnn.callbacks.MediaLogger` from the first
validation step's output.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import lightning.pytorch as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from bsrnn.apply import resolve_chunking, run_network, separate_track
from bsrnn.checkpoints import model_record
from bsrnn.chunking import ChunkSettings, chunk_spans, crop
from bsrnn.errors import ConfigError, NonFiniteLossError
from bsrnn.metrics import stem_metrics, usdr
from bsrnn.models import SeparationModel
from bsrnn.settings import SchedulerSettings

log = logging.getLogger(__name__)

OptimizerFactory = Callable[..., torch.optim.Optimizer]


class SeparationLitModule(L.LightningModule):
    """Train/validate ``net`` (a :class:`~bsrnn.models.SeparationModel`).

    Args:
        net: the network; ``net(mixture [B, C, T])`` returns ``.waveforms`` [B, S, C, T] (and
            optionally ``.stfts``) for its ``net.targets``; checkpoints record its
            architecture and config (:func:`bsrnn.checkpoints.model_record`).
        loss: ``loss(est_waveforms, ref_waveforms, est_stfts=None) -> scalar``
            (:class:`bsrnn.losses.SeparationLoss`).
        optimizer: ``optimizer(params) -> Optimizer`` with its final learning rate.
        scheduler: how to build and step the learning-rate scheduler (its ``factory()`` may
            be None: no scheduler).
        chunking: whole-track validation in chunks (as evaluation does; a null segment: the
            network's preferred one).
        val_loss: ``"chunks"`` (the reference's) or ``"track"``.
        val_metrics: MSST's metrics (``si_sdr``, ``bleedless``, ``fullness``, ``l1_freq``)
            validation also logs as ``val/<metric>`` and ``val/<metric>_<target>`` (on the
            CPU, per track; train.py passes those of ``eval.metrics``, none by default).
    """

    def __init__(
        self,
        net: SeparationModel,
        loss: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerSettings | None = None,
        *,
        chunking: ChunkSettings | None = None,
        val_loss: str = "chunks",
        val_metrics: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.net = net
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler = scheduler if scheduler is not None else SchedulerSettings()
        self.targets = list(net.targets)
        self.sample_rate = int(net.sample_rate)
        self.chunking = resolve_chunking(chunking, [net])
        self.val_loss = val_loss
        self.val_metrics = tuple(val_metrics)
        #: per stage: [S uSDR, S per val metric..., loss, tracks], sums over this rank's tracks
        self._track_sums: dict[str, torch.Tensor] = {}

    # ----------------------------------------------------------------------------------------
    # Steps
    # ----------------------------------------------------------------------------------------
    def _check_batch(self, mixture: torch.Tensor, references: torch.Tensor) -> None:
        expected = (mixture.shape[0], len(self.targets), *mixture.shape[1:])
        if tuple(references.shape) != expected:
            raise ConfigError(
                f"batch references have shape {tuple(references.shape)}, expected {expected} "
                f"(batch, one per target of the network {self.targets}, channels, samples)"
            )

    def _separate_track(
        self, mixture: torch.Tensor, references: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole-track estimate in chunks ``[B, S, C, T]``, and the median over chunks of each
        chunk's loss (the network's own STFT for the tf term)."""
        # the chunks separate_track gives `run` (a track shorter than the network takes is
        # zero-padded: so are its references, by crop)
        n = max(mixture.shape[-1], self.net.min_samples)
        spans = iter(chunk_spans(n, self.sample_rate, self.chunking))
        losses: list[torch.Tensor] = []
        batch = mixture.shape[0]

        def run(chunk: torch.Tensor) -> torch.Tensor:
            out = run_network(self.net, chunk)
            for j in range(chunk.shape[0] // batch):
                ref = crop(references, *next(spans))
                part = slice(j * batch, (j + 1) * batch)
                stfts = None if out.stfts is None else out.stfts[part]
                losses.append(self.loss(out.waveforms[part], ref, est_stfts=stfts))
            return out.waveforms

        estimate = separate_track(
            run, mixture, self.sample_rate, self.chunking, min_samples=self.net.min_samples
        )
        return estimate, torch.stack(losses).median()

    def _check_finite(self, loss: torch.Tensor, stage: str, batch_idx: int) -> None:
        """Raise :class:`NonFiniteLossError` when ``loss`` is NaN/inf on this rank.

        The check is local, with no collective: a per-step all-reduce would cost a
        synchronisation every step and can hang validation, whose ranks run different numbers
        of tracks. Under DDP the rank that sees it raises; Lightning then stops the processes
        it launched (rank 0 kills the others), and torchrun/srun end the job when one task
        exits with an error. A non-finite loss on one rank also spreads through the gradient
        all-reduce: every rank's weights are non-finite after that step, so every rank stops
        at the next one at the latest."""
        if not bool(torch.isfinite(loss.detach()).all()):
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
        track in chunks. Returns ``{"loss", "estimate" [B, S, C, T], "reference"}``.
        """
        mixture, references = batch[0], batch[1]
        self._check_batch(mixture, references)
        if stage == "train":
            out = run_network(self.net, mixture)
            estimate = out.waveforms
            loss = self.loss(estimate, references, est_stfts=out.stfts)
        else:
            estimate, chunk_loss = self._separate_track(mixture, references)
            loss = chunk_loss if self.val_loss == "chunks" else self.loss(estimate, references)
        self._check_finite(loss, stage, batch_idx)

        batch_size = mixture.shape[0]
        if stage == "train":
            self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True,
                     batch_size=batch_size)  # fmt: skip
            self.log("train/loss_epoch", loss, on_step=False, on_epoch=True,
                     batch_size=batch_size, sync_dist=True)  # fmt: skip
        else:
            if batch_idx < self._counted_batches(stage):
                self._accumulate_track_metrics(stage, references, estimate, loss, batch_size)
        return {"loss": loss, "estimate": estimate.detach(), "reference": references}

    # ----------------------------------------------------------------------------------------
    # Validation metrics: a true mean over tracks, counted once for any number of devices
    # ----------------------------------------------------------------------------------------
    def _accumulate_track_metrics(
        self,
        stage: str,
        references: torch.Tensor,
        estimate: torch.Tensor,
        loss: torch.Tensor,
        batch_size: int,
    ) -> None:
        """Add this batch's tracks to the rank's sums: uSDR per target ``[S]`` summed over the
        batch's tracks, the loss (the batch's value, once per track) and the track count.
        Nothing is synchronised here; :meth:`_log_track_metrics` reduces once per epoch."""
        sdr = usdr(references, estimate).float().sum(0).detach()  # [S], summed over tracks
        columns = [sdr, *self._val_metric_sums(references, estimate)]
        row = torch.cat([*columns, (loss.detach().float() * batch_size).reshape(1)])
        row = torch.cat([row, row.new_tensor([batch_size])])
        sums = self._track_sums.get(stage)
        self._track_sums[stage] = row if sums is None else sums + row

    def _val_metric_sums(self, references: torch.Tensor, estimate: torch.Tensor) -> list:
        """Each of ``val_metrics`` (MSST's: SI-SDR, bleedless, ...) per target ``[S]``, summed
        over the batch's tracks (on the CPU, in numpy)."""
        if not self.val_metrics:
            return []
        ref, est = references.detach().float().cpu(), estimate.detach().float().cpu()
        per_item = [
            stem_metrics(self.val_metrics, r, e, self.sample_rate) for r, e in zip(ref, est)
        ]
        sums = [np.sum([item[m] for item in per_item], axis=0) for m in self.val_metrics]
        return [torch.as_tensor(v, dtype=torch.float32, device=estimate.device) for v in sums]

    def _counted_batches(self, stage: str) -> float:
        """How many of this rank's leading batches count (:class:`bsrnn.data.datasets.
        ShardSampler` repeats one track on a rank that has none, not to be counted)."""
        if self._trainer is None:
            return float("inf")
        loaders = self.trainer.val_dataloaders if stage == "val" else self.trainer.test_dataloaders
        counted = getattr(getattr(loaders, "sampler", None), "counted", None)
        return float("inf") if counted is None else counted

    def _log_track_metrics(self, stage: str) -> None:
        """All-reduce (sum) the ranks' track sums once, then log ``<stage>/usdr`` (mean over
        targets), ``<stage>/usdr_<target>`` and ``<stage>/loss``: means over every track, each
        counted once (identical on every rank)."""
        n_targets = len(self.targets)
        n_columns = n_targets * (1 + len(self.val_metrics))
        sums = self._track_sums.pop(stage, None)
        if sums is None:  # this rank had no track: it still takes part in the reduction
            sums = torch.zeros(n_columns + 2, device=self.device)
        sums = sums.to(self.device)
        if self._trainer is not None and self.trainer.world_size > 1:
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        count = float(sums[-1])
        if count == 0:
            return
        sdr, loss = sums[:n_targets] / count, sums[n_columns] / count
        if not bool(torch.isfinite(loss)):
            raise NonFiniteLossError(
                f"non-finite {stage} loss at epoch {self.current_epoch}, global step "
                f"{self.global_step}: training stopped. Try a lower optim.lr, "
                "trainer.precision=32, or check the data."
            )
        self.log(f"{stage}/loss", loss, on_epoch=True)
        self.log(f"{stage}/usdr", sdr.mean(), on_epoch=True, prog_bar=True)
        for target, value in zip(self.targets, sdr):
            self.log(f"{stage}/usdr_{target}", value, on_epoch=True)
        for i, metric in enumerate(self.val_metrics, start=1):
            values = sums[i * n_targets : (i + 1) * n_targets] / count
            self.log(f"{stage}/{metric}", values.mean(), on_epoch=True)
            for target, value in zip(self.targets, values):
                self.log(f"{stage}/{metric}_{target}", value, on_epoch=True)
        self.log(f"{stage}/tracks", count, on_epoch=True)

    def on_validation_epoch_start(self) -> None:
        self._track_sums.pop("val", None)

    def on_validation_epoch_end(self) -> None:
        self._log_track_metrics("val")

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.shared_step(batch, batch_idx, "train")["loss"]

    def validation_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        """The validation step's output (``loss``, ``estimate``, ``reference``) goes to the
        callbacks (:class:`bsrnn.callbacks.MediaLogger`)."""
        return self.shared_step(batch, batch_idx, "val")

    # ----------------------------------------------------------------------------------------
    # Optimizer, scheduler, checkpoints
    # ----------------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        """The optimizer, and the scheduler stepped every ``scheduler.interval`` x
        ``frequency`` (a ``ReduceLROnPlateau`` follows ``scheduler.monitor``, ``val/loss`` by
        default as in the reference; checkpoint choice and early stopping follow
        ``optim.monitor_val``)."""
        optimizer = self.optimizer_factory(self.parameters())
        factory = self.scheduler.factory()
        if factory is None:
            return optimizer
        config = {
            "scheduler": factory(optimizer),
            "interval": self.scheduler.interval,
            "frequency": self.scheduler.frequency,
            "name": "lr",
        }
        if self.scheduler.is_plateau:
            config["monitor"] = self.scheduler.monitor
        return {"optimizer": optimizer, "lr_scheduler": config}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record what rebuilds the network (``bsrnn.checkpoints.load_model`` reads it)."""
        checkpoint["model"] = model_record(self.net)
        if isinstance(self.logger, TensorBoardLogger):
            checkpoint["tb_log"] = {"name": self.logger.name, "version": self.logger.version}
