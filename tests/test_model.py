"""The model family: reference parameter counts for every preset, shapes, options, errors.

Equality with the plain per-band computation and with the reference's own checkpoints is in
tests/test_model_equivalence.py and tests/test_checkpoints.py.
"""

from __future__ import annotations

import pytest
import torch

from bsrnn.bands import band_widths, hz_to_bins
from bsrnn.errors import ConfigError
from bsrnn.models import BSRNN, BSRNNConfig, build_model, count_parameters
from bsrnn.models.bsrnn import band_context_sum

# REFERENCE.md (the seed's version): (target, feature_dim, num_repeat, time, band, heads, E)
SEED_VERSION_COUNTS = [
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

# REFERENCE-NEWEST.md §12: preset -> counts for vocals, bass, drums, other
PRESET_COUNTS = {
    "bsrnn": (8_020_296, 7_111_432, 9_177_032, 8_020_296),
    "bsrnn-large": (36_417_160, 32_797_192, 41_024_392, 36_417_160),
    "bsrnn-opt": (40_777_192, 37_072_744, 45_491_944, 40_777_192),
    "bsrnn-opt-notac": (37_227_484, 33_523_036, 41_942_236, 37_227_484),
}
SIMO_COUNTS = {"simo-bsrnn": 20_861_520, "simo-bsrnn-opt": 108_727_540}


@pytest.mark.parametrize("target,n,reps,tl,bl,heads,enc,expected", SEED_VERSION_COUNTS)
def test_parameter_counts_of_the_seed_version(target, n, reps, tl, bl, heads, enc, expected):
    model = build_model(
        dict(target=target, feature_dim=n, num_repeat=reps, time_layer=tl, band_layer=bl,
             n_att_head=heads, attn_enc_dim=enc)
    )  # fmt: skip
    assert count_parameters(model) == expected


@pytest.mark.parametrize("preset", sorted(PRESET_COUNTS))
def test_parameter_counts_of_every_preset_and_target(compose, preset):
    for target, expected in zip(("vocals", "bass", "drums", "other"), PRESET_COUNTS[preset]):
        options = compose(f"src_mod={preset}", f"src_mod.target={target}")["src_mod"]
        assert count_parameters(build_model(options)) == expected, (preset, target)


@pytest.mark.parametrize("preset", sorted(SIMO_COUNTS))
def test_parameter_counts_of_simo_presets(compose, preset):
    model = build_model(compose(f"src_mod={preset}")["src_mod"])
    assert model.targets == ["vocals", "bass", "drums", "other"]
    assert count_parameters(model) == SIMO_COUNTS[preset]


def test_cross_checks_of_reference_newest():
    """§12's cross-checks: naive stereo, fac_mask 8, two heads, SIMO without subtraction."""
    assert count_parameters(build_model(dict(target="vocals", stereo="naive"))) == 9_209_296
    naive8 = build_model(dict(target="vocals", stereo="naive", fac_mask=8))
    assert count_parameters(naive8) == 20_062_160
    heads = build_model(dict(target="vocals", n_heads=2, num_repeat=4))
    assert count_parameters(heads) == 5_011_528
    simo = build_model(dict(targets=["vocals", "bass", "drums", "other"]))
    assert count_parameters(simo) == 26_621_140


def test_band_layouts():
    assert [hz_to_bins(hz, 44100, 1025) for hz in (50, 100, 250, 500, 1000, 2000)] == [
        2, 4, 11, 23, 46, 92,
    ]  # fmt: skip
    for target, n_bands, last in (("vocals", 41, 117), ("bass", 30, 295), ("drums", 55, 305)):
        widths = band_widths(target)
        assert len(widths) == n_bands and widths[-1] == last and sum(widths) == 1025
    assert band_widths(layout=[[4, 1000], [2, 5000]]) == [46, 46, 46, 46, 232, 232, 377]
    joint = BSRNNConfig(targets=("vocals", "bass")).band_widths()
    assert len(joint) == 57 and joint[-1] == 121 and sum(joint) == 1025
    assert BSRNNConfig(targets=("bass",), joint_bandsplit=True).band_widths() == joint


def _tiny(**options) -> BSRNN:
    torch.manual_seed(0)
    return build_model({"feature_dim": 8, "num_repeat": 1, **options}).eval()


def test_shapes_and_output_access():
    model = _tiny()
    out = model(torch.randn(2, 2, 22050))
    assert out.waveforms.shape == (2, 1, 2, 22050)
    assert out["stfts"].shape == (2, 1, 2, 1025, 44) and out.stfts.is_complex()
    assert out["waveforms"] is out.waveforms
    assert model(torch.randn(1, 1, 5000)).waveforms.shape == (1, 1, 1, 5000)  # mono model
    simo = _tiny(targets=["vocals", "bass", "drums", "other"], stereo="tac", n_heads=2)
    out = simo(torch.randn(2, 2, 9000))
    assert out.waveforms.shape == (2, 4, 2, 9000) and out.stfts.shape == (2, 4, 2, 1025, 18)


def test_channels_are_independent_items_without_stereo_modelling():
    model = _tiny()
    x = torch.randn(1, 2, 8000)
    with torch.no_grad():
        both, left = model(x).waveforms, model(x[:, :1]).waveforms
    torch.testing.assert_close(both[:, :, :1], left, rtol=1e-5, atol=1e-6)
    tac = _tiny(stereo="tac")
    with torch.no_grad():  # TAC mixes the channels: the left output depends on the right input
        changed = tac(torch.cat([x[:, :1], torch.zeros_like(x[:, :1])], 1)).waveforms
        assert not torch.allclose(tac(x).waveforms[:, :, 0], changed[:, :, 0])


def test_stereo_models_refuse_another_channel_count():
    for stereo in ("naive", "tac"):
        with pytest.raises(ConfigError, match=r"stereo=.*2-channel"):
            _tiny(stereo=stereo)(torch.randn(1, 1, 4000))


def test_subtract_last_target_is_the_mixture_minus_the_others():
    model = _tiny(targets=["vocals", "bass", "other"], subtract_last_trgt=True)
    assert len(model.maskers) == 2
    x = torch.randn(1, 2, 6000)
    with torch.no_grad():
        out = model(x)
    mixture = torch.stft(x.reshape(2, -1), 2048, 512, window=torch.hann_window(2048),
                         return_complex=True).view(1, 2, 1025, -1)  # fmt: skip
    torch.testing.assert_close(out.stfts.sum(1), mixture, rtol=1e-4, atol=1e-4)
    assert len(_tiny(targets=["vocals"], subtract_last_trgt=True).maskers) == 1  # ignored


def test_band_context_sum_matches_a_plain_loop():
    widths = [2, 2, 3, 4]
    spec = torch.randn(2, 11, 5, dtype=torch.complex64)
    out = band_context_sum(spec, widths, context=1)
    expected, f0 = torch.zeros_like(spec), 0
    for w in widths:
        for i in range(w):
            lo, hi = max(i - 1, 0), min(i + 2, w)
            expected[:, f0 + i] = spec[:, f0 + lo : f0 + hi].sum(1)
        f0 += w
    torch.testing.assert_close(out, expected)


def test_invalid_options_name_the_key_and_the_choices():
    cases = [
        (dict(target="piano"), r"unknown target 'piano'.*vocals, bass, drums, other"),
        (dict(time_layer="transformer"), r"src_mod\.time_layer.*lstm, gru, conv"),
        (dict(band_layer="mamba"), r"src_mod\.band_layer.*lstm, gru, conv"),
        (dict(stereo="wide"), r"src_mod\.stereo='wide'.*naive, tac"),
        (dict(act_tac="relu"), r"src_mod\.act_tac.*tanh, prelu"),
        (dict(feature_dim=10, n_att_head=3), "divisible"),
        (dict(feature_dim=10, n_heads=4), r"n_heads=4"),
        (dict(num_repeats=3), r"unknown key.*src_mod\.num_repeats; valid keys of src_mod: target"),
        (dict(bands=[[30, 2000]]), "only 1025"),
        (dict(feature_dim="64"), r"src_mod\.feature_dim='64': expected an integer"),
        (dict(target="vocals", targets=["bass"]), "disagree"),
        (dict(arch="transformer"), r"src_mod\.arch='transformer'.*bsrnn"),
    ]
    for options, message in cases:
        with pytest.raises(ConfigError, match=message):
            build_model({"target": "vocals", **options} if "targets" not in options else options)


def test_config_round_trip_and_custom_layout():
    model = build_model(
        {"arch": "bsrnn", "name": "x", "target": "piano", "feature_dim": 8, "num_repeat": 1,
         "bands": [[8, 500], [4, 2000]]}
    )  # fmt: skip
    assert model.n_bands == 13 and model.config.to_dict()["bands"] == [[8, 500.0], [4, 2000.0]]
    assert BSRNNConfig.from_mapping(model.config.to_dict()) == model.config
    assert model.targets == ["piano"] and model.sample_rate == 44100


def test_gradients_reach_every_parameter():
    model = build_model(dict(targets=["vocals", "drums"], feature_dim=8, num_repeat=1, n_heads=2,
                             stereo="tac", act_tac="prelu", n_att_head=2,
                             attn_enc_dim=4))  # fmt: skip
    out = model(torch.randn(1, 2, 8000))
    (out.waveforms.abs().mean() + out.stfts.abs().mean()).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not dead
