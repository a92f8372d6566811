"""The one path that runs a separation network, for training, validation, evaluation and
separation alike.

- :func:`run_network`: one pass of a network over a batch ``[B, C, t]``, with the channels
  adapted to the network and its output fitted to ``t`` samples. Training's step, validation's
  chunks and the :class:`~bsrnn.separator.Separator`'s chunks all go through it, so the loss
  sees what evaluation scores.
- :func:`resolve_chunking`: the chunking of whole tracks; ``eval.segment_len: null`` becomes the
  networks' preferred segment (``model.segment_samples``), and stays null (a whole track at
  once) only where they declare none.
- :func:`separate_track`: a whole track ``[B, C, T]`` in chunks (:mod:`bsrnn.chunking`), a
  track shorter than the networks take zero-padded first.

Channels (``model.audio_channels``): a mono network separates each channel of a stereo batch
as its own item; a stereo network gets a mono input duplicated, and its two output channels
are averaged back; a network of any count (None) gets the channels as they are. The stems
always have the input's channels.

Length: a network may return fewer samples than it was given (MSST's Mel-RoFormer with
``match_input_audio_length=false`` gives ``(frames - 1) * hop``) or more; zeros complete a
shorter output (as MSST's own chunk assembly does), a longer one is cropped.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from bsrnn.chunking import ChunkSettings, separate_in_chunks
from bsrnn.errors import ConfigError
from bsrnn.models.base import ModelOutput, SeparationModel

log = logging.getLogger(__name__)


def fit_samples(y: torch.Tensor, n: int) -> torch.Tensor:
    """``y [..., t]`` cropped or zero-filled at the end to ``[..., n]``."""
    t = y.shape[-1]
    if t == n:
        return y
    if t > n:
        return y[..., :n]
    return F.pad(y, (0, n - t))


def run_network(model: SeparationModel, mixture: torch.Tensor) -> ModelOutput:
    """One pass of ``model`` over ``mixture`` ``[B, C, t]``: ``waveforms`` ``[B, S, C, t]``
    (channels adapted, length fitted to ``t``: see the module's documentation) and, when the
    network gives them, its complex ``stfts`` ``[B, S, C, F, frames]`` (channels adapted the
    same way). Runs with or without gradients, as the caller's context says."""
    if mixture.dim() != 3:
        raise ConfigError(
            f"expected a mixture [batch, channels, samples], got shape {tuple(mixture.shape)}"
        )
    batch, channels, t = mixture.shape
    want = model.audio_channels
    if want is None or want == channels:
        out = model(mixture)
        waveforms, stfts = out.waveforms, out.stfts
    elif want == 1:  # each channel as its own item
        out = model(mixture.reshape(batch * channels, 1, t))
        waveforms = _unfold_channels(out.waveforms, batch, channels)
        stfts = None if out.stfts is None else _unfold_channels(out.stfts, batch, channels)
    elif channels == 1:  # a mono input for a multichannel network: duplicated, averaged back
        out = model(mixture.expand(batch, want, t))
        waveforms = out.waveforms.mean(dim=2, keepdim=True)
        stfts = None if out.stfts is None else out.stfts.mean(dim=2, keepdim=True)
    else:
        raise ConfigError(
            f"a {type(model).__name__} for {want}-channel audio cannot separate "
            f"{channels}-channel audio"
        )
    stems = len(model.targets)
    if waveforms.dim() != 4 or waveforms.shape[1] != stems or waveforms.shape[2] != channels:
        raise ConfigError(
            f"a {type(model).__name__} returned waveforms of shape {tuple(waveforms.shape)}, "
            f"expected [B, {stems}, {channels}, T]"
        )
    return ModelOutput(waveforms=fit_samples(waveforms, t), stfts=stfts)


def _unfold_channels(y: torch.Tensor, batch: int, channels: int) -> torch.Tensor:
    """``[B*C, S, 1, ...]`` (each channel an item) -> ``[B, S, C, ...]``."""
    rest = y.shape[3:]
    return y.reshape(batch, channels, y.shape[1], *rest).transpose(1, 2)


def preferred_segment(models: Sequence[SeparationModel]) -> float | None:
    """The chunk length (seconds) the networks prefer (``segment_samples``, e.g. an imported
    RoFormer's MSST ``chunk_size``), when they all declare the same; else None."""
    segments = {(m.segment_samples, int(m.sample_rate)) for m in models}
    if len(segments) != 1:
        return None
    samples, rate = segments.pop()
    return None if samples is None else samples / rate


def resolve_chunking(
    chunking: ChunkSettings | None, models: Sequence[SeparationModel]
) -> ChunkSettings:
    """``chunking`` with a null ``segment_len`` replaced by the networks'
    :func:`preferred_segment` (left null, a whole track at once, where they declare none or
    disagree)."""
    chunking = chunking if chunking is not None else ChunkSettings()
    if chunking.segment_len is not None:
        return chunking
    segment = preferred_segment(models)
    if segment is None:
        return chunking
    return dataclasses.replace(chunking, segment_len=segment)


def separate_track(
    fn: Callable[[torch.Tensor], torch.Tensor],
    mixture: torch.Tensor,
    sample_rate: int,
    chunking: ChunkSettings,
    min_samples: int = 1,
    device: torch.device | str | None = None,
    progress: bool | str = False,
) -> torch.Tensor:
    """Whole tracks ``[B, C, T]`` -> ``[B, S, C, T]`` float32 in chunks of the resolved
    ``chunking`` (:func:`resolve_chunking`; :func:`bsrnn.chunking.separate_in_chunks`), with
    ``fn`` mapping a chunk ``[n, C, t]`` to ``[n, S, C, t]``. A track shorter than
    ``min_samples`` (the networks' shortest input) is zero-padded for the separation and the
    stems cut back. ``progress``: a bar over the chunks (a string: its label)."""
    n = mixture.shape[-1]
    if 0 < n < min_samples:  # the STFT's reflect padding needs more than n_fft / 2
        log.warning(
            "the mixture is only %d samples long: zero-padded to %d for the separation",
            n,
            min_samples,
        )
        padded = F.pad(mixture.float(), (0, min_samples - n))
        return separate_in_chunks(fn, padded, sample_rate, chunking, device, progress)[..., :n]
    return separate_in_chunks(fn, mixture.float(), sample_rate, chunking, device, progress)
