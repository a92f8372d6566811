"""BS-RoFormer and Mel-RoFormer: MSST's stored outputs, parameter counts, the Mel layout, the
batched bands vs the plain per-band computation, the MSST reader and the config errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from bsrnn.bands import mel_band_membership
from bsrnn.errors import CheckpointError, ConfigError
from bsrnn.losses import SeparationLoss
from bsrnn.models.base import count_parameters
from bsrnn.models.roformer import (
    BSRoformer,
    BSRoformerConfig,
    MelRoformer,
    MelRoformerConfig,
    RoformerConfig,
    RotaryEmbedding,
)
from bsrnn.models.roformer_msst import (
    load_msst_model,
    msst_model_config,
    msst_to_state_dict,
    read_msst_state_dict,
    read_msst_yaml,
    state_dict_to_msst,
)
from tests.reference.roformer_per_band_baseline import PerBandRoformer

# shared/ sits beside the checkout (in CI too): a missing fixture folder fails the tests
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "msst-roformer"
CASES = ["bs-stereo-1stem", "mel-stereo-4stems"]


def _peak_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


def _fixture(case: str) -> tuple[torch.nn.Module, dict]:
    model = load_msst_model(FIXTURES / f"{case}.yaml", FIXTURES / f"{case}.ckpt")
    return model, torch.load(FIXTURES / f"{case}.io.pt", weights_only=True)


# --------------------------------------------------------------------------------------------
# MSST's stored outputs and losses
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_fixture_output_and_loss_match_msst(case):
    model, io = _fixture(case)
    with torch.no_grad():
        out = model(io["mixture"]).waveforms
    theirs = io["output"]
    if theirs.dim() == 3:  # MSST's Mel squeezes one stem
        theirs = theirs[:, None]
    assert out.shape == theirs.shape
    assert _peak_error(out, theirs) <= 2e-6
    spec = model.stft_spec
    loss = SeparationLoss(
        "L1",
        "t+mrstft",
        spec.n_fft,
        spec.hop_length,
        multi_resolution=model.loss_preference.multi_resolution,
    )
    target = io["target"] if io["target"].dim() == 4 else io["target"][:, None]
    parts = loss.components(out, target)
    weight = model.config.multi_stft_resolution_loss_weight
    assert parts["t"].item() == pytest.approx(io["l1"].item(), rel=1e-5)
    assert parts["mrstft"].item() == pytest.approx(weight * io["mrstft"].item(), rel=1e-5)
    assert loss(out, target).item() == pytest.approx(io["loss"].item(), rel=1e-5)


@pytest.mark.parametrize("case", [c for c in CASES if c.startswith("mel")])
def test_mel_layout_matches_msst_buffers(case):
    io = torch.load(FIXTURES / f"{case}.io.pt", weights_only=True)
    model_section = read_msst_yaml(FIXTURES / f"{case}.yaml")["model"]
    stereo = bool(model_section.get("stereo", False))
    member = mel_band_membership(
        model_section.get("sample_rate", 44100),
        model_section.get("stft_n_fft", 2048),
        model_section["num_bands"],
    )
    assert torch.equal(member, io["freqs_per_band"])
    assert torch.equal(member.sum(1), io["num_freqs_per_band"])
    assert torch.equal(member.sum(0), io["num_bands_per_freq"])
    indices = torch.arange(member.shape[1]).expand_as(member)[member]
    if stereo:
        indices = (indices[:, None] * 2 + torch.arange(2)).flatten()
    assert torch.equal(indices, io["freq_indices"])


# --------------------------------------------------------------------------------------------
# Parameter counts of MSST's published configs
# --------------------------------------------------------------------------------------------
def _preset(compose, name: str) -> dict:
    """The options of ``conf/src_mod/<name>.yaml`` (the presets users train)."""
    return compose(f"src_mod={name}")["src_mod"]


def test_parameter_counts_of_msst_configs(compose):
    bs = BSRoformer(BSRoformerConfig.from_mapping(_preset(compose, "bs-roformer")))
    assert count_parameters(bs) == 24_591_276
    with torch.device("meta"):
        mel = MelRoformer(MelRoformerConfig.from_mapping(_preset(compose, "mel-roformer")))
        viperx = dict(_preset(compose, "bs-roformer"), dim=512, depth=12, stft_hop_length=441)
        vx = BSRoformer(BSRoformerConfig.from_mapping(viperx))
    assert count_parameters(mel) == 832_598_700
    assert count_parameters(vx) == 159_758_028


def test_presets_build_and_separate_four_dimensional(compose):
    for name in ("bs-roformer-tiny", "mel-roformer-tiny"):
        preset = _preset(compose, name)
        cls = (BSRoformer, BSRoformerConfig) if "bs" in name else (MelRoformer, MelRoformerConfig)
        model = cls[0](cls[1].from_mapping(preset)).eval()
        with torch.no_grad():
            out = model(torch.randn(1, 2, 8192))
        assert out.waveforms.shape == (1, len(model.targets), 2, 8192)
        assert model.segment_samples == preset["segment"]
        assert model.audio_channels == 2


# --------------------------------------------------------------------------------------------
# Batched bands == the plain per-band computation
# --------------------------------------------------------------------------------------------
N_FFT, HOP = 256, 64
BS_BANDS = (2,) * 8 + (4,) * 8 + (8,) * 4 + (16, 16, 17)  # 129 bins
BS_UNSORTED = (4, 2, 2, 4, 8, 2, 8) + (16,) * 5 + (19,)  # equal widths not side by side


def _small(**options):
    base = dict(
        dim=16, depth=1, heads=2, dim_head=8, time_transformer_depth=1,
        freq_transformer_depth=1, stft_n_fft=N_FFT, stft_hop_length=HOP, stft_win_length=N_FFT,
        dim_freqs_in=N_FFT // 2 + 1, mlp_expansion_factor=2, attn_dropout=0.0, ff_dropout=0.0,
    )  # fmt: skip
    base.update(options)
    return base


COMBOS = [
    ("bs", _small(stereo=False, targets=["vocals"], freqs_per_bands=BS_BANDS)),
    (
        "bs",
        _small(
            stereo=True,
            targets=["a", "b", "c"],
            freqs_per_bands=BS_BANDS,
            depth=2,
            linear_transformer_depth=1,
            skip_connection=True,
            mask_estimator_depth=1,
        ),
    ),  # fmt: skip
    (
        "bs",
        _small(
            stereo=True,
            targets=["a", "b"],
            freqs_per_bands=BS_UNSORTED,
            mask_estimator_depth=3,
            zero_dc=False,
            time_transformer_depth=2,
        ),
    ),  # fmt: skip
    ("mel", _small(stereo=False, targets=["vocals"], num_bands=12, mask_estimator_depth=0)),
    (
        "mel",
        _small(
            stereo=True,
            targets=["a", "b"],
            num_bands=16,
            depth=2,
            linear_transformer_depth=1,
            skip_connection=True,
            match_input_audio_length=True,
            mask_estimator_depth=2,
        ),
    ),  # fmt: skip
    (
        "mel",
        _small(
            stereo=True,
            targets=["a", "b", "c"],
            num_bands=10,
            mask_estimator_depth=1,
            zero_dc=False,
            freq_transformer_depth=2,
        ),
    ),  # fmt: skip
]


def _perturb(model: torch.nn.Module, seed: int) -> None:
    """Norm gains and temperatures away from 1 (else a mix-up of them would go unnoticed)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("gamma", "temperature")):
                p.add_(torch.rand(p.shape, generator=gen) - 0.5)


