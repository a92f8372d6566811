"""Separator and model folders: our checkpoints (per target and multi-target), the
reference's, missing ones, one forward per chunk for all targets of a model, bf16, very short
inputs, channels, TTA, Wiener, separate_audio."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from bsrnn.checkpoints import CheckpointError, save_model
from bsrnn.chunking import ChunkSettings
from bsrnn.errors import ConfigError
from bsrnn.evaluation import EvalSettings
from bsrnn.model_folder import load_separator
from bsrnn.models import BSRNN, build_model
from bsrnn.paths import checkpoint_path
from bsrnn.separator import Separator

TINY = dict(feature_dim=8, num_repeat=1)
STEMS = ["vocals", "bass", "drums", "other"]


def tiny(*targets: str, **options) -> BSRNN:
    return build_model({**TINY, "targets": list(targets), **options}).eval()


def test_preset_folder_with_our_checkpoints(tmp_path):
    torch.manual_seed(0)
    models = {t: tiny(t) for t in ("vocals", "bass")}
    for target, model in models.items():
        save_model(model, checkpoint_path(tmp_path, [target]))
    sep = load_separator(tmp_path, ["bass", "vocals"], preset={})
    assert sep.targets == ["bass", "vocals"] and sep.sample_rate == 44100
    assert sep.checkpoints == {(t,): checkpoint_path(tmp_path, [t]) for t in ("bass", "vocals")}
    mixture = np.random.default_rng(0).standard_normal((2, 22050)).astype(np.float32) * 0.1
    out = sep.separate_audio(mixture, 44100)  # [S, C, T] numpy
    assert isinstance(out, np.ndarray) and out.shape == (2, 2, 22050)
    with torch.no_grad():
        for i, target in enumerate(["bass", "vocals"]):
            want = models[target](torch.from_numpy(mixture)[None]).waveforms[0, 0].numpy()
            np.testing.assert_allclose(out[i], want, atol=1e-6)
    batch = torch.from_numpy(np.stack([mixture, -mixture]))  # [B, C, T] -> [B, S, C, T]
    out_b = sep(batch)
    assert out_b.shape == (2, 2, 2, 22050)
    torch.testing.assert_close(out_b[0], torch.from_numpy(out))
    # the same folder through the self-describing loader: the same stems
    torch.testing.assert_close(load_separator(tmp_path, ["bass", "vocals"])(batch), out_b)


def test_multi_target_model_runs_once_per_chunk_for_all_targets(tmp_path):
    torch.manual_seed(0)
    simo = tiny(*STEMS, subtract_last_trgt=True)
    save_model(simo, tmp_path / "separator.ckpt")
    options = {"name": "s", **TINY, "target": None, "targets": STEMS}
    chunking = ChunkSettings(segment_len=0.2, overlap=0.1)
    sep = load_separator(tmp_path, ["drums", "vocals"], preset=options, chunking=chunking)
    assert sep.targets == ["drums", "vocals"] and len(sep.models) == 1
    calls = []
    sep.models[0].register_forward_hook(lambda *args: calls.append(1))
    mixture = 0.1 * torch.randn(1, 2, 30000)
    out = sep(mixture)
    n_chunks = len(calls)
    assert out.shape == (1, 2, 2, 30000) and n_chunks >= 3
    everything = Separator(simo_models := [sep.models[0]], chunking=chunking)
    calls.clear()
    full = everything(mixture)
    assert len(calls) == n_chunks and everything.targets == STEMS  # 4 stems, same passes
    torch.testing.assert_close(out[:, 0], full[:, 2])
    torch.testing.assert_close(out[:, 1], full[:, 0])
    assert simo_models[0] is sep.models[0]


@pytest.mark.parametrize("name", ["vocals-lstm-lstm", "bass-gru-conv"])
def test_preset_folder_with_reference_checkpoints(tmp_path, fixtures_dir, name):
    target = name.split("-")[0]
    shutil.copy(fixtures_dir / f"{name}.ckpt", checkpoint_path(tmp_path, [target]))
    io = torch.load(fixtures_dir / f"{name}.io.pt", weights_only=True)
    # 0.5 s segments: the 44223-sample fixture is separated in chunks ...
    chunked = load_separator(tmp_path, [target], preset={}, chunking=ChunkSettings(segment_len=0.5))
    assert chunked(io["mixture"]).shape == (1, 1, 2, 44223)
    # ... and in one pass when it fits a segment (BSRNN's 10 s), giving the reference's output
    sep = load_separator(tmp_path, [target], preset={})
    assert sep.chunking.segment_len == 10.0
    out = sep(io["mixture"])[0, 0]
    torch.testing.assert_close(out, io["waveforms"][0, 0], atol=1e-5, rtol=1e-4)


def test_missing_checkpoint_is_an_error_naming_the_path(tmp_path, caplog):
    save_model(tiny("vocals"), checkpoint_path(tmp_path, ["vocals"]))
    with pytest.raises(CheckpointError, match=str(tmp_path / "drums.ckpt")):
        load_separator(tmp_path, ["vocals", "drums"], preset={})
    with caplog.at_level(logging.WARNING, logger="bsrnn.model_folder"):
        options = {"name": "x", "target": "vocals", **TINY}
        sep = load_separator(tmp_path, ["vocals", "drums"], allow_random=True, preset=options)
    assert sep.targets == ["vocals", "drums"] and sep.models[1].targets == ["drums"]
    assert any("RANDOM" in r.message and "drums.ckpt" in r.message for r in caplog.records)
    options = {"name": "s", **TINY, "targets": STEMS}
    with pytest.raises(CheckpointError, match=str(tmp_path / "separator.ckpt")):
        load_separator(tmp_path, ["vocals"], preset=options)


def test_checkpoint_of_another_target_is_refused(tmp_path):
    save_model(tiny("bass"), checkpoint_path(tmp_path, ["vocals"]))
    with pytest.raises(CheckpointError, match=r"\['bass'\], not \['vocals'\]"):
        load_separator(tmp_path, ["vocals"], preset={})
    with pytest.raises(ConfigError, match="no model produces target.*drums"):
        Separator([tiny("vocals")], targets=["drums"])


def test_bf16_separation_is_close_to_fp32():
    torch.manual_seed(0)
    model = tiny("vocals")
    mixture = 0.1 * torch.randn(1, 2, 20000)
    fp32 = Separator([model])(mixture)
    sep = Separator([model], precision="bf16")
    bf16 = sep(mixture)
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    snr = 10 * torch.log10(fp32.square().sum() / (bf16 - fp32).square().sum())
    if sep.precision == "bf16":  # this CPU computes bf16 natively
        assert 20 < snr < 200, snr  # close, yet computed differently
    else:
        assert torch.equal(bf16, fp32)


def test_very_short_input_is_padded_with_a_warning(caplog):
    sep = Separator([tiny("vocals")])
    with caplog.at_level(logging.WARNING, logger="bsrnn.apply"):
        out = sep(0.1 * torch.randn(1, 2, 10))
    assert out.shape == (1, 1, 2, 10) and torch.isfinite(out).all()
    assert any("only 10 samples" in r.message for r in caplog.records)


def test_separator_without_lightning():
    code = (
        "import sys, bsrnn.separator, bsrnn.chunking, bsrnn.metrics, bsrnn.evaluation; "
        "assert not any(m.split('.')[0] in ('lightning', 'pytorch_lightning') for m in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------------------------
# Model folders, channels, TTA, Wiener, separate_audio
# --------------------------------------------------------------------------------------------
def test_model_folder_loads_every_self_describing_checkpoint(tmp_path):
    torch.manual_seed(0)
    simo = tiny("bass", "drums", "other", subtract_last_trgt=True)
    vocals = tiny("vocals")
    save_model(simo, tmp_path / "separator.ckpt")
    save_model(vocals, tmp_path / "vocals.ckpt")
    piano = tiny("piano", joint_bandsplit=True)
    save_model(piano, tmp_path / "vocals-last.ckpt")  # training's last: not used
    sep = load_separator(tmp_path)
    assert sep.targets == ["vocals", "bass", "drums", "other"]  # the MUSDB order
    assert set(sep.checkpoints) == {("bass", "drums", "other"), ("vocals",)}
    mixture = 0.1 * torch.randn(1, 2, 8000)
    out = sep(mixture)
    with torch.no_grad():
        torch.testing.assert_close(out[:, 0], vocals(mixture).waveforms[:, 0])
        torch.testing.assert_close(out[:, 2], simo(mixture).waveforms[:, 1])
    only = load_separator(tmp_path, ["drums"])
    assert only.targets == ["drums"] and len(only.models) == 1
    assert list(only.checkpoints) == [("bass", "drums", "other")]
    with pytest.raises(CheckpointError, match=r"no model for piano.*vocals, bass, drums, other"):
        load_separator(tmp_path, ["vocals", "piano"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        load_separator(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="model folder not found"):
        load_separator(tmp_path / "nowhere")


def test_channels_follow_each_model():
    """A mono network separates each channel of a stereo mixture on its own; a stereo
    network gets a mono mixture duplicated (and averaged back); the stems keep the input's
    channels."""
    torch.manual_seed(0)
    mono = tiny("vocals", stereo="naive", nb_channels=1)
    stereo = tiny("bass", stereo="naive", nb_channels=2)
    assert (mono.audio_channels, stereo.audio_channels) == (1, 2)
    sep = Separator([mono, stereo])
    x2 = 0.1 * torch.randn(1, 2, 6000)
    out = sep(x2)
    assert out.shape == (1, 2, 2, 6000)
    with torch.no_grad():
        for c in range(2):
            want = mono(x2[:, c : c + 1]).waveforms[:, 0, 0]
            torch.testing.assert_close(out[:, 0, c], want)
        torch.testing.assert_close(out[:, 1], stereo(x2).waveforms[:, 0])
        x1 = x2[:, :1]
        out1 = sep(x1)
        assert out1.shape == (1, 2, 1, 6000)
        want = stereo(x1.expand(1, 2, 6000)).waveforms[:, 0].mean(1, keepdim=True)
        torch.testing.assert_close(out1[:, 1], want)


def test_tta_averages_the_plain_swapped_and_inverted_passes():
    torch.manual_seed(0)
    model = tiny("vocals", "bass")
    x = 0.1 * torch.randn(1, 2, 6000)
    sep = Separator([model], tta=True)
    with torch.no_grad():
        plain = model(x).waveforms
        swapped = model(x.flip(1)).waveforms.flip(2)
        inverted = -model(-x).waveforms
        torch.testing.assert_close(sep(x), (plain + swapped + inverted) / 3, atol=1e-6, rtol=1e-5)
        mono = x[:, :1]
        want = (model(mono).waveforms - model(-mono).waveforms) / 2
        torch.testing.assert_close(sep(mono), want, atol=1e-6, rtol=1e-5)


def test_wiener_filters_every_stem_of_the_models_then_picks():
    from bsrnn.filtering import wiener_waveforms

    torch.manual_seed(0)
    model = tiny(*STEMS, subtract_last_trgt=True)
    x = 0.1 * torch.randn(1, 2, 6000)
    sep = Separator([model], targets=["drums"], wiener_iterations=1)
    spec = model.stft_spec
    with torch.no_grad():
        want = wiener_waveforms(model(x).waveforms, x, spec.n_fft, spec.hop_length,
                                spec.win_length, iterations=1)  # fmt: skip
    out = sep(x)
    assert out.shape == (1, 1, 2, 6000)
    torch.testing.assert_close(out[:, 0], want[:, 2], atol=1e-5, rtol=1e-4)
    with pytest.raises(ConfigError, match="wiener_iterations"):  # checked once, in settings
        EvalSettings(wiener_iterations=-1)


def test_separate_audio_resamples_and_fits_the_length():
    torch.manual_seed(0)
    sep = Separator([tiny("vocals", "bass")])
    audio = (0.1 * np.random.default_rng(0).standard_normal((1, 11025))).astype(np.float32)
    stems = sep.separate_audio(audio, 22050)
    assert stems.shape == (2, 1, 11025) and stems.dtype == np.float32
    same_rate = sep.separate_audio(np.repeat(audio, 2, axis=0)[:, :5000], 44100)
    with torch.no_grad():
        want = sep.models[0](torch.from_numpy(np.repeat(audio, 2, 0)[:, :5000])[None]).waveforms
    np.testing.assert_allclose(same_rate, want[0].numpy(), atol=1e-6)
