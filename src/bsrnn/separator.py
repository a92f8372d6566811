"""The Separator: the nn.Module that turns a mixture into stems.

A :class:`Separator` receives its networks (any :class:`~bsrnn.models.SeparationModel`: one per
target, or one multi-target model; :func:`bsrnn.model_folder.load_separator` loads them from a
model folder) and has two ways in:

- :meth:`Separator.forward`: whole tracks as a tensor, ``[B, C, T]`` -> ``[B, S, C, T]``, in
  chunks of the networks' preferred segment unless ``chunking`` sets one
  (:mod:`bsrnn.apply`, :mod:`bsrnn.chunking`);
- :meth:`Separator.separate_audio`: a file's audio (numpy ``[C, n]``, any sample rate),
  resampled to the networks' rate and back: what inference, evaluation and ``bsrnn-separate``
  use.

Each network runs once per chunk, however many of its targets are requested, through
:func:`bsrnn.apply.run_network` (channels adapted to each network, its output fitted to the
chunk). Per chunk the Separator also

- averages test-time augmentations (``tta``): the plain pass, the channel-swapped pass
  (stereo) and the polarity-inverted pass, each mapped back;
- refines the estimates with a multichannel Wiener filter (``wiener_iterations``,
  :mod:`bsrnn.filtering`), over every stem the networks produce. It runs per chunk: the
  memory stays bounded by a chunk (as open-unmix's ``wiener_win_len`` windows), the
  statistics span a chunk (10-11 s by default, open-unmix's windows are 7 s), no second STFT
  pass over the whole track is needed, and the chunk cross-fades smooth the window edges.

``precision="auto"`` is resolved by a timing probe (:mod:`bsrnn.precision_probe`) on first
use, never when the Separator is built. No Lightning needed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bsrnn.apply import resolve_chunking, run_network, separate_track
from bsrnn.audio import fit_length, resample
from bsrnn.chunking import ChunkSettings
from bsrnn.errors import CheckpointError, ConfigError
from bsrnn.filtering import wiener_waveforms
from bsrnn.models import SeparationModel
from bsrnn.runtime import autocast, inference_precision, resolve_device

log = logging.getLogger(__name__)


class Separator(nn.Module):
    """Separate mixtures into ``targets`` with ``models``.

    ``models``: networks whose targets cover ``targets`` (a list, or a ``{target: model}``
    mapping of single-target networks). ``targets`` (default: every target of the models, in
    order) picks and orders the stems. Tracks are processed in chunks as ``chunking`` says
    (:class:`~bsrnn.chunking.ChunkSettings`; a null ``segment_len``: the networks' preferred
    segment, see :func:`bsrnn.apply.resolve_chunking`), on ``device``, in ``precision``
    (``fp32``, ``bf16``: falls back to fp32 where the hardware has no native bf16; ``auto``:
    bf16 only where a probe of these models shows it faster, run on first use, see
    :mod:`bsrnn.precision_probe`). ``tta``: average the plain, channel-swapped and
    polarity-inverted passes. ``wiener_iterations`` > 0 (or ``wiener_softmask``): multichannel
    Wiener filtering of the estimates (:func:`bsrnn.filtering.wiener_waveforms`), with an extra
    residual source when ``wiener_residual`` (always when the networks give a single stem).
    The options are trusted as given: :class:`~bsrnn.evaluation.EvalSettings` checks them.
    """

    def __init__(
        self,
        models: Sequence[SeparationModel] | Mapping[str, SeparationModel],
        targets: Sequence[str] | None = None,
        chunking: ChunkSettings | None = None,
        device: str | torch.device | None = "cpu",
        precision: str = "fp32",
        tta: bool = False,
        wiener_iterations: int = 0,
        wiener_residual: bool = False,
        wiener_softmask: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(models, Mapping):
            for key, model in models.items():
                if list(model.targets) != [key]:
                    raise CheckpointError(
                        f"the model given for {key!r} produces {model.targets}, not [{key!r}]"
                    )
            models = list(models.values())
        models = list(models)
        if not models:
            raise ConfigError("a Separator needs at least one model")
        rates = {int(m.sample_rate) for m in models}
        if len(rates) > 1:
            raise ConfigError(f"the models disagree on the sample rate: {sorted(rates)}")
        self.sample_rate = rates.pop()
        # which model gives each target: the first that produces it
        source: dict[str, int] = {}
        for i, model in enumerate(models):
            for target in model.targets:
                source.setdefault(target, i)
        self.targets: list[str] = list(targets) if targets is not None else list(source)
        missing = [t for t in self.targets if t not in source]
        if missing or not self.targets:
            raise ConfigError(
                f"no model produces target(s) {', '.join(missing) or '(none asked)'}; the "
                f"models produce {', '.join(source)}"
            )
        used = sorted({source[t] for t in self.targets})
        self.models = nn.ModuleList(models[i] for i in used)
        # every stem the used models produce, each once (the Wiener filter works on them all)
        self._pool: list[tuple[int, int]] = []
        self.pool_targets: list[str] = []
        for i, model in enumerate(self.models):
            for j, target in enumerate(model.targets):
                if target not in self.pool_targets:
                    self.pool_targets.append(target)
                    self._pool.append((i, j))
        self._picks = [self.pool_targets.index(t) for t in self.targets]
        self.chunking = resolve_chunking(chunking, list(self.models))
        self.tta = bool(tta)
        self.wiener_iterations = int(wiener_iterations)
        self.wiener_residual = bool(wiener_residual)
        self.wiener_softmask = bool(wiener_softmask)
        #: checkpoint files the models came from, by the tuple of each model's targets (when
        #: loaded from a folder, :mod:`bsrnn.model_folder`)
        self.checkpoints: dict[tuple[str, ...], Path] = {}
        self.device = resolve_device(device)
        self.to(self.device)
        self.eval()
        #: ``fp32``, ``bf16``, or ``auto`` until :meth:`resolve_precision` runs (on first use)
        self.precision = inference_precision(precision, self.device)

    # ------------------------------------------------------------------------------------
    def resolve_precision(self) -> str:
        """The precision the networks run in: ``precision="auto"`` is resolved here, once, by
        a timing probe (:func:`bsrnn.precision_probe.probe_precision`, cached on disk)."""
        if self.precision == "auto":
            from bsrnn.precision_probe import probe_precision

            self.precision = probe_precision(
                list(self.models), self.device, self._run_models, self.min_samples
            )
        return self.precision

    def _run_models(self, mixture: torch.Tensor, precision: str | None = None) -> torch.Tensor:
        """Every stem of the pool: ``[B, C, t]`` -> ``[B, P, C, t]`` float32 (in
        ``precision``, default the resolved ``self.precision``)."""
        with autocast(self.device, precision or self.resolve_precision()):
            outs = [run_network(model, mixture).waveforms for model in self.models]
        return torch.stack([outs[i][:, j] for i, j in self._pool], dim=1).float()

    def _augmented(self, mixture: torch.Tensor) -> torch.Tensor:
        """The mean of the plain, polarity-inverted and (stereo) channel-swapped passes,
        each mapped back, in one batch: ``[B, C, t]`` -> ``[B, P, C, t]``."""
        batch, channels = mixture.shape[:2]
        views = [mixture, -mixture]
        if channels == 2:
            views.append(mixture.flip(1))
        y = self._run_models(torch.cat(views)).split(batch)
        total = y[0] - y[1]
        if channels == 2:
            total = total + y[2].flip(2)
        return total / len(views)

    def separate_chunk(self, mixture: torch.Tensor) -> torch.Tensor:
        """One chunk, no chunking: ``[B, C, t]`` -> ``[B, S, C, t]`` float32: the networks
        (with test-time augmentation when ``tta``), then the Wiener filter when asked."""
        y = self._augmented(mixture) if self.tta else self._run_models(mixture)
        if self.wiener_iterations > 0 or self.wiener_softmask:
            spec = self.models[0].stft_spec
            y = wiener_waveforms(
                y,
                mixture.float(),
                n_fft=spec.n_fft,
                hop_length=spec.hop_length,
                win_length=spec.win_length,
                normalized=spec.normalized,
                iterations=self.wiener_iterations,
                softmask=self.wiener_softmask,
                residual=self.wiener_residual or y.shape[1] == 1,
                window_frames=self._wiener_window(spec.hop_length),
            )
        return y[:, self._picks]

    def _wiener_window(self, hop: int) -> int:
        """Frames per Wiener window: a whole chunk (12 s at most without chunking)."""
        seg = self.chunking.segment_len  # the reference's later chunks: (1 + 2 overlap) seg
        seconds = 12.0 if seg is None else seg * (1 + 2 * self.chunking.overlap) + 2.0
        return int(seconds * self.sample_rate / hop) + 1

    @property
    def min_samples(self) -> int:
        """The shortest input the models take (one STFT frame): shorter ones are zero-padded."""
        return max(int(m.min_samples) for m in self.models)

    def forward(self, mixture: torch.Tensor, progress: bool | str = False) -> torch.Tensor:
        """Whole tracks ``[B, C, T]`` (at ``self.sample_rate``) -> stems ``[B, S, C, T]``
        float32 on the mixture's device, in ``self.targets`` order, chunk by chunk as
        ``self.chunking`` says. ``progress``: a bar over the chunks (a string: its label)."""
        if not isinstance(mixture, torch.Tensor) or mixture.dim() != 3:
            raise ConfigError(
                "expected a mixture tensor [batch, channels, samples], got "
                f"{type(mixture).__name__} {tuple(getattr(mixture, 'shape', ()))}"
            )
        return separate_track(
            self.separate_chunk,
            mixture,
            self.sample_rate,
            self.chunking,
            min_samples=self.min_samples,
            device=self.device,
            progress=progress,
        )

    def separate_audio(
        self, audio: np.ndarray, sample_rate: int, progress: bool | str = False
    ) -> np.ndarray:
        """Separate a file's audio ``[C, n]`` (numpy, any rate, any channel count the models
        take) -> stems ``[S, C, n]`` float32 numpy at ``sample_rate``, in ``self.targets``
        order.

        Resamples to the models' rate, separates (:meth:`forward`), resamples back and fits
        the length to ``n`` (cropped or zero-padded, as museval does with estimates).
        """
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 2:
            raise ConfigError(f"expected audio [channels, samples], got shape {audio.shape}")
        n = audio.shape[-1]
        rate = self.sample_rate
        x = resample(audio, sample_rate, rate)
        y = self(torch.from_numpy(x)[None], progress=progress)[0]
        y = y.cpu().numpy()  # [S, C, t]
        if rate != sample_rate:
            y = np.stack([resample(est, rate, sample_rate) for est in y])
        return fit_length(y, n)
