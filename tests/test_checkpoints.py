"""Checkpoints: both versions of the reference's files reproduce their outputs and losses; ours
round-trip and name their format; bad files give clear errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from bsrnn.checkpoints import (
    CheckpointError,
    checkpoint_format,
    load_model,
    read_checkpoint,
    save_model,
)
from bsrnn.losses import SeparationLoss
from bsrnn.models import build_model, count_parameters
from bsrnn.models.bsrnn_checkpoints import reference_config

DATA = Path(__file__).parent / "data"
TOLERANCE = 2e-6  # of the peak; the measured error is 3-8e-7 (float32 rounding)

SEED_VERSION = {  # name -> (targets, time layer, band layer, trainable parameters)
    "vocals-lstm-lstm": (["vocals"], "lstm", "lstm", 226_320),
    "bass-gru-conv": (["bass"], "gru", "conv", 204_552),
}
NEWEST_VERSION = {  # REFERENCE-NEWEST.md §13: name -> (targets, stereo, attention heads, params)
    "vocals-opt": (["vocals"], "tac", 2, 243_312),
    "bass-opt-notac": (["bass"], None, 2, 222_326),
    "other-naive": (["other"], "naive", 0, 382_120),
    "simo-opt": (["vocals", "bass", "drums", "other"], "tac", 2, 908_780),
}


def _max_rel_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).abs().max() / ref.abs().max())


def _check_outputs(model, io_path: Path) -> None:
    io = torch.load(io_path, weights_only=True)
    assert not model.training
    with torch.no_grad():
        out = model(io["mixture"])
    assert out.waveforms.shape == io["waveforms"].shape
    assert out.stfts.shape == io["stfts"].shape
    assert _max_rel_error(out.waveforms, io["waveforms"]) <= TOLERANCE
    assert _max_rel_error(out.stfts, io["stfts"]) <= TOLERANCE


@pytest.mark.parametrize("name", sorted(SEED_VERSION))
def test_seed_version_checkpoints_reproduce_stored_outputs(fixtures_dir, name):
    targets, time_layer, band_layer, params = SEED_VERSION[name]
    model = load_model(fixtures_dir / f"{name}.ckpt")
    config = model.config
    assert (list(config.targets), config.time_layer, config.band_layer) == (
        targets, time_layer, band_layer,
    )  # fmt: skip
    assert (config.feature_dim, config.num_repeat) == (8, 2)
    assert count_parameters(model) == params
    _check_outputs(model, fixtures_dir / f"{name}.io.pt")


@pytest.mark.parametrize("name", sorted(NEWEST_VERSION))
def test_newest_version_checkpoints_reproduce_outputs_and_losses(newest_fixtures_dir, name):
    targets, stereo, att_heads, params = NEWEST_VERSION[name]
    model = load_model(newest_fixtures_dir / f"{name}.ckpt")
    assert model.targets == targets
    assert (model.config.stereo, model.config.n_att_head) == (stereo, att_heads)
    assert count_parameters(model) == params
    _check_outputs(model, newest_fixtures_dir / f"{name}.io.pt")

    batch = torch.load(newest_fixtures_dir / f"{name}.loss.pt", weights_only=True)
    loss = SeparationLoss("L1", "t+tf")
    with torch.no_grad():
        out = model(batch["mixture"])
        terms = loss.components(out.waveforms, batch["targets"], out.stfts)
        total = loss(out.waveforms, batch["targets"], out.stfts)
    for ours, theirs in ((terms["t"], "loss_t"), (terms["tf"], "loss_tf"), (total, "loss")):
        assert abs(float(ours) - float(batch[theirs])) <= 1e-5 * abs(float(batch[theirs]))


def test_reference_files_load_without_unsafe_unpickling(fixtures_dir, newest_fixtures_dir):
    for path in (fixtures_dir / "vocals-lstm-lstm.ckpt", newest_fixtures_dir / "simo-opt.ckpt"):
        with pytest.raises(pickle.UnpicklingError):  # plain weights_only refuses OmegaConf
            torch.load(path, weights_only=True)
        ckpt = read_checkpoint(path)
        assert "state_dict" in ckpt and checkpoint_format(ckpt) == "reference"


def test_legacy_checkpoint_of_our_first_version_still_loads():
    """A file written by this project's first version (format bsrnn/1, one target)."""
    model = load_model(DATA / "legacy-bsrnn1-drums.ckpt")
    assert model.targets == ["drums"] and model.config.n_att_head == 1
    assert model.config.attn_enc_dim == 2  # its own value, not today's default
    _check_outputs(model, DATA / "legacy-bsrnn1-drums.io.pt")


