"""The network: reference parameter counts, shapes, options, batched == per-band computation."""

from __future__ import annotations

import pytest
import torch
from per_band_baseline import PerBandBSRNN

from bsrnn import BSRNN
from bsrnn.bands import band_widths, hz_to_bins
from bsrnn.checkpoints import convert_reference_state_dict
from bsrnn.model import count_parameters

# (target, feature_dim, num_repeat, time, band, heads, enc_dim, parameters) from REFERENCE.md
PARAMETER_COUNTS = [
    ("vocals", 64, 8, "lstm", "lstm", 0, 20, 8_020_296),
    ("vocals", 128, 12, "lstm", "lstm", 0, 20, 36_417_160),
    ("vocals", 64, 8, "lstm", "lstm", 1, 10, 8_194_376),
    ("vocals", 64, 8, "gru", "lstm", 0, 20, 7_622_984),
    ("vocals", 64, 8, "lstm", "gru", 0, 20, 7_622_984),
    ("vocals", 64, 8, "conv", "lstm", 0, 20, 6_826_312),
    ("vocals", 64, 8, "lstm", "conv", 0, 20, 6_826_312),
    ("bass", 64, 8, "lstm", "lstm", 0, 20, 7_111_432),
    ("bass", 128, 12, "lstm", "lstm", 0, 20, 32_797_192),
    ("drums", 64, 8, "lstm", "lstm", 0, 20, 9_177_032),
    ("drums", 128, 12, "lstm", "lstm", 0, 20, 41_024_392),
    ("other", 64, 8, "lstm", "lstm", 0, 20, 8_020_296),
]


@pytest.mark.parametrize("target,n,reps,tl,bl,heads,enc,expected", PARAMETER_COUNTS)
def test_parameter_counts_match_reference(target, n, reps, tl, bl, heads, enc, expected):
    model = BSRNN(
        target=target, feature_dim=n, num_repeat=reps, time_layer=tl, band_layer=bl,
        n_att_head=heads, attn_enc_dim=enc,
    )  # fmt: skip
    assert count_parameters(model) == expected


def test_band_layouts():
    assert [hz_to_bins(hz, 44100, 1025) for hz in (50, 100, 250, 500, 1000, 2000)] == [
        2, 4, 11, 23, 46, 92,
    ]  # fmt: skip
    for target, n_bands, last in (("vocals", 41, 117), ("bass", 30, 295), ("drums", 55, 305)):
        widths = band_widths(target)
        assert len(widths) == n_bands and widths[-1] == last and sum(widths) == 1025
    assert band_widths(layout=[[4, 1000], [2, 5000]]) == [46, 46, 46, 46, 232, 232, 377]


def test_shapes_and_output_access():
    model = BSRNN(feature_dim=8, num_repeat=1)
    x = torch.randn(2, 2, 22050)
    out = model(x)
    assert out.waveforms.shape == (2, 1, 2, 22050)
    assert out["stfts"].shape == (2, 1, 2, 1025, 44) and out.stfts.is_complex()
    assert out["waveforms"] is out.waveforms
    mono = model(torch.randn(1, 1, 5000))
    assert mono.waveforms.shape == (1, 1, 1, 5000)


def test_channels_are_independent_items():
    torch.manual_seed(0)
    model = BSRNN(feature_dim=8, num_repeat=1).eval()
    x = torch.randn(1, 2, 8000)
    with torch.no_grad():
        both = model(x).waveforms
        left = model(x[:, :1]).waveforms
    torch.testing.assert_close(both[:, :, :1], left, rtol=1e-5, atol=1e-6)


def test_invalid_options_list_valid_choices():
    with pytest.raises(ValueError, match="vocals, bass, drums, other"):
        BSRNN(target="piano")
    with pytest.raises(ValueError, match="lstm, gru, conv"):
        BSRNN(time_layer="transformer")
    with pytest.raises(ValueError, match="lstm, gru, conv"):
        BSRNN(band_layer="mamba")
    with pytest.raises(ValueError, match="divisible"):
        BSRNN(feature_dim=10, n_att_head=3)
    with pytest.raises(ValueError, match="valid options are"):
        BSRNN.from_config({"target": "vocals", "num_repeats": 3})
    with pytest.raises(ValueError, match="only 1025"):
        BSRNN(bands=[[30, 2000]])


def test_from_config_ignores_name_and_builds_custom_layout():
    model = BSRNN.from_config(
        {"name": "bsrnn-tiny", "target": "piano", "feature_dim": 8, "num_repeat": 1,
         "bands": [[8, 500], [4, 2000]]}
    )  # fmt: skip
    assert model.n_bands == 13 and model.config["bands"] == [[8, 500.0], [4, 2000.0]]
    assert BSRNN(**model.config).config == model.config


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Random values everywhere, norms included, so no mapping error can hide behind 1s/0s."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=gen) * 0.4 - 0.2 + (p == 1).float())


@pytest.mark.parametrize(
    "target,tl,bl,heads,enc",
    [("vocals", "lstm", "lstm", 0, 20), ("bass", "gru", "conv", 0, 20),
     ("drums", "conv", "gru", 2, 4), ("other", "lstm", "lstm", 1, 6)],
)  # fmt: skip
def test_batched_bands_equal_per_band_computation(target, tl, bl, heads, enc):
    kwargs = dict(target=target, feature_dim=8, num_repeat=2, time_layer=tl, band_layer=bl,
                  n_att_head=heads, attn_enc_dim=enc)  # fmt: skip
    baseline = PerBandBSRNN(**kwargs).eval()
    _randomise(baseline, seed=1)
    model = BSRNN(**kwargs).eval()
    model.load_state_dict(convert_reference_state_dict(baseline.state_dict(), model))
    assert count_parameters(model) == count_parameters(baseline)
    x = torch.randn(2, 2, 20000, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours, ref = model(x), baseline(x)
    peak = ref["waveforms"].abs().max()
    assert (ours.waveforms - ref["waveforms"]).abs().max() <= 1e-4 * peak
    assert (ours.stfts - ref["stfts"]).abs().max() <= 1e-4 * ref["stfts"].abs().max()


def test_gradients_reach_every_parameter():
    model = BSRNN(feature_dim=8, num_repeat=1, n_att_head=2, attn_enc_dim=4)
    out = model(torch.randn(1, 2, 8000))
    (out.waveforms.abs().mean() + out.stfts.abs().mean()).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not dead
