"""The extension point, tested as a newcomer would use it: a toy architecture
(``tests/toy_arch/toy_mask.py``) with its preset (``tests/toy_arch/conf/src_mod/toy-mask.yaml``)
and one ``bsrnn.models.register`` call runs through train.py, the Separator, evaluate.py and
inference.py, touching no other file."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from conftest import run_config  # noqa: E402

import evaluate as evaluate_script  # noqa: E402
import inference as inference_script  # noqa: E402
import train as train_script  # noqa: E402
from bsrnn.checkpoints import load_model  # noqa: E402
from bsrnn.cli import register_schemas  # noqa: E402
from bsrnn.errors import ConfigError  # noqa: E402
from bsrnn.model_folder import load_separator  # noqa: E402
from bsrnn.models import register, registered, unregister  # noqa: E402
from tests.toy_arch.toy_mask import ToyMask, ToyMaskConfig  # noqa: E402

TOY_CONF = REPO / "tests" / "toy_arch" / "conf"


@pytest.fixture
def toy_architecture():
    """The one registration (``register("toy_mask", ...)``, the public way), and the schemas
    of the registered architectures for Hydra (as every entry script registers them)."""
    register("toy_mask", ToyMaskConfig, ToyMask)
    register_schemas()
    yield
    unregister("toy_mask")


def test_register_names_a_clash_and_unregister_frees_the_name():
    register("toy_mask", ToyMaskConfig, ToyMask)
    try:
        assert registered()["toy_mask"].model is ToyMask
        with pytest.raises(ConfigError, match="'toy_mask' is registered already"):
            register("toy_mask", ToyMaskConfig, ToyMask)
        with pytest.raises(ConfigError, match="registered already as 'toy_mask'"):
            register("toy_mask_2", ToyMaskConfig, ToyMask)
        with pytest.raises(ConfigError, match="registered already as 'scnet'"):
            from bsrnn.models.scnet import SCNet, SCNetConfig

            register("my_scnet", SCNetConfig, SCNet)
        with pytest.raises(ConfigError, match="not a SeparationModel"):
            register("toy_other", ToyMaskConfig, dict)
    finally:
        unregister("toy_mask")
    assert "toy_mask" not in registered()
    with pytest.raises(ConfigError, match="no architecture 'toy_mask'"):
        unregister("toy_mask")


def compose_cfg(overrides: list[str]):
    return run_config([f"hydra.searchpath=[file://{TOY_CONF}]", *overrides])


@pytest.mark.slow
def test_a_toy_architecture_trains_separates_evaluates_and_infers(
    toy_architecture, toy_data, tmp_path
):
    data = toy_data
    common = [
        "dset=toy", f"dset.data_dir={data}", "dset.num_workers=0", f"out_dir={tmp_path / 'out'}",
        "src_mod=toy-mask", "targets=[vocals,bass]", "eval.progress=false",
    ]  # fmt: skip
    result = train_script.train(compose_cfg(common + [
        f"tb_dir={tmp_path / 'tb'}", "optim.max_epochs=1", "dset.validation_tracks=1",
        "dset.samples_per_track=2", "dset.seq_duration=1.0", "dset.eval_seq_duration=1.5",
        "trainer.accelerator=cpu", "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
    ]))  # fmt: skip
    folder = tmp_path / "out" / "toy-mask"
    assert result["best_path"] == folder / "separator.ckpt" and result["best_path"].is_file()
    assert result["epochs"] == 1 and np.isfinite(result["metrics"]["val/loss"])
    model = load_model(result["best_path"])
    assert isinstance(model, ToyMask) and model.targets == ["vocals", "bass"]

    # the Separator from the model folder alone: the checkpoint describes itself
    separator = load_separator(folder)
    assert separator.targets == ["vocals", "bass"]
    mixture = torch.randn(1, 2, 30000)
    stems = separator(mixture)[0]  # [S, C, T]
    with torch.no_grad():
        direct = model(mixture).waveforms[0]
    assert stems.shape == (2, 2, 30000)
    torch.testing.assert_close(stems[1], direct[1], atol=2e-5, rtol=0)

    # evaluate.py, from the preset and from model_dir
    table = evaluate_script.run(compose_cfg(common)).table()
    assert "vocals" in table and "bass" in table
    by_dir = evaluate_script.run(compose_cfg(common + [f"model_dir={folder}"]))
    assert by_dir.aggregate == pytest.approx(evaluate_script.run(compose_cfg(common)).aggregate)

    # inference.py with model_dir: stems at the file's rate, channels and length
    song = tmp_path / "song.wav"
    sf.write(song, 0.1 * np.random.default_rng(0).standard_normal((22050, 1)), 22050)
    written = inference_script.run(compose_cfg(common + [
        f"model_dir={folder}", f"+file_path={song}", f"+rec_dir={tmp_path / 'stems'}",
    ]))  # fmt: skip
    for path in written.values():
        audio, rate = sf.read(path, always_2d=True)
        assert (rate, audio.shape) == (22050, (22050, 1))


def test_an_entry_point_registers_its_architecture_lazily(monkeypatch, caplog):
    """A package outside the project names a callable in the ``bsrnn.architectures`` entry
    point group; the registry calls it the first time it is consulted (a broken one is logged
    and skipped)."""
    import importlib.metadata

    from bsrnn.models import registry

    class EntryPoint:
        def __init__(self, name, fn):
            self.name, self.fn = name, fn

        def load(self):
            return self.fn

    def broken():
        raise ImportError("no module named toy_plugin")

    points = [
        EntryPoint("toy", lambda: register("toy_mask", ToyMaskConfig, ToyMask)),
        EntryPoint("broken", broken),
    ]
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda group: points if group == registry.ENTRY_POINT_GROUP else [],
    )
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    try:
        assert registered()["toy_mask"].config is ToyMaskConfig
        assert "broken could not be loaded: no module named toy_plugin" in caplog.text
    finally:
        unregister("toy_mask")
