"""SCNet (MSST's ``scnet`` and ``scnet_masked``): number for number MSST's stored outputs, its
parameter counts, its masked loss on the stored batch, its options' checks, and its checkpoints
through import_msst.py and the project's commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from conftest import run_config, small_run  # noqa: E402

import evaluate as evaluate_script  # noqa: E402
import import_msst  # noqa: E402
import inference as inference_script  # noqa: E402
import train as train_script  # noqa: E402
from bsrnn.checkpoints import load_model  # noqa: E402
from bsrnn.errors import CheckpointError, ConfigError  # noqa: E402
from bsrnn.losses import MaskedMSELoss  # noqa: E402
from bsrnn.models import build_model, count_parameters  # noqa: E402
from bsrnn.models.scnet import (  # noqa: E402
    SCNet,
    SCNetConfig,
    SCNetMasked,
    SCNetMaskedConfig,
)
from bsrnn.models.scnet_msst import load_msst_model  # noqa: E402

MSST = REPO.parent / "shared" / "fixtures" / "msst-scnet"
CASES = {"scnet-stereo-4stems": SCNet, "scnet-masked-stereo-4stems": SCNetMasked}


@pytest.fixture(scope="module")
def msst_dir() -> Path:
    if not MSST.is_dir():
        pytest.fail(f"MSST fixtures not found at {MSST} (shared/ sits beside the repo)")
    return MSST


def _io(msst_dir: Path, case: str) -> dict:
    return torch.load(msst_dir / f"{case}.io.pt", weights_only=True)


# --------------------------------------------------------------------------------------------
# Exactness
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(CASES))
def test_msst_checkpoint_reproduces_msst_output_and_loss(case, msst_dir):
    model = load_msst_model(msst_dir / f"{case}.yaml", msst_dir / f"{case}.ckpt")
    assert (
        type(model) is CASES[case]
        and model.config.msst_model_type == _io(msst_dir, case)["model_type"]
    )
    io = _io(msst_dir, case)
    with torch.no_grad():
        out = model(io["mixture"]).waveforms
    ref = io["output"]
    assert out.shape == ref.shape
    assert (out - ref).abs().max() <= 2e-6 * ref.abs().max()
    training = yaml.safe_load((msst_dir / f"{case}.yaml").read_text())["training"]
    masked = MaskedMSELoss(q=training["q"], coarse=training["coarse_loss_clip"])
    loss = masked(out, io["target"])
    assert loss.item() == pytest.approx(io["masked_loss"].item(), rel=1e-5)
    assert F.mse_loss(out, io["target"]).item() == pytest.approx(io["mse"].item(), rel=1e-5)


def test_masked_mse_of_a_batch_of_one_is_not_zero():
    """MSST issue #30: with one item MSST's masked loss keeps nothing (always 0); ours falls
    back to the plain MSE rather than train on zeros."""
    est, ref = torch.randn(1, 2, 2, 100), torch.randn(1, 2, 2, 100)
    loss = MaskedMSELoss(q=0.95, coarse=True)(est, ref)
    assert loss.item() == pytest.approx(F.mse_loss(est, ref).item(), rel=1e-6) and loss > 0


def test_forward_is_pad_stft_core_istft_crop(msst_dir):
    case = "scnet-stereo-4stems"
    model = load_msst_model(msst_dir / f"{case}.yaml", msst_dir / f"{case}.ckpt")
    mixture = _io(msst_dir, case)["mixture"][:1, :, :30000]
    assert model.framing.pad_to_even_frames and model.framing.output_length == "input"
    pad = model.framing.padding(30000, 1024)
    assert (30000 + pad) % 1024 == 0 and ((30000 + pad) // 1024 + 1) % 2 == 0 and pad >= 1
    c = model.config
    window = torch.ones(c.win_size)
    kwargs = dict(n_fft=c.nfft, hop_length=c.hop_size, win_length=c.win_size, window=window,
                  normalized=True)  # fmt: skip
    padded = F.pad(mixture, (0, pad))
    spec = torch.view_as_real(torch.stft(padded.reshape(2, -1), **kwargs, return_complex=True))
    with torch.no_grad():
        stems = model.core(spec.view(1, 2, *spec.shape[1:]))  # [1, 4, 2, F, T, 2]
        direct = model(mixture).waveforms
    assert stems.shape == (1, 4, 2, c.n_bins, spec.shape[2], 2)
    wave = torch.istft(torch.view_as_complex(stems.reshape(8, c.n_bins, -1, 2).contiguous()),
                       **kwargs, length=padded.shape[-1])  # fmt: skip
    torch.testing.assert_close(wave.view(1, 4, 2, -1)[..., :30000], direct, atol=1e-6, rtol=0)
    assert model.loss_preference.type == "masked_mse" and model.loss_preference.domain == "t"


# --------------------------------------------------------------------------------------------
# Sizes and options
# --------------------------------------------------------------------------------------------
LARGE = {"dims": [4, 64, 128, 256], "band_SR": [0.225, 0.372, 0.403]}


@pytest.mark.parametrize(
    ("options", "params"),
    [
        ({}, 10_578_768),  # config_musdb18_scnet.yaml
        (LARGE, 42_181_232),  # config_musdb18_scnet_large.yaml
        ({"targets": ["vocals", "other"]}, 10_572_856),  # config_vocals_scnet.yaml
        ({**LARGE, "targets": ["vocals", "other"]}, 42_169_432),  # config_vocals_scnet_large
    ],
)
def test_parameter_counts_equal_msst(options, params):
    with torch.device("meta"):
        model = build_model({"arch": "scnet", **options})
    assert count_parameters(model) == params


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dims": [2, 8, 16]}, r"dims\[0\]=2 must be 2 \* audio_channels = 4"),
        ({"num_dplayer": 3}, "num_dplayer=3: expected an even number"),
        ({"band_SR": [0.5, 0.5]}, "band_SR=.*expected 3 values"),
        ({"band_SR": [0.6, 0.5, 0.1]}, "band_SR=.*low \\+ mid < 1"),
        ({"band_stride": [1, 4]}, "band_stride=.*expected 3 values"),
        ({"conv_depths": [3, 2, 1, 1]}, "conv_depths=.*expected 3 values"),
        ({"audio_channels": 3, "dims": [6, 8]}, "audio_channels=3: expected 1 or 2"),
        ({"conv_kernel": 4}, "conv_kernel=4: expected an odd size"),
        (
            {
                "band_SR": [0.3, 0.65, 0.05],
                "nfft": 16,
                "hop_size": 4,
                "win_size": 16,
                "segment": None,
            },
            "SD block 0 a band of 0 bin",
        ),
        ({"dims": "4, 8"}, "dims='4, 8': expected a list"),
        ({"sources": ["vocals"]}, r"unknown key\(s\) src_mod\.sources"),
    ],
)
def test_invalid_options_are_named(options, message):
    with pytest.raises(ConfigError, match=message):
        SCNetConfig.from_mapping(options)


def test_scnet_masked_is_stereo_only():
    with pytest.raises(ConfigError, match="scnet_masked is stereo only"):
        SCNetMaskedConfig.from_mapping({"audio_channels": 1, "dims": [2, 8, 16]})


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("stems", [["vocals"], ["vocals", "drums", "bass"]])
def test_mono_and_stereo_one_or_several_stems(channels, stems):
    torch.manual_seed(0)
    options = {"audio_channels": channels, "dims": [2 * channels, 8, 12], "targets": stems,
               "nfft": 1024, "hop_size": 256, "win_size": 1024, "num_dplayer": 2,
               "segment": None}  # fmt: skip
    model = build_model({"arch": "scnet", **options}).eval()
    mixture = torch.randn(2, channels, 5000)
    with torch.no_grad():
        out = model(mixture).waveforms
    assert out.shape == (2, len(stems), channels, 5000) and torch.isfinite(out).all()
    with torch.no_grad():  # items of a batch are independent
        torch.testing.assert_close(model(mixture[1:]).waveforms, out[1:], atol=1e-5, rtol=1e-4)
    if channels == 2:
        masked = build_model({"arch": "scnet_masked", **options}).eval()
        with torch.no_grad():
            assert masked(mixture).waveforms.shape == out.shape


def test_the_registry_tells_scnet_from_scnet_masked():
    assert type(build_model(SCNetMaskedConfig(dims=(4, 8), num_dplayer=0))) is SCNetMasked
    assert type(build_model(SCNetConfig(dims=(4, 8), num_dplayer=0))) is SCNet


# --------------------------------------------------------------------------------------------
# MSST's files
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(CASES))
def test_import_writes_a_self_describing_folder(case, msst_dir, tmp_path):
    path = import_msst.import_msst(msst_dir / f"{case}.yaml", msst_dir / f"{case}.ckpt", tmp_path)
    model = load_model(path)
    assert type(model) is CASES[case] and path.name == "separator.ckpt"
    assert model.targets == ["drums", "bass", "other", "vocals"]
    assert model.segment_samples == 485100
    io = _io(msst_dir, case)
    with torch.no_grad():
        out = model(io["mixture"]).waveforms
    assert (out - io["output"]).abs().max() <= 2e-6 * io["output"].abs().max()


def _edited_yaml(msst_dir: Path, case: str, tmp_path: Path, **model) -> Path:
    data = yaml.safe_load((msst_dir / f"{case}.yaml").read_text())
    data["model"].update(model)
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("edit", "option"),
    [
        ({"num_dplayer": 4}, "num_dplayer"),
        ({"dims": [4, 8, 16]}, "dims"),
        ({"dims": [4, 8, 16, 48]}, "dims"),
        ({"conv_depths": [2, 2, 1]}, "conv_depths"),
        ({"band_kernel": [5, 4, 16]}, "band_kernel"),
        ({"conv_kernel": 5}, "conv_kernel"),
        ({"expand": 2}, "expand"),
        ({"sources": ["vocals", "other"]}, "targets"),
    ],
)
def test_a_mismatch_names_the_option(edit, option, msst_dir, tmp_path):
    case = "scnet-stereo-4stems"
    yaml_path = _edited_yaml(msst_dir, case, tmp_path, **edit)
    if "sources" in edit:
        data = yaml.safe_load(yaml_path.read_text())
        data["training"]["instruments"] = ["vocals", "other"]
        yaml_path.write_text(yaml.safe_dump(data))
    with pytest.raises(CheckpointError, match=rf"check src_mod\.[a-z_/ ]*{option[:5]}"):
        import_msst.import_msst(yaml_path, msst_dir / f"{case}.ckpt", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_model_type_override_and_detection(msst_dir, tmp_path):
    plain, masked = "scnet-stereo-4stems", "scnet-masked-stereo-4stems"
    with pytest.raises(CheckpointError, match=r"scnet_masked.*check src_mod\.arch"):
        import_msst.import_msst(msst_dir / f"{masked}.yaml", msst_dir / f"{masked}.ckpt",
                                tmp_path / "a", model_type="scnet")  # fmt: skip
    with pytest.raises(CheckpointError, match=r"no mask head.*check src_mod\.arch"):
        import_msst.import_msst(msst_dir / f"{plain}.yaml", msst_dir / f"{plain}.ckpt",
                                tmp_path / "b", model_type="scnet_masked")  # fmt: skip
    with pytest.raises(ConfigError, match="sources=.*disagree"):
        import_msst.import_msst(
            _edited_yaml(msst_dir, plain, tmp_path, sources=["a", "b"]),
            msst_dir / f"{plain}.ckpt", tmp_path / "c",
        )  # fmt: skip
    # a RoFormer's YAML is not read as an SCNet's
    roformer = REPO.parent / "shared" / "fixtures" / "msst-roformer" / "bs-stereo-1stem.yaml"
    if roformer.is_file():
        with pytest.raises(CheckpointError, match="check src_mod"):
            import_msst.import_msst(roformer, msst_dir / f"{plain}.ckpt", tmp_path / "d")


# --------------------------------------------------------------------------------------------
# Through the commands
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_tiny_scnet_trains_and_evaluates(toy_data, tmp_path):
    stems = ["drums", "bass", "other", "vocals"]
    result = train_script.train(run_config(small_run(toy_data, tmp_path, "scnet-tiny")))
    model = load_model(result["best_path"])
    assert isinstance(model, SCNet) and model.targets == stems
    assert result["epochs"] == 1 and np.isfinite(result["metrics"]["val/loss"])
    table = evaluate_script.run(run_config(small_run(toy_data, tmp_path, "scnet-tiny"))).table()
    for stem in stems:
        assert stem in table


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_import_then_inference_from_the_model_folder_matches_msst(case, msst_dir, tmp_path):
    folder = tmp_path / "model"
    proc = subprocess.run(
        [sys.executable, str(REPO / "import_msst.py"), str(msst_dir / f"{case}.yaml"),
         str(msst_dir / f"{case}.ckpt"), str(folder)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    io = _io(msst_dir, case)
    song = tmp_path / "mixture.wav"
    sf.write(song, io["mixture"][0].numpy().T, 44100, subtype="FLOAT")
    written = inference_script.run(run_config([
        f"model_dir={folder}", f"+file_path={song}", f"+rec_dir={tmp_path / 'stems'}",
        "eval.progress=false",
    ]))  # fmt: skip
    expected = io["output"][0]
    stems = ["drums", "bass", "other", "vocals"]
    assert sorted(written) == sorted(stems)
    for i, stem in enumerate(stems):
        est, rate = sf.read(written[stem], always_2d=True, dtype="float32")
        ref = expected[i].numpy()
        assert rate == 44100 and est.shape == (ref.shape[-1], 2)
        assert np.abs(est.T - ref).max() <= 2e-6 * np.abs(ref).max()


@pytest.mark.slow
def test_an_imported_checkpoint_fine_tunes(msst_dir, toy_data, tmp_path):
    case = "scnet-stereo-4stems"
    path = import_msst.import_msst(
        msst_dir / f"{case}.yaml", msst_dir / f"{case}.ckpt", tmp_path / "imported"
    )
    base = small_run(toy_data, tmp_path, "scnet") + [
        "src_mod.dims=[4,8,16,32]", "src_mod.num_dplayer=2", f"ckpt_path={path}", "optim.lr=0",
    ]  # fmt: skip
    result = train_script.train(run_config(base))
    trained, imported = load_model(result["last_path"]), load_model(path)
    for key, value in imported.state_dict().items():  # lr 0: the weights stayed MSST's
        assert torch.equal(trained.state_dict()[key], value), key
