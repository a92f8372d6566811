"""A separator: networks for the requested targets, applied chunk by chunk to whole tracks.

``Separator`` receives its networks (any :class:`~bsrnn.models.SeparationModel`: one per
target, or one multi-target model) instead of building them; :meth:`Separator.from_dir` loads
them from a model folder (:mod:`bsrnn.paths`: ``<target>.ckpt`` per target, or one
``separator.ckpt`` for a multi-target model; our checkpoints or the reference's). Each network
runs once per chunk, however many of its targets are requested. No Lightning needed.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bsrnn.audio import AudioError, AudioInfo, audio_info, read_audio, resample, write_audio
from bsrnn.checkpoints import load_model
from bsrnn.chunking import ChunkSettings, separate_in_chunks
from bsrnn.errors import CheckpointError, ConfigError
from bsrnn.models import SeparationModel, build_model, model_config
from bsrnn.paths import checkpoint_path
from bsrnn.runtime import autocast, inference_precision, resolve_device

log = logging.getLogger(__name__)


class Separator(nn.Module):
    """Separate mixtures into ``targets`` with ``models``.

    ``models``: networks whose targets cover ``targets`` (a list, or a ``{target: model}``
    mapping of single-target networks). ``targets`` (default: every target of the models, in
    order) picks and orders the stems. Tracks are processed in chunks as ``chunking`` says
    (:class:`~bsrnn.chunking.ChunkSettings`), on ``device``, in ``precision`` (``fp32`` or
    ``bf16``; bf16 falls back to fp32 where the hardware has no native bf16).
    """

    def __init__(
        self,
        models: Sequence[SeparationModel] | Mapping[str, SeparationModel],
        targets: Sequence[str] | None = None,
        chunking: ChunkSettings | None = None,
        device: str | torch.device | None = "cpu",
        precision: str = "fp32",
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
        # which model, and which of its outputs, gives each target
        source: dict[str, tuple[int, int]] = {}
        for i, model in enumerate(models):
            for j, target in enumerate(model.targets):
                source.setdefault(target, (i, j))
        self.targets: list[str] = list(targets) if targets is not None else list(source)
        missing = [t for t in self.targets if t not in source]
        if missing or not self.targets:
            raise ConfigError(
                f"no model produces target(s) {', '.join(missing) or '(none asked)'}; the "
                f"models produce {', '.join(source)}"
            )
        used = sorted({source[t][0] for t in self.targets})
        self.models = nn.ModuleList(models[i] for i in used)
        self._picks = [(used.index(source[t][0]), source[t][1]) for t in self.targets]
        self.chunking = chunking if chunking is not None else ChunkSettings()
        self.device = resolve_device(device)
        self.precision = inference_precision(precision, self.device)
        self.to(self.device)
        self.eval()

    # ------------------------------------------------------------------------------------
    @classmethod
    def from_dir(
        cls,
        ckpt_dir: str | os.PathLike,
        targets: Sequence[str],
        model_options: Mapping[str, Any] | None = None,
        allow_random: bool = False,
        **kwargs: Any,
    ) -> Separator:
        """Load the networks for ``targets`` from ``ckpt_dir``.

        ``model_options`` (the ``src_mod`` preset) says whether the folder holds one
        multi-target model (``separator.ckpt``: its ``targets`` lists several) or one model per
        target (``<target>.ckpt``). A missing checkpoint raises a CheckpointError naming the
        path, unless ``allow_random``: then the network is built from ``model_options`` with
        random weights and a warning. ``kwargs`` go to the constructor.
        """
        targets = list(targets)
        if not targets:
            raise ConfigError("no targets to separate")
        options = dict(model_options or {})
        preset_targets = list(model_config(options)[1].targets) if options else None
        groups = (
            [list(preset_targets)]
            if preset_targets and len(preset_targets) > 1
            else [[t] for t in targets]
        )
        models = []
        for group in groups:
            path = checkpoint_path(ckpt_dir, group)
            if path.is_file():
                model = load_model(path, map_location="cpu")
                if list(model.targets) != group and len(group) == 1:
                    raise CheckpointError(
                        f"{path} holds a model for target(s) {model.targets}, not {group}"
                    )
                log.info("loaded %s (targets %s)", path, ", ".join(model.targets))
            elif allow_random:
                log.warning(
                    "no checkpoint at %s: using a model with RANDOM weights (allow_random)", path
                )
                model = build_model({**options, "target": None, "targets": group})
            else:
                raise CheckpointError(
                    f"checkpoint not found: {path} (train the model first, or place the "
                    "published checkpoint there; allow random weights only for pipeline checks)"
                )
            models.append(model)
        return cls(models, targets=targets, **kwargs)

    # ------------------------------------------------------------------------------------
    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        """One pass of every model: ``[B, C, t]`` -> ``[B, S, C, t]`` float32 (no chunking)."""
        with autocast(self.device, self.precision):
            outs = [model(mixture).waveforms for model in self.models]
        for model, out in zip(self.models, outs):
            if out.dim() != 4 or out.shape[1] != len(model.targets):
                raise ConfigError(
                    f"a {type(model).__name__} returned waveforms of shape {tuple(out.shape)}, "
                    f"expected [B, {len(model.targets)}, C, T]"
                )
        return torch.stack([outs[i][:, j] for i, j in self._picks], dim=1).float()

    @property
    def min_samples(self) -> int:
        """The shortest input the models take (one STFT frame): shorter ones are zero-padded."""
        return max(int(m.min_samples) for m in self.models)

    def separate_stacked(self, mixture: torch.Tensor, progress: bool = False) -> torch.Tensor:
        """Chunked separation of whole tracks: ``[B, C, T]`` -> ``[B, S, C, T]`` (float32, on
        the mixture's device; targets in ``self.targets`` order)."""
        n = mixture.shape[-1]
        if 0 < n < self.min_samples:  # the STFT's reflect padding needs more than n_fft / 2
            log.warning(
                "the mixture is only %d samples long: zero-padded to %d for the separation",
                n,
                self.min_samples,
            )
            padded = torch.nn.functional.pad(mixture.float(), (0, self.min_samples - n))
            return self.separate_stacked(padded, progress)[..., :n]
        return separate_in_chunks(
            self,
            mixture.float(),
            sample_rate=self.sample_rate,
            chunking=self.chunking,
            device=self.device,
            progress=progress,
        )

    def separate(self, mixture: Any, progress: bool = False) -> dict[str, Any]:
        """Separate ``mixture`` ``[C, T]`` or ``[B, C, T]`` (tensor or numpy, at
        ``self.sample_rate``) -> ``{target: estimate}`` with the input's shape and kind
        (numpy in, float32 numpy out)."""
        is_numpy = isinstance(mixture, np.ndarray)
        x = torch.from_numpy(np.ascontiguousarray(mixture)) if is_numpy else mixture
        if not isinstance(x, torch.Tensor) or x.dim() not in (2, 3):
            raise ConfigError(
                "expected a mixture tensor or numpy array [channels, samples] or [batch, "
                f"channels, samples], got {type(mixture).__name__} "
                f"{tuple(getattr(mixture, 'shape', ()))}"
            )
        unbatched = x.dim() == 2
        y = self.separate_stacked(x[None] if unbatched else x, progress=progress)
        if unbatched:
            y = y[0]
        out: dict[str, Any] = {}
        for i, target in enumerate(self.targets):
            est = y[..., i, :, :]
            out[target] = est.cpu().numpy() if is_numpy else est
        return out


# --------------------------------------------------------------------------------------------
# Separating an audio file
# --------------------------------------------------------------------------------------------
def file_range(
    file_path: str | os.PathLike, offset: float = 0.0, max_len: float | None = None
) -> tuple[AudioInfo, int, int | None]:
    """Check an input file and the requested range: ``(info, start, stop)`` in frames
    (``stop`` None: to the end).

    Raises :class:`~bsrnn.audio.AudioError` for a missing, unreadable or empty file, a file
    that is neither mono nor stereo, or a range outside it.
    """
    path = Path(file_path)
    info = audio_info(path)
    if info.frames <= 0:
        raise AudioError(f"{path} holds no audio (0 frames)")
    if info.channels not in (1, 2):
        raise AudioError(f"{path} has {info.channels} channels: expected mono or stereo audio")
    if offset is None:
        offset = 0.0
    if offset < 0:
        raise AudioError(f"offset must be >= 0 seconds, got {offset}")
    if max_len is not None and not max_len > 0:
        raise AudioError(f"max_len must be > 0 seconds (or null: to the end), got {max_len}")
    start = int(round(offset * info.sample_rate))
    if start >= info.frames:
        raise AudioError(
            f"offset {offset} s is past the end of {path} ({info.duration:.2f} s long)"
        )
    stop = (
        None
        if max_len is None
        else min(info.frames, start + int(round(max_len * info.sample_rate)))
    )
    return info, start, stop


def separate_file(
    separator: Separator,
    file_path: str | os.PathLike,
    rec_dir: str | os.PathLike,
    offset: float = 0.0,
    max_len: float | None = None,
    progress: bool = False,
) -> dict[str, Path]:
    """Separate ``[offset, offset + max_len)`` seconds of an audio file and write one stem per
    target to ``<rec_dir>/<target>.wav`` (float WAV).

    Any file soundfile reads, at any sample rate, mono or stereo: the audio is resampled to the
    model's rate (mono duplicated to stereo) and the stems come back at the file's sample rate,
    channel count and length. The stems are written to a temporary folder first and moved into
    ``rec_dir`` only when all are done. Raises :class:`~bsrnn.audio.AudioError` for a missing,
    unreadable or empty file or a range outside it.
    """
    path = Path(file_path)
    rec_dir = Path(rec_dir)
    if rec_dir.exists() and not rec_dir.is_dir():
        raise ConfigError(f"rec_dir={rec_dir} is an existing file: expected a folder for the stems")
    info, start, stop = file_range(path, offset, max_len)
    audio, sr = read_audio(path, start=start, stop=stop)
    if audio.shape[-1] == 0:
        raise AudioError(f"no audio read from {path} in the requested range")
    channels, n = audio.shape
    log.info(
        "separating %s: %.2f s from %.2f s, %d channel(s) at %d Hz",
        path,
        n / sr,
        start / sr,
        channels,
        sr,
    )

    x = resample(audio, sr, separator.sample_rate)
    if channels == 1:
        x = np.repeat(x, 2, axis=0)
    y = separator.separate_stacked(torch.from_numpy(x)[None], progress=progress)[0].numpy()
    stems: dict[str, np.ndarray] = {}
    for target, est in zip(separator.targets, y):  # est [2, t]
        if channels == 1:
            est = est.mean(axis=0, keepdims=True)
        est = resample(est, separator.sample_rate, sr)
        if est.shape[-1] >= n:
            est = est[:, :n]
        else:
            est = np.pad(est, ((0, 0), (0, n - est.shape[-1])))
        stems[target] = est

    rec_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{rec_dir.name}.", dir=rec_dir.parent))
    try:
        for target, est in stems.items():
            write_audio(tmp_dir / f"{target}.wav", est, sr, subtype="FLOAT")
        rec_dir.mkdir(parents=True, exist_ok=True)
        written = {}
        for target in stems:
            dest = rec_dir / f"{target}.wav"
            os.replace(tmp_dir / f"{target}.wav", dest)
            written[target] = dest
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return written