def _pair(kind: str, options: dict, seed: int = 0):
    """(our model, the per-band baseline) with the same weights."""
    torch.manual_seed(seed)
    if kind == "bs":
        ours = BSRoformer(BSRoformerConfig.from_mapping(options))
    else:
        ours = MelRoformer(MelRoformerConfig.from_mapping(options))
    c = ours.config
    kwargs = {
        k: v
        for k, v in options.items()
        if k not in ("targets", "dim_freqs_in", "num_bands", "use_torch_checkpoint")
    }
    if kind == "mel":
        kwargs["membership"] = c.membership()
    base = PerBandRoformer(mel=kind == "mel", num_stems=c.num_stems, **kwargs)
    _perturb(base, seed)
    ours.load_state_dict(msst_to_state_dict(base.state_dict(), ours))
    return ours.eval(), base.eval()


@pytest.mark.parametrize("kind,options", COMBOS)
def test_batched_bands_match_per_band_baseline(kind, options):
    ours, base = _pair(kind, options)
    channels = 2 if options["stereo"] else 1
    mixture = torch.randn(2, channels, 3000)  # not a multiple of the hop
    with torch.no_grad():
        expected = base(mixture)
        got = ours(mixture).waveforms
    assert got.shape == expected.shape
    assert got.shape[:3] == (2, len(options["targets"]), channels)
    assert _peak_error(got, expected) <= 2e-6
    # and back: our weights under MSST's keys load into the baseline unchanged
    back = state_dict_to_msst(ours)
    assert back.keys() == base.state_dict().keys()
    for key, value in base.state_dict().items():
        assert torch.equal(back[key], value), key


def test_activation_checkpointing_gives_the_same_gradients():
    kind, options = COMBOS[1]
    grads = []
    for ckpt in (False, True):
        ours, _ = _pair(kind, dict(options, use_torch_checkpoint=ckpt))
        ours.train()
        torch.manual_seed(1)
        mixture = torch.randn(1, 2, 2000)
        ours(mixture).waveforms.square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in ours.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name, g in grads[0].items():
        assert torch.allclose(g, grads[1][name], rtol=1e-5, atol=1e-7), name


