"""A toy architecture, as a newcomer would add one: a learned real mask per frequency bin and
target over the mixture's STFT. It exists to test the extension point: it touches nothing
outside this module, its preset (``conf/src_mod/toy-mask.yaml`` here) and one registry line.

It declares its own STFT, takes any channel count, prefers 1 s chunks, and implements only
``core`` (the spectrogram part): the base class's forward runs its STFT and iSTFT.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bsrnn.errors import ConfigError
from bsrnn.models import ModelConfig, SeparationModel, StftSpec


@dataclass(frozen=True)
class ToyMaskConfig(ModelConfig):
    """``n_fft``/``hop``: the STFT; ``segment``: the chunk it prefers (samples)."""

    n_fft: int = 256
    hop: int = 64
    segment: int = 44100

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_fft < 16 or self.hop < 1:
            raise ConfigError(f"invalid {self.where}.n_fft/hop: {self.n_fft}/{self.hop}")


class ToyMask(SeparationModel):
    """``mixture [B, C, T]`` -> ``waveforms [B, S, C, T]``: sigmoid(logit[s, f]) * STFT."""

    def __init__(self, config: ToyMaskConfig) -> None:
        super().__init__(config)
        bins = config.n_fft // 2 + 1
        self.logits = nn.Parameter(torch.zeros(len(config.targets), bins, 1))

    @property
    def stft_spec(self) -> StftSpec:
        return StftSpec(n_fft=self.config.n_fft, hop_length=self.config.hop)

    @property
    def audio_channels(self) -> int | None:
        return None

    @property
    def segment_samples(self) -> int | None:
        return self.config.segment

    def core(self, spec: torch.Tensor) -> torch.Tensor:
        """``[b, c, F, frames, 2] -> [b, S, c, F, frames, 2]``: the mixture times the masks."""
        masks = torch.sigmoid(self.logits)[None, :, None, :, :, None]  # [1, S, 1, F, 1, 1]
        return spec[:, None] * masks
