"""A separator: networks for the requested targets, applied chunk by chunk to whole tracks.

``Separator`` receives its networks (any :class:`~bsrnn.models.SeparationModel`: one per
target, or one multi-target model) instead of building them; :meth:`Separator.from_dir` loads
them from a preset's model folder (:mod:`bsrnn.paths`: ``<target>.ckpt`` per target, or one
``separator.ckpt`` for a multi-target model; our checkpoints or the reference's), and
:meth:`Separator.from_model_dir` from any folder of checkpoints that describe themselves (no
preset needed). Each network runs once per chunk, however many of its targets are requested.
No Lightning needed.

Per chunk, :meth:`Separator.forward` also

- adapts the channels to each network's ``audio_channels``: a mono network separates each
  channel of a stereo file as its own item, a stereo network gets a mono file duplicated (its
  two output channels averaged back), a network of any count gets the file's channels: the
  stems always have the file's channels;
- averages test-time augmentations (``tta``): the plain pass, the channel-swapped pass
  (stereo) and the polarity-inverted pass, each mapped back;
- refines the estimates with a multichannel Wiener filter (``wiener_iterations``,
  :mod:`bsrnn.filtering`), over every stem the networks produce. It runs per chunk: the
  memory stays bounded by a chunk (as open-unmix's ``wiener_win_len`` windows), the
  statistics span a chunk (10-11 s by default, open-unmix's windows are 7 s), no second STFT
  pass over the whole track is needed, and the chunk cross-fades smooth the window edges.

:meth:`Separator.separate_audio` is the one place that resamples a file's audio to the
models' rate, separates it and brings the stems back to the file's rate and length
(inference, evaluation and ``bsrnn-separate`` all use it).
"""

from __future__ import annotations

import hashlib
import json
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

from bsrnn.audio import (
    AudioError,
    AudioInfo,
    audio_info,
    fit_length,
    read_audio,
    resample,
    write_audio,
)
from bsrnn.checkpoints import load_model
from bsrnn.chunking import ChunkSettings, separate_in_chunks
from bsrnn.errors import CheckpointError, ConfigError
from bsrnn.filtering import wiener_waveforms
from bsrnn.models import SeparationModel, arch_name, build_model, model_config
from bsrnn.paths import checkpoint_path
from bsrnn.runtime import (
    auto_precision,
    autocast,
    inference_precision,
    resolve_device,
    time_forward,
)

log = logging.getLogger(__name__)

#: The usual order of the MUSDB18 stems (a model folder's targets are listed in it).
STEM_ORDER = ("vocals", "bass", "drums", "other")

#: Seconds of audio the ``precision=auto`` probe times one forward pass on.
PROBE_SECONDS = 1.0


def model_dir_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """The checkpoints of a model folder: ``*.ckpt`` except training's ``*-last.ckpt``,
    sorted by name."""
    folder = Path(folder)
    return sorted(
        p for p in folder.glob("*.ckpt") if p.is_file() and not p.name.endswith("-last.ckpt")
    )