# --------------------------------------------------------------------------------------------
# The MSST reader
# --------------------------------------------------------------------------------------------
def test_msst_config_reads_stems_segment_and_type():
    arch, config = msst_model_config(read_msst_yaml(FIXTURES / "bs-stereo-1stem.yaml"))
    assert arch == "bs_roformer" and isinstance(config, BSRoformerConfig)
    assert config.targets == ("vocals",) and config.num_stems == 1
    assert config.segment == 131584 and config.sample_rate == 44100
    assert len(config.freqs_per_bands) == 62  # a !!python/tuple
    arch, config = msst_model_config(read_msst_yaml(FIXTURES / "mel-stereo-4stems.yaml"))
    assert arch == "mel_band_roformer" and config.targets == ("vocals", "bass", "drums", "other")


def _write_yaml(tmp_path: Path, case: str, **model_changes) -> Path:
    data = read_msst_yaml(FIXTURES / f"{case}.yaml")
    data["model"].update(model_changes)
    if "num_stems" in model_changes:
        data["training"]["instruments"] = [f"s{i}" for i in range(model_changes["num_stems"])]
        data["training"]["target_instrument"] = None
    path = tmp_path / f"{case}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    "case,changes,option",
    [
        ("mel-stereo-4stems", {"num_stems": 3}, "num_stems"),
        ("mel-stereo-4stems", {"num_stems": 5}, "num_stems"),
        ("bs-stereo-1stem", {"mask_estimator_depth": 1}, "mask_estimator_depth"),
        ("mel-stereo-4stems", {"mask_estimator_depth": 1}, "mask_estimator_depth"),
        ("mel-stereo-4stems", {"num_bands": 48}, "num_bands"),
        (
            "bs-stereo-1stem",
            {"freqs_per_bands": [2] * 24 + [4] * 12 + [12] * 8 + [24] * 8 + [48] * 8 + [257]},
            "freqs_per_bands",
        ),  # fmt: skip
        ("bs-stereo-1stem", {"depth": 2}, "depth"),
        ("bs-stereo-1stem", {"linear_transformer_depth": 1}, "linear_transformer_depth"),
        ("bs-stereo-1stem", {"dim": 48}, "dim"),
        ("bs-stereo-1stem", {"heads": 4}, "heads"),
    ],
)
def test_reader_names_the_disagreeing_option(tmp_path, case, changes, option):
    with pytest.raises(CheckpointError, match=rf"src_mod\.[a-z_ /]*{option}") as err:
        load_msst_model(_write_yaml(tmp_path, case, **changes), FIXTURES / f"{case}.ckpt")
    assert len(str(err.value)) < 600  # a few keys, not hundreds


def test_reader_names_the_architecture(tmp_path):
    for case, drop, add, name, model_type in [
        ("mel-stereo-4stems", "num_bands", {}, "Mel-RoFormer", "bs_roformer"),
        ("bs-stereo-1stem", "freqs_per_bands", {"num_bands": 62}, "BS-RoFormer", None),
    ]:
        data = read_msst_yaml(FIXTURES / f"{case}.yaml")
        model = dict(data["model"], **add)
        model.pop(drop)
        path = tmp_path / f"{case}-other-arch.yaml"
        path.write_text(yaml.safe_dump(dict(data, model=model)))
        with pytest.raises(CheckpointError, match=rf"{name}.*src_mod\.arch"):
            load_msst_model(path, FIXTURES / f"{case}.ckpt", model_type=model_type)


@pytest.mark.parametrize("wrapper", [None, "state_dict", "model_state_dict", "state"])
@pytest.mark.parametrize("half", [False, True])
def test_wrapped_and_fp16_state_dicts_load(tmp_path, wrapper, half):
    case = "bs-stereo-1stem"
    state = torch.load(FIXTURES / f"{case}.ckpt", weights_only=True)
    if half:
        state = {k: v.half() for k, v in state.items()}
    data = state if wrapper is None else {wrapper: state, "epoch": 3}
    path = tmp_path / "model.ckpt"
    torch.save(data, path)
    loaded = read_msst_state_dict(path)
    assert all(v.dtype == torch.float32 for v in loaded.values())
    model = load_msst_model(FIXTURES / f"{case}.yaml", path)
    io = torch.load(FIXTURES / f"{case}.io.pt", weights_only=True)
    with torch.no_grad():
        out = model(io["mixture"]).waveforms
    assert _peak_error(out, io["output"]) <= (5e-3 if half else 2e-6)


def test_reader_errors_on_missing_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_msst_yaml(tmp_path / "none.yaml")
    with pytest.raises(CheckpointError, match="does not exist"):
        read_msst_state_dict(tmp_path / "none.ckpt")


