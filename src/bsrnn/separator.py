"""A multi-target separator: one network per target, applied chunk by chunk to whole tracks.

``Separator`` receives its models (``{target: nn.Module}``) instead of building them;
:meth:`Separator.from_dir` loads them from ``<ckpt_dir>/<target>.ckpt`` (our checkpoints or the
reference implementation's published ones). No Lightning needed.
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
from bsrnn.checkpoints import CheckpointError
from bsrnn.chunking import separate_in_chunks
from bsrnn.model import BSRNN

log = logging.getLogger(__name__)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"``: CUDA when available, else CPU. A CUDA device asked for on a machine
    without one falls back to the CPU with a warning."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        log.warning("device %r requested but CUDA is not available: using the CPU", str(device))
        return torch.device("cpu")
    return dev


def checkpoint_path(ckpt_dir: str | os.PathLike, target: str) -> Path:
    """Where the checkpoint of ``target`` lives: ``<ckpt_dir>/<target>.ckpt``."""
    return Path(ckpt_dir) / f"{target}.ckpt"


class Separator(nn.Module):
    """Separate mixtures into ``targets`` (the keys of ``models``, in order).

    Each model maps ``[B, C, T]`` to an output with ``.waveforms`` ``[B, 1, C, T]`` (a
    :class:`~bsrnn.BSRNN`) or directly to a tensor ``[B, 1, C, T]``. Tracks are processed in
    chunks (see :func:`bsrnn.chunking.separate_in_chunks`): ``segment_len``/``overlap`` (linear
    fader) or ``hop_size`` (overlap-add), in seconds; ``batch_chunks`` chunks per forward pass
    (``None``: 1 on the CPU, 4 on a GPU).
    """

    def __init__(
        self,
        models: Mapping[str, nn.Module],
        segment_len: float | None = 10.0,
        overlap: float = 0.1,
        hop_size: float | None = None,
        device: str | torch.device | None = "cpu",
        batch_chunks: int | None = None,
        sample_rate: int | None = None,
    ) -> None:
        super().__init__()
        if not models:
            raise ValueError("a Separator needs at least one target model")
        self.targets: list[str] = [str(t) for t in models]
        self.models = nn.ModuleDict({t: m for t, m in models.items()})
        rates = {t: getattr(m, "sample_rate", None) for t, m in models.items()}
        known = {r for r in rates.values() if r is not None}
        if len(known) > 1:
            raise ValueError(f"the target models disagree on the sample rate: {rates}")
        if sample_rate is None:
            if not known:
                raise ValueError("pass sample_rate: the models do not say their sample rate")
            sample_rate = known.pop()
        elif known and int(sample_rate) not in known:
            raise ValueError(f"sample_rate={sample_rate} but the models expect {known.pop()} Hz")
        self.sample_rate = int(sample_rate)
        self.segment_len = segment_len
        self.overlap = float(overlap)
        self.hop_size = hop_size
        self.device = resolve_device(device)
        self.batch_chunks = (
            int(batch_chunks)
            if batch_chunks is not None
            else (4 if self.device.type == "cuda" else 1)
        )
        self.to(self.device)
        self.eval()

    # ------------------------------------------------------------------------------------
    @classmethod
    def from_dir(
        cls,
        ckpt_dir: str | os.PathLike,
        targets: Sequence[str],
        allow_random: bool = False,
        model_config: Mapping[str, Any] | None = None,
        segment_len: float | None = 10.0,
        overlap: float = 0.1,
        hop_size: float | None = None,
        device: str | torch.device | None = "cpu",
        batch_chunks: int | None = None,
    ) -> Separator:
        """Load ``<ckpt_dir>/<target>.ckpt`` for each target.

        A missing checkpoint raises :class:`~bsrnn.checkpoints.CheckpointError` naming the
        path, unless ``allow_random`` is set: then the network is built from ``model_config``
        (a ``src_mod`` mapping; its ``target`` is replaced) with random weights, and a warning
        is logged. A checkpoint trained for another target is an error.
        """
        if not targets:
            raise ValueError("no targets to separate")
        models: dict[str, nn.Module] = {}
        for target in targets:
            path = checkpoint_path(ckpt_dir, target)
            if path.is_file():
                model = BSRNN.from_checkpoint(str(path), map_location="cpu")
                if model.target != target:
                    raise CheckpointError(
                        f"{path} holds a model for target {model.target!r}, not {target!r}"
                    )
                log.info("loaded %s", path)
            elif allow_random:
                if model_config is None:
                    raise ValueError(
                        f"no checkpoint at {path} and no model_config to build a random model"
                    )
                log.warning(
                    "no checkpoint at %s: using a %s model with RANDOM weights (allow_random)",
                    path,
                    target,
                )
                model = BSRNN.from_config({**dict(model_config), "target": target})
            else:
                raise CheckpointError(
                    f"checkpoint not found: {path} (train the {target} model first, or place the "
                    "published checkpoint there; allow random weights only for pipeline checks)"
                )
            models[target] = model
        return cls(
            models,
            segment_len=segment_len,
            overlap=overlap,
            hop_size=hop_size,
            device=device,
            batch_chunks=batch_chunks,
        )

    # ------------------------------------------------------------------------------------
    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        """One pass of every model: ``[B, C, t]`` -> ``[B, S, C, t]`` (no chunking)."""
        outs = []
        for target, model in self.models.items():
            y = model(mixture)
            y = y["waveforms"] if isinstance(y, Mapping) else y
            if y.dim() != 4 or y.shape[1] != 1:
                raise ValueError(
                    f"the {target} model returned waveforms of shape {tuple(y.shape)}, "
                    "expected [B, 1, C, T]"
                )
            outs.append(y)
        return torch.cat(outs, dim=1)

    def separate_stacked(self, mixture: torch.Tensor, progress: bool = False) -> torch.Tensor:
        """Chunked separation of whole tracks: ``[B, C, T]`` -> ``[B, S, C, T]`` (float32, on
        the mixture's device; targets in ``self.targets`` order)."""
        return separate_in_chunks(
            self,
            mixture.float(),
            sample_rate=self.sample_rate,
            segment_len=self.segment_len,
            overlap=self.overlap,
            hop_size=self.hop_size,
            device=self.device,
            batch_chunks=self.batch_chunks,
            progress=progress,
        )

    def separate(self, mixture: Any, progress: bool = False) -> dict[str, Any]:
        """Separate ``mixture`` ``[C, T]`` or ``[B, C, T]`` (tensor or numpy, at
        ``self.sample_rate``) -> ``{target: estimate}`` with the input's shape and kind
        (numpy in, float32 numpy out)."""
        is_numpy = isinstance(mixture, np.ndarray)
        x = torch.from_numpy(np.ascontiguousarray(mixture)) if is_numpy else mixture
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"mixture must be a tensor or numpy array, got {type(mixture).__name__}"
            )
        if x.dim() not in (2, 3):
            raise ValueError(
                f"expected a mixture [channels, samples] or [batch, channels, samples], "
                f"got shape {tuple(x.shape)}"
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

    rec_dir = Path(rec_dir)
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