class Separator(nn.Module):
    """Separate mixtures into ``targets`` with ``models``.

    ``models``: networks whose targets cover ``targets`` (a list, or a ``{target: model}``
    mapping of single-target networks). ``targets`` (default: every target of the models, in
    order) picks and orders the stems. Tracks are processed in chunks as ``chunking`` says
    (:class:`~bsrnn.chunking.ChunkSettings`), on ``device``, in ``precision`` (``fp32``,
    ``bf16``: falls back to fp32 where the hardware has no native bf16; ``auto``: bf16 only
    where a probe of these models shows it faster, see :func:`bsrnn.runtime.auto_precision`).
    ``tta``: average the plain, channel-swapped and polarity-inverted passes.
    ``wiener_iterations`` > 0 (or ``wiener_softmask``): multichannel Wiener filtering of the
    estimates (:func:`bsrnn.filtering.wiener_waveforms`), with an extra residual source when
    ``wiener_residual`` (always when the networks give a single stem).
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
        self.chunking = chunking if chunking is not None else ChunkSettings()
        self.tta = bool(tta)
        if isinstance(wiener_iterations, bool) or int(wiener_iterations) != wiener_iterations:
            raise ConfigError(
                f"eval.wiener_iterations must be an integer >= 0, got {wiener_iterations!r}"
            )
        if wiener_iterations < 0:
            raise ConfigError(
                f"eval.wiener_iterations must be >= 0 (0: no Wiener filter), got "
                f"{wiener_iterations}"
            )
        self.wiener_iterations = int(wiener_iterations)
        self.wiener_residual = bool(wiener_residual)
        self.wiener_softmask = bool(wiener_softmask)
        #: checkpoint files the models came from, by ", ".join(targets) (when loaded from one)
        self.checkpoints: dict[str, Path] = {}
        self.device = resolve_device(device)
        self.to(self.device)
        self.eval()
        self.precision = inference_precision(precision, self.device)
        if self.precision == "auto":
            self.precision = self._auto_precision()

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
        paths: dict[str, Path] = {}
        for group in groups:
            path = checkpoint_path(ckpt_dir, group)
            if path.is_file():
                model = load_model(path, map_location="cpu")
                if list(model.targets) != group and len(group) == 1:
                    raise CheckpointError(
                        f"{path} holds a model for target(s) {model.targets}, not {group}"
                    )
                log.info("loaded %s (targets %s)", path, ", ".join(model.targets))
                paths[", ".join(model.targets)] = path
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
        separator = cls(models, targets=targets, **kwargs)
        separator.checkpoints = paths
        return separator

    @classmethod
    def from_model_dir(
        cls,
        folder: str | os.PathLike,
        targets: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> Separator:
        """Load every self-describing checkpoint of ``folder`` (``*.ckpt`` but
        ``*-last.ckpt``; :func:`bsrnn.checkpoints.load_model` rebuilds each with its
        architecture, options and targets): no preset needed.

        ``targets``: the stems to separate (None: every stem the checkpoints provide, the
        MUSDB18 stems first in their usual order). A stem that no checkpoint provides is a
        CheckpointError listing what the folder has; when two provide one, the first file by
        name wins. ``kwargs`` go to the constructor.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise CheckpointError(f"model folder not found: {folder}")
        paths = model_dir_checkpoints(folder)
        if not paths:
            raise CheckpointError(
                f"no checkpoint in {folder}: expected <target>.ckpt or separator.ckpt files "
                "(training's *-last.ckpt files are not used)"
            )
        models = []
        by_targets: dict[str, Path] = {}
        for path in paths:
            model = load_model(path, map_location="cpu")
            log.info("loaded %s (targets %s)", path, ", ".join(model.targets))
            models.append(model)
            by_targets[", ".join(model.targets)] = path
        available = folder_targets(models)
        wanted = available if targets is None else list(targets)
        missing = [t for t in wanted if t not in available]
        if missing or not wanted:
            raise CheckpointError(
                f"{folder} has no model for {', '.join(missing) or '(no target asked)'}: its "
                f"checkpoints ({', '.join(p.name for p in paths)}) provide "
                f"{', '.join(available)}"
            )
        separator = cls(models, targets=wanted, **kwargs)
        separator.checkpoints = {
            key: path
            for key, path in by_targets.items()
            if any(", ".join(m.targets) == key for m in separator.models)
        }
        return separator

    # ------------------------------------------------------------------------------------
    def _auto_precision(self) -> str:
        """Resolve ``precision=auto`` with a probe: one forward pass of these models on
        :data:`PROBE_SECONDS` of noise, in fp32 and in bf16."""
        channels = self.models[0].audio_channels or 2
        n = max(int(PROBE_SECONDS * self.sample_rate), self.min_samples)
        generator = torch.Generator().manual_seed(0)
        example = (0.1 * torch.randn(1, channels, n, generator=generator)).to(self.device)
        digest = model_digest(self.models, example.shape)

        def timer(precision: str) -> float:
            return time_forward(
                lambda: self._run_models(example, precision), self.device, precision
            )

        return auto_precision(self.device, digest, timer)

    def _run_model(self, model: SeparationModel, x: torch.Tensor) -> torch.Tensor:
        """One network on ``x`` ``[B, C, t]`` -> ``[B, s, C, t]``, adapting the channels to
        the network's ``audio_channels``."""
        batch, channels, t = x.shape
        want = model.audio_channels

        def run(inputs: torch.Tensor) -> torch.Tensor:
            # a network may return a few samples less (MSST's Mel-RoFormer without
            # match_input_audio_length): zeros complete the chunk, as MSST's output would be
            y = model(inputs).waveforms
            if y.shape[-1] < t:
                y = torch.nn.functional.pad(y, (0, t - y.shape[-1]))
            return y[..., :t]

        if want is None or want == channels:
            y = run(x)
        elif want == 1:  # each channel as its own item
            y = run(x.reshape(batch * channels, 1, t))  # [B*C, s, 1, t]
            y = y.reshape(batch, channels, -1, t).transpose(1, 2)
        elif channels == 1:  # a mono file for a multichannel network: duplicated, averaged
            y = run(x.expand(batch, want, t)).mean(dim=2, keepdim=True)
        else:
            raise ConfigError(
                f"a {type(model).__name__} for {want}-channel audio cannot separate "
                f"{channels}-channel audio"
            )
        if y.dim() != 4 or y.shape[1] != len(model.targets) or y.shape[2] != channels:
            raise ConfigError(
                f"a {type(model).__name__} returned waveforms of shape {tuple(y.shape)}, "
                f"expected [B, {len(model.targets)}, {channels}, T]"
            )
        return y

    def _run_models(self, mixture: torch.Tensor, precision: str | None = None) -> torch.Tensor:
        """Every stem of the pool: ``[B, C, t]`` -> ``[B, P, C, t]`` float32 (in
        ``precision``, default ``self.precision``)."""
        with autocast(self.device, precision or self.precision):
            outs = [self._run_model(model, mixture) for model in self.models]
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

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        """One chunk: ``[B, C, t]`` -> ``[B, S, C, t]`` float32 (no chunking): the networks
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
    def preferred_segment(self) -> float | None:
        """The chunk length (seconds) the networks prefer (their ``segment_samples``, e.g. an
        imported RoFormer's MSST ``chunk_size``), when they all declare the same; else None."""
        segments = {m.segment_samples for m in self.models}
        if len(segments) != 1 or None in segments:
            return None
        return segments.pop() / self.sample_rate

    @property
    def min_samples(self) -> int:
        """The shortest input the models take (one STFT frame): shorter ones are zero-padded."""
        return max(int(m.min_samples) for m in self.models)

    def separate_stacked(self, mixture: torch.Tensor, progress: bool | str = False) -> torch.Tensor:
        """Chunked separation of whole tracks: ``[B, C, T]`` -> ``[B, S, C, T]`` (float32, on
        the mixture's device; targets in ``self.targets`` order). ``progress``: a bar over the
        chunks (a string: its label)."""
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

    def separate_audio(
        self, audio: np.ndarray, sample_rate: int, progress: bool | str = False
    ) -> np.ndarray:
        """Separate a file's audio ``[C, n]`` (numpy, any rate, any channel count the models
        take) -> stems ``[S, C, n]`` float32 at ``sample_rate``, in ``self.targets`` order.

        Resamples to the models' rate, separates (channels adapted per network, see
        :meth:`forward`), resamples back and fits the length to ``n`` (cropped or
        zero-padded, as museval does with estimates).
        """
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 2:
            raise ConfigError(f"expected audio [channels, samples], got shape {audio.shape}")
        n = audio.shape[-1]
        rate = self.sample_rate
        x = resample(audio, sample_rate, rate)
        y = self.separate_stacked(torch.from_numpy(x)[None], progress=progress)[0]
        y = y.cpu().numpy()  # [S, C, t]
        if rate != sample_rate:
            y = np.stack([resample(est, rate, sample_rate) for est in y])
        return fit_length(y, n)


def folder_targets(models: Sequence[SeparationModel]) -> list[str]:
    """Every target of ``models``, each once: the MUSDB18 stems first in their usual order,
    then the others in model order."""
    seen = list(dict.fromkeys(t for m in models for t in m.targets))
    known = [t for t in STEM_ORDER if t in seen]
    return known + [t for t in seen if t not in known]


def model_digest(models: Sequence[SeparationModel], shape: Sequence[int] = ()) -> str:
    """A short digest of the models' architectures and configs (and an input shape): what a
    precision probe measured."""
    record = [[arch_name(m), m.config.to_dict()] for m in models]
    text = json.dumps([record, list(shape)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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


#: Output formats and the soundfile subtype of each bit depth (32: float, WAV only).
SUBTYPES: dict[str, dict[int, str]] = {
    "wav": {16: "PCM_16", 24: "PCM_24", 32: "FLOAT"},
    "flac": {16: "PCM_16", 24: "PCM_24"},
}


def output_subtype(fmt: str, bits: int) -> str:
    """The soundfile subtype for ``fmt`` (``wav``/``flac``) at ``bits`` (ConfigError for a
    combination the format cannot hold, e.g. 32-bit FLAC)."""
    fmt = str(fmt).lower()
    if fmt not in SUBTYPES:
        raise ConfigError(f"unknown output format {fmt!r}: expected one of {', '.join(SUBTYPES)}")
    if bits not in SUBTYPES[fmt]:
        raise ConfigError(
            f"{fmt.upper()} cannot hold {bits}-bit samples: use "
            f"{' or '.join(str(b) for b in SUBTYPES[fmt])} bits"
            + (" (32-bit float is WAV only)" if fmt == "flac" and bits == 32 else "")
        )
    return SUBTYPES[fmt][bits]


def _clip_for(subtype: str, stem: np.ndarray, name: str) -> np.ndarray:
    """Integer PCM holds [-1, 1): samples beyond are clipped, with a warning."""
    if not subtype.startswith("PCM"):
        return stem
    over = int(np.count_nonzero(np.abs(stem) > 1.0))
    if over:
        log.warning(
            "%s: %d sample(s) beyond full scale (peak %.2f) clipped for %s; float WAV "
            "(--format wav --bits 32) keeps them",
            name,
            over,
            float(np.abs(stem).max()),
            subtype,
        )
    return np.clip(stem, -1.0, 1.0)


def separate_file(
    separator: Separator,
    file_path: str | os.PathLike,
    rec_dir: str | os.PathLike,
    offset: float = 0.0,
    max_len: float | None = None,
    progress: bool | str = False,
    ext: str = "wav",
    subtype: str = "FLOAT",
) -> dict[str, Path]:
    """Separate ``[offset, offset + max_len)`` seconds of an audio file and write one stem per
    target to ``<rec_dir>/<target>.<ext>`` (default: float WAV; ``subtype`` is soundfile's,
    see :func:`output_subtype`; integer PCM clips at full scale with a warning).

    Any file soundfile reads, at any sample rate, mono or stereo: the stems come back at the
    file's sample rate, channel count and length (:meth:`Separator.separate_audio`). The stems
    are written to a temporary folder first and moved into ``rec_dir`` only when all are done.
    Raises :class:`~bsrnn.audio.AudioError` for a missing, unreadable or empty file or a range
    outside it.
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
    stems = separator.separate_audio(audio, sr, progress=progress)  # [S, C, n]

    rec_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{rec_dir.name}.", dir=rec_dir.parent))
    names = [f"{target}.{ext}" for target in separator.targets]
    try:
        for name, est in zip(names, stems):
            est = _clip_for(subtype, est, f"{path.name} {name}")
            write_audio(tmp_dir / name, est, sr, subtype=subtype)
        rec_dir.mkdir(parents=True, exist_ok=True)
        written = {}
        for target, name in zip(separator.targets, names):
            dest = rec_dir / name
            os.replace(tmp_dir / name, dest)
            written[target] = dest
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return written