def test_sage_attention_is_rejected():
    data = {"model": {"dim": 8, "depth": 1, "use_sage_attention": True},
            "training": {"instruments": ["vocals"]}}  # fmt: skip
    with pytest.raises(ConfigError, match="sage"):
        msst_model_config(data)
    data["model"]["use_sage_attention"] = False
    assert msst_model_config(data)[0] == "bs_roformer"


# --------------------------------------------------------------------------------------------
# Config errors name the key
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls,options,match",
    [
        (BSRoformerConfig, {"dim": 8, "depth": 1, "bogus": 1}, r"src_mod\.bogus"),
        (BSRoformerConfig, {"depth": 1}, r"src_mod\.dim"),
        (BSRoformerConfig, {"dim": 8, "depth": 1, "num_stems": 2}, r"num_stems=2.*targets"),
        (
            BSRoformerConfig,
            {"dim": 8, "depth": 1, "freqs_per_bands": [512, 512]},
            r"src_mod\.freqs_per_bands",
        ),  # fmt: skip
        (BSRoformerConfig, {"dim": 8, "depth": 1, "use_pope": True}, r"src_mod\.use_pope"),
        (
            BSRoformerConfig,
            {"dim": 8, "depth": 1, "stft_window_fn": "hamming"},
            r"src_mod\.stft_window_fn='hamming'",
        ),  # fmt: skip
        (BSRoformerConfig, {"dim": 8, "depth": 1, "dim_freqs_in": 1024}, r"src_mod\.dim_freqs_in"),
        (BSRoformerConfig, {"dim": 8, "depth": 1, "dim_head": 7}, r"src_mod\.dim_head=7"),
        (BSRoformerConfig, {"dim": 8, "depth": "two"}, r"src_mod\.depth='two'"),
        (MelRoformerConfig, {"dim": 8, "depth": 1, "num_bands": 400}, r"src_mod\.num_bands=400"),
        (
            MelRoformerConfig,
            {"dim": 8, "depth": 1, "freqs_per_bands": [2]},
            r"src_mod\.freqs_per_bands",
        ),  # fmt: skip
    ],
)
def test_config_errors_name_the_key(cls, options, match):
    with pytest.raises(ConfigError, match=match):
        cls.from_mapping(options)


def test_num_stems_follows_targets():
    config = MelRoformerConfig.from_mapping({"dim": 8, "depth": 1, "targets": ["a", "b"]})
    assert config.num_stems == 2
    assert config.to_dict()["num_stems"] == 2
    assert MelRoformerConfig.from_mapping(config.to_dict()) == config


def test_mse_with_multi_resolution_loss_is_an_error():
    with pytest.raises(ConfigError, match="loss_type"):
        SeparationLoss("MSE", "t+mrstft")


def test_reader_takes_prefixed_keys_without_rotary_freqs_and_infers_mel(tmp_path):
    case = "mel-stereo-4stems"
    state = torch.load(FIXTURES / f"{case}.ckpt", weights_only=True)
    state = {f"module.{k}": v for k, v in state.items() if not k.endswith("rotary_embed.freqs")}
    torch.save(state, tmp_path / "model.ckpt")
    data = read_msst_yaml(FIXTURES / f"{case}.yaml")
    data["model"].pop("num_bands")  # MSST's default, 60: the checkpoint tells Mel from BS
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(data))
    model = load_msst_model(tmp_path / "model.yaml", tmp_path / "model.ckpt")
    assert isinstance(model, MelRoformer)
    io = torch.load(FIXTURES / f"{case}.io.pt", weights_only=True)
    with torch.no_grad():
        assert _peak_error(model(io["mixture"]).waveforms, io["output"]) <= 2e-6


def test_roformer_config_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        RoformerConfig(dim=8, depth=1)


@pytest.mark.parametrize("grad", [False, True])
def test_rotary_product_is_laid_out_for_attention(grad):
    """One code path with and without autograd: the rotated q/k come out as contiguous
    ``[N, h, L, d]`` (what SDPA reads fastest) and equal the real-arithmetic rotation."""
    n, length, h, d = 3, 5, 2, 8
    rotary = RotaryEmbedding(d)
    x = torch.randn(n, length, h * d, requires_grad=grad)
    rotated = RotaryEmbedding.rotate(x.unflatten(-1, (h, d)), rotary.rotation(length, h, "cpu"))
    assert rotated.shape == (n, h, length, d) and rotated.is_contiguous()
    angles = torch.arange(length).float()[:, None] * rotary.freqs
    cos_sin = torch.stack([angles.cos(), angles.sin()], -1)
    expected = RotaryEmbedding._rotate_real(x.unflatten(-1, (h, d)), cos_sin)
    torch.testing.assert_close(rotated, expected)
