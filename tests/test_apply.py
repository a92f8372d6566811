"""bsrnn.apply: channels adapted to the network, its output fitted to its input, the model's
preferred segment where eval.segment_len is null."""

from __future__ import annotations

import pytest
import torch

from bsrnn.apply import fit_samples, preferred_segment, resolve_chunking, run_network
from bsrnn.chunking import ChunkSettings
from bsrnn.errors import ConfigError
from bsrnn.models import ModelConfig, ModelOutput, SeparationModel, StftSpec, build_model

GAINS = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)  # stem k = (k + 1) x the mixture


class Gain(SeparationModel):
    """Stems = mixture x (1, 2, ...), ``delta`` samples longer (> 0) or shorter (< 0); STFT
    ``stfts`` of the stems; ``channels`` as declared; ``segment`` samples preferred."""

    def __init__(self, channels: int | None, delta: int = 0, segment: int | None = None) -> None:
        super().__init__(ModelConfig(targets=("a", "b"), sample_rate=1000))
        self.channels, self.delta, self.segment = channels, delta, segment

    @property
    def stft_spec(self) -> StftSpec:
        return StftSpec(64, 16)

    @property
    def audio_channels(self) -> int | None:
        return self.channels

    @property
    def segment_samples(self) -> int | None:
        return self.segment

    def core(self, spec: torch.Tensor) -> torch.Tensor:  # linear: the gains on the spectrogram
        return spec[:, None] * GAINS.view(1, 2, 1, 1, 1, 1)

    def forward(self, mixture: torch.Tensor) -> ModelOutput:  # its own, to change the length
        if self.channels is not None:
            assert mixture.shape[1] == self.channels
        y = mixture[:, None] * GAINS
        flat = y.reshape(-1, y.shape[-1])
        stfts = torch.stft(flat, 64, 16, window=torch.ones(64), return_complex=True)
        stfts = stfts.reshape(*y.shape[:3], *stfts.shape[-2:])
        y = fit_samples(y, y.shape[-1] + self.delta)
        return ModelOutput(waveforms=y, stfts=stfts)


def test_channels_adapted_to_the_network():
    x = torch.randn(2, 2, 300)
    want = x[:, None] * GAINS
    for channels in (None, 2, 1):  # as they are / stereo / each channel its own item
        out = run_network(Gain(channels), x)
        torch.testing.assert_close(out.waveforms, want)
        assert out.stfts.shape == (2, 2, 2, 33, 19)
        torch.testing.assert_close(out.stfts, Gain(None)(x).stfts)
    mono = x[:, :1]
    out = run_network(Gain(2), mono)  # duplicated, averaged back
    torch.testing.assert_close(out.waveforms, mono[:, None] * GAINS)
    assert out.stfts.shape == (2, 2, 1, 33, 19)
    with pytest.raises(ConfigError, match="2-channel audio cannot separate 3-channel"):
        run_network(Gain(2), torch.randn(1, 3, 300))


@pytest.mark.parametrize("delta", [-20, 0, 15])
def test_output_fitted_to_the_input(delta):
    x = torch.randn(1, 2, 300)
    for channels in (2, 1):
        y = run_network(Gain(channels, delta), x).waveforms
        assert y.shape == (1, 2, 2, 300)
        kept = min(300, 300 + delta)
        torch.testing.assert_close(y[..., :kept], x[:, None, :, :kept] * GAINS)
        assert torch.count_nonzero(y[..., kept:]) == 0  # zero-filled


def test_the_models_segment_where_none_is_set():
    bsrnn = build_model({"target": "vocals", "feature_dim": 8, "num_repeat": 1})
    assert preferred_segment([bsrnn]) == 10.0  # the reference's evaluation chunk
    assert resolve_chunking(ChunkSettings(overlap=0.2), [bsrnn]) == ChunkSettings(
        segment_len=10.0, overlap=0.2
    )
    assert resolve_chunking(None, [Gain(2, segment=1500)]).segment_len == 1.5
    assert resolve_chunking(ChunkSettings(segment_len=3.0), [bsrnn]).segment_len == 3.0
    assert resolve_chunking(None, [Gain(2)]).segment_len is None  # none declared: whole track
    disagree = [Gain(2, segment=1500), Gain(2, segment=1000)]
    assert resolve_chunking(None, disagree).segment_len is None
