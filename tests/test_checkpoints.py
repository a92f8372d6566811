"""Checkpoints: the reference's published files reproduce their outputs; ours round-trip;
bad files give clear errors."""

from __future__ import annotations

import pickle

import pytest
import torch
from per_band_baseline import PerBandBSRNN

from bsrnn import BSRNN
from bsrnn.checkpoints import CheckpointError, read_checkpoint, save_model


@pytest.mark.parametrize("name", ["vocals-lstm-lstm", "bass-gru-conv"])
def test_reference_checkpoints_reproduce_stored_outputs(fixtures_dir, name):
    model = BSRNN.from_checkpoint(fixtures_dir / f"{name}.ckpt")
    io = torch.load(fixtures_dir / f"{name}.io.pt", weights_only=True)
    assert not model.training
    with torch.no_grad():
        out = model(io["mixture"])
    assert out.waveforms.shape == io["waveforms"].shape
    assert out.stfts.shape == io["stfts"].shape
    wave_err = (out.waveforms - io["waveforms"]).abs().max() / io["waveforms"].abs().max()
    spec_err = (out.stfts - io["stfts"]).abs().max() / io["stfts"].abs().max()
    assert wave_err <= 1e-4 and spec_err <= 1e-4


@pytest.mark.parametrize("name", ["vocals-lstm-lstm", "bass-gru-conv"])
def test_reference_checkpoint_architecture_from_hyper_parameters(fixtures_dir, name):
    target, time_layer, band_layer = name.split("-")
    config = BSRNN.from_checkpoint(fixtures_dir / f"{name}.ckpt").config
    assert (config["target"], config["time_layer"], config["band_layer"]) == (
        target, time_layer, band_layer,
    )  # fmt: skip
    assert (config["feature_dim"], config["num_repeat"]) == (8, 2)


def test_per_band_baseline_loads_reference_weights_unchanged(fixtures_dir):
    ckpt = read_checkpoint(fixtures_dir / "vocals-lstm-lstm.ckpt")
    baseline = PerBandBSRNN(target="vocals", feature_dim=8, num_repeat=2).eval()
    state = {k: v for k, v in ckpt["state_dict"].items() if not k.endswith("transf.window")}
    baseline.load_state_dict(state)
    io = torch.load(fixtures_dir / "vocals-lstm-lstm.io.pt", weights_only=True)
    with torch.no_grad():
        wave = baseline(io["mixture"])["waveforms"]
    assert (wave - io["waveforms"]).abs().max() <= 1e-4 * io["waveforms"].abs().max()


def test_reference_file_loads_without_unsafe_unpickling(fixtures_dir):
    with pytest.raises(pickle.UnpicklingError):  # plain weights_only refuses the OmegaConf objects
        torch.load(fixtures_dir / "vocals-lstm-lstm.ckpt", weights_only=True)
    assert "state_dict" in read_checkpoint(fixtures_dir / "vocals-lstm-lstm.ckpt")


def test_own_checkpoint_round_trip(tmp_path):
    model = BSRNN(target="drums", feature_dim=8, num_repeat=1, n_att_head=2, attn_enc_dim=4)
    path = save_model(model, tmp_path / "sub" / "drums.ckpt")
    loaded = BSRNN.from_checkpoint(path)
    assert loaded.config == model.config
    x = torch.randn(1, 2, 6000)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).waveforms, model.eval()(x).waveforms)


def test_lightning_style_checkpoint_with_net_prefix(tmp_path):
    model = BSRNN(target="bass", feature_dim=8, num_repeat=1)
    state = {f"net.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "bsrnn_config": model.config, "epoch": 3}, tmp_path / "b.ckpt")
    loaded = BSRNN.from_checkpoint(tmp_path / "b.ckpt")
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


class Evil:
    def __reduce__(self):
        return (print, ("this ran",))


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found: .*missing.ckpt"):
        BSRNN.from_checkpoint(tmp_path / "missing.ckpt")
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="text.ckpt is not a readable PyTorch checkpoint"):
        BSRNN.from_checkpoint(tmp_path / "text.ckpt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="other.ckpt is not a BSRNN checkpoint"):
        BSRNN.from_checkpoint(tmp_path / "other.ckpt")
    torch.save({"state_dict": {"layer.weight": torch.zeros(3)}}, tmp_path / "net.ckpt")
    with pytest.raises(CheckpointError, match="no 'bsrnn_config' entry"):
        BSRNN.from_checkpoint(tmp_path / "net.ckpt")
    torch.save({"payload": Evil()}, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="evil.ckpt holds objects that are not allowed"):
        BSRNN.from_checkpoint(tmp_path / "evil.ckpt")
    model = BSRNN(feature_dim=8, num_repeat=1)
    config = dict(model.config, feature_dim=16)
    torch.save({"state_dict": model.state_dict(), "bsrnn_config": config}, tmp_path / "shape.ckpt")
    with pytest.raises(CheckpointError, match="do not fit the network"):
        BSRNN.from_checkpoint(tmp_path / "shape.ckpt")
