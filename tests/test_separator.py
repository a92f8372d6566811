"""Separator: our checkpoints, the reference's published ones, missing checkpoints."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from bsrnn import BSRNN
from bsrnn.checkpoints import CheckpointError, save_model
from bsrnn.separator import Separator, checkpoint_path

TINY = dict(feature_dim=8, num_repeat=1)


def tiny(target: str) -> BSRNN:
    return BSRNN(target=target, **TINY).eval()


def test_from_dir_with_our_checkpoints(tmp_path):
    torch.manual_seed(0)
    models = {t: tiny(t) for t in ("vocals", "bass")}
    for target, model in models.items():
        save_model(model, checkpoint_path(tmp_path, target))
    sep = Separator.from_dir(tmp_path, ["bass", "vocals"], segment_len=10.0)
    assert sep.targets == ["bass", "vocals"] and sep.sample_rate == 44100
    mixture = np.random.default_rng(0).standard_normal((2, 22050)).astype(np.float32) * 0.1
    out = sep.separate(mixture)
    assert list(out) == ["bass", "vocals"]
    with torch.no_grad():
        for target, model in models.items():
            want = model(torch.from_numpy(mixture)[None]).waveforms[0, 0].numpy()
            assert isinstance(out[target], np.ndarray) and out[target].shape == (2, 22050)
            np.testing.assert_allclose(out[target], want, atol=1e-6)
    # batched tensor input: dict of [B, C, T]; stacked [B, S, C, T]
    batch = torch.from_numpy(np.stack([mixture, -mixture]))
    out_b = sep.separate(batch)
    assert out_b["vocals"].shape == (2, 2, 22050)
    torch.testing.assert_close(out_b["vocals"][0], torch.from_numpy(out["vocals"]))
    assert sep.separate_stacked(batch).shape == (2, 2, 2, 22050)


@pytest.mark.parametrize("name", ["vocals-lstm-lstm", "bass-gru-conv"])
def test_from_dir_with_reference_checkpoints(tmp_path, fixtures_dir, name):
    target = name.split("-")[0]
    shutil.copy(fixtures_dir / f"{name}.ckpt", checkpoint_path(tmp_path, target))
    io = torch.load(fixtures_dir / f"{name}.io.pt", weights_only=True)
    # 0.5 s segments: the 44223-sample fixture is separated in chunks ...
    chunked = Separator.from_dir(tmp_path, [target], segment_len=0.5, overlap=0.1)
    assert chunked.separate_stacked(io["mixture"]).shape == (1, 1, 2, 44223)
    # ... and in one pass when it fits a segment, giving the reference's output
    sep = Separator.from_dir(tmp_path, [target])
    out = sep.separate(io["mixture"][0])[target]
    torch.testing.assert_close(out, io["waveforms"][0, 0], atol=1e-5, rtol=1e-4)


def test_missing_checkpoint_is_an_error_naming_the_path(tmp_path, caplog):
    save_model(tiny("vocals"), checkpoint_path(tmp_path, "vocals"))
    with pytest.raises(CheckpointError, match=str(tmp_path / "drums.ckpt")):
        Separator.from_dir(tmp_path, ["vocals", "drums"])
    with caplog.at_level(logging.WARNING, logger="bsrnn.separator"):
        sep = Separator.from_dir(
            tmp_path, ["vocals", "drums"], allow_random=True, model_config={"name": "x", **TINY}
        )
    assert sep.targets == ["vocals", "drums"]
    assert isinstance(sep.models["drums"], BSRNN) and sep.models["drums"].target == "drums"
    assert any("RANDOM" in r.message and "drums.ckpt" in r.message for r in caplog.records)


def test_checkpoint_of_another_target_is_refused(tmp_path):
    save_model(tiny("bass"), checkpoint_path(tmp_path, "vocals"))
    with pytest.raises(CheckpointError, match="'bass', not 'vocals'"):
        Separator.from_dir(tmp_path, ["vocals"])


def test_separator_without_lightning():
    code = (
        "import sys, bsrnn.separator, bsrnn.chunking, bsrnn.metrics, bsrnn.evaluation; "
        "assert not any(m.split('.')[0] in ('lightning', 'pytorch_lightning') for m in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