def test_own_checkpoint_round_trip_names_format_and_architecture(tmp_path):
    model = build_model(dict(targets=["vocals", "bass"], feature_dim=8, num_repeat=1, stereo="tac",
                             act_tac="prelu", n_att_head=2, attn_enc_dim=4))  # fmt: skip
    path = save_model(model, tmp_path / "sub" / "separator.ckpt")
    ckpt = torch.load(path, weights_only=True)  # plain tensors and containers only
    assert (ckpt["format"], ckpt["arch"]) == ("bsrnn/2", "bsrnn")
    assert ckpt["config"]["targets"] == ["vocals", "bass"]
    loaded = load_model(path)
    assert loaded.config == model.config
    x = torch.randn(1, 2, 6000)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).waveforms, model.eval()(x).waveforms)


def test_lightning_checkpoint_of_ours_with_net_prefix(tmp_path):
    model = build_model(dict(target="bass", feature_dim=8, num_repeat=1))
    state = {f"net.{k}": v for k, v in model.state_dict().items()}
    record = {"format": "bsrnn/2", "arch": "bsrnn", "config": model.config.to_dict()}
    torch.save({"state_dict": state, "model": record, "epoch": 3}, tmp_path / "b.ckpt")
    loaded = load_model(tmp_path / "b.ckpt")
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_reference_conversion_refuses_unknown_keys(fixtures_dir, newest_fixtures_dir, tmp_path):
    ckpt = torch.load(newest_fixtures_dir / "bass-opt-notac.ckpt", weights_only=False)
    ckpt["state_dict"]["separator.0.extra_layer.weight"] = torch.zeros(2)
    torch.save(ckpt, tmp_path / "extra.ckpt")
    with pytest.raises(CheckpointError, match=r"no place.*separator\.0\.extra_layer\.weight"):
        load_model(tmp_path / "extra.ckpt")
    hparams = dict(ckpt["hyper_parameters"], fancy_option=3)
    with pytest.raises(CheckpointError, match="unknown hyper-parameter.*fancy_option"):
        reference_config(hparams, "x.ckpt")
    hparams = {k: v for k, v in ckpt["hyper_parameters"].items() if k != "feature_dim"}
    with pytest.raises(CheckpointError, match="lack 'feature_dim'"):
        reference_config(hparams, "x.ckpt")
    del ckpt["state_dict"]["separator.0.extra_layer.weight"]
    del ckpt["state_dict"]["maskers.0.mask.3.5.bias"]
    torch.save(ckpt, tmp_path / "missing.ckpt")
    with pytest.raises(CheckpointError, match=r"no 'maskers\.0\.mask\.3\.5\.bias'"):
        load_model(tmp_path / "missing.ckpt")


class Evil:
    def __reduce__(self):
        return (print, ("this ran",))


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found: .*missing.ckpt"):
        load_model(tmp_path / "missing.ckpt")
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="text.ckpt is not a readable PyTorch checkpoint"):
        load_model(tmp_path / "text.ckpt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="other.ckpt: not a model checkpoint"):
        load_model(tmp_path / "other.ckpt")
    torch.save({"payload": Evil()}, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="evil.ckpt holds objects that are not allowed"):
        load_model(tmp_path / "evil.ckpt")
    model = build_model(dict(target="vocals", feature_dim=8, num_repeat=1))
    record = {
        "format": "bsrnn/2",
        "arch": "bsrnn",
        "config": {"target": "vocals", "feature_dim": 16},
    }
    torch.save({"state_dict": model.state_dict(), **record}, tmp_path / "shape.ckpt")
    with pytest.raises(CheckpointError, match="do not fit the network"):
        load_model(tmp_path / "shape.ckpt")
    record["config"] = {"target": "vocals", "stereo": "surround"}
    torch.save({"state_dict": model.state_dict(), **record}, tmp_path / "config.ckpt")
    with pytest.raises(CheckpointError, match=r"cannot rebuild.*stereo='surround'"):
        load_model(tmp_path / "config.ckpt")
