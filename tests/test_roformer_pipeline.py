"""The RoFormers through the project's commands: the tiny presets train (MSST's loss) and
evaluate on the stand-in data; MSST checkpoints import in one command, separate from their
model folder exactly as MSST's forward does, and fine-tune with train.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
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
from bsrnn.models.roformer import BSRoformer, MelRoformer  # noqa: E402

MSST = REPO.parent / "shared" / "fixtures" / "msst-roformer"


@pytest.fixture(scope="module")
def msst_dir() -> Path:
    if not MSST.is_dir():
        pytest.fail(f"MSST fixtures not found at {MSST} (shared/ sits beside the repo)")
    return MSST


@pytest.mark.slow
@pytest.mark.parametrize(
    ("preset", "cls", "stems", "options"),
    [
        ("bs-roformer-tiny", BSRoformer, ["vocals"], []),
        # issue 20's two commands: a mono network on stereo songs, and a network whose output
        # is shorter than its input (MSST's Mel-RoFormer config): training, validation and
        # evaluation all run it through bsrnn.apply (channels adapted, output zero-filled)
        ("bs-roformer-tiny", BSRoformer, ["vocals"], ["src_mod.stereo=false"]),
        (
            "mel-roformer-tiny",
            MelRoformer,
            ["drums", "bass", "other", "vocals"],
            ["src_mod.match_input_audio_length=false"],
        ),
    ],  # fmt: skip
)
def test_tiny_roformer_trains_with_msst_loss_and_evaluates(
    preset, cls, stems, options, toy_data, tmp_path
):
    overrides = small_run(toy_data, tmp_path, preset) + options
    result = train_script.train(run_config(overrides))
    model = load_model(result["best_path"])
    assert isinstance(model, cls) and model.targets == stems
    assert result["epochs"] == 1 and np.isfinite(result["metrics"]["val/loss"])
    assert np.isfinite(result["metrics"]["val/usdr"])
    if "src_mod.stereo=false" in options:
        assert model.audio_channels == 1
    if "src_mod.match_input_audio_length=false" in options:
        assert model.config.match_input_audio_length is False
    for stem in stems:
        assert f"val/usdr_{stem}" in result["metrics"]
    evaluated = evaluate_script.run(run_config(overrides))
    for stem in stems:
        assert stem in evaluated.table()
    assert all(np.isfinite(v) for row in evaluated.per_track.values() for v in row.values())


def _write_mixture(io: dict, path: Path) -> np.ndarray:
    mixture = io["mixture"][0].numpy()  # [C, T]
    sf.write(path, mixture.T, 44100, subtype="FLOAT")
    return mixture


@pytest.mark.slow
@pytest.mark.parametrize("case", ["bs-stereo-1stem", "mel-stereo-4stems"])
def test_import_then_inference_from_the_model_folder_matches_msst(case, msst_dir, tmp_path):
    folder = tmp_path / "model"
    proc = subprocess.run(
        [sys.executable, str(REPO / "import_msst.py"), str(msst_dir / f"{case}.yaml"),
         str(msst_dir / f"{case}.ckpt"), str(folder)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    config = yaml.load((msst_dir / f"{case}.yaml").read_text(), Loader=yaml.BaseLoader)
    training = config["training"]
    target = training.get("target_instrument")
    stems = [target] if target not in (None, "", "null") else training["instruments"]
    assert load_model(next(folder.glob("*.ckpt"))).targets == stems

    io = torch.load(msst_dir / f"{case}.io.pt", weights_only=True)
    song = tmp_path / "mixture.wav"
    _write_mixture(io, song)
    written = inference_script.run(run_config([
        f"model_dir={folder}", f"+file_path={song}", f"+rec_dir={tmp_path / 'stems'}",
        "eval.progress=false",
    ]))  # fmt: skip
    expected = io["output"][0]
    expected = expected[None] if expected.dim() == 2 else expected  # [n, C, T]
    assert list(written) == stems
    for i, stem in enumerate(stems):
        est, rate = sf.read(written[stem], always_2d=True, dtype="float32")
        ref = expected[i].numpy()
        n = ref.shape[-1]
        assert rate == 44100 and est.shape[0] == io["mixture"].shape[-1]
        assert np.abs(est.T[:, :n] - ref).max() <= 2e-6 * np.abs(ref).max()


def test_import_errors_name_the_option(msst_dir, tmp_path):
    with pytest.raises(CheckpointError, match=r"src_mod\.arch"):
        import_msst.import_msst(
            msst_dir / "bs-stereo-1stem.yaml", msst_dir / "mel-stereo-4stems.ckpt", tmp_path / "x"
        )
    with pytest.raises(ConfigError, match="does not exist"):
        import_msst.import_msst(tmp_path / "none.yaml", msst_dir / "bs-stereo-1stem.ckpt", tmp_path)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_an_imported_checkpoint_fine_tunes(msst_dir, toy_data, tmp_path):
    folder = tmp_path / "imported"
    path = import_msst.import_msst(
        msst_dir / "bs-stereo-1stem.yaml", msst_dir / "bs-stereo-1stem.ckpt", folder
    )
    base = small_run(toy_data, tmp_path, "bs-roformer-tiny")
    result = train_script.train(run_config(base + [f"ckpt_path={path}", "optim.lr=0"]))
    trained, imported = load_model(result["last_path"]), load_model(path)
    for key, value in imported.state_dict().items():  # lr 0: the weights stayed MSST's
        assert torch.equal(trained.state_dict()[key], value), key
    with pytest.raises(ConfigError, match=r"dim: checkpoint 32, src_mod 48.*src_mod\.dim=32"):
        train_script.train(run_config(base + [f"ckpt_path={path}", "src_mod.dim=48"]))


@pytest.mark.parametrize("stereo", [True, False])
def test_separator_completes_a_mel_roformer_output_shorter_than_its_input(stereo):
    """MSST's Mel-RoFormer without match_input_audio_length returns (frames - 1) x hop
    samples: the Separator keeps every sample of the network's output and zero-fills the rest,
    for stereo and (channel by channel) mono networks."""
    from bsrnn.models.roformer import MelRoformerConfig
    from bsrnn.separator import Separator

    torch.manual_seed(0)
    config = MelRoformerConfig.from_mapping(
        {"targets": ["vocals", "bass"], "dim": 8, "depth": 1, "num_bands": 8, "heads": 1,
         "dim_head": 8, "stereo": stereo, "stft_hop_length": 441, "mlp_expansion_factor": 1}
    )  # fmt: skip
    model = MelRoformer(config).eval()
    mixture = 0.1 * torch.randn(1, 2, 44100 + 100)
    with torch.no_grad():
        inputs = mixture if stereo else mixture.reshape(2, 1, -1)
        direct = model(inputs).waveforms
    n = direct.shape[-1]
    assert n < mixture.shape[-1]  # the network's own output is shorter
    if not stereo:
        direct = direct.reshape(1, 2, 2, n).transpose(1, 2)
    out = Separator([model])(mixture)
    assert out.shape == (1, 2, 2, mixture.shape[-1])
    torch.testing.assert_close(out[..., :n], direct, atol=1e-6, rtol=0)
    assert torch.count_nonzero(out[..., n:]) == 0


# --------------------------------------------------------------------------------------------
# One path runs the network everywhere (bsrnn.apply)
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_one_model_folder_gives_the_same_stems_through_every_command(msst_dir, tmp_path):
    """inference.py model_dir=X, evaluate.py model_dir=X (eval.rec_dir) and bsrnn-separate -m X
    separate with the imported RoFormer's own chunk_size (131584 samples, 2.98 s): a 4 s song
    in two chunks, the same stems from all three."""
    from bsrnn.chunking import ChunkSettings
    from bsrnn.data import DataSettings, read_track_audio
    from bsrnn.separate_cli import main as separate_main
    from bsrnn.separator import Separator

    folder = tmp_path / "model"
    import_msst.import_msst(
        msst_dir / "bs-stereo-1stem.yaml", msst_dir / "bs-stereo-1stem.ckpt", folder
    )
    model = load_model(next(folder.glob("*.ckpt")))
    assert model.segment_samples == 131584
    data_dir = tmp_path / "toy"
    common = [f"model_dir={folder}", "eval.progress=false", "eval.device=cpu"]
    evaluate_script.run(run_config(common + [
        "dset=toy", f"dset.data_dir={data_dir}", "dset.toy.n_train=1", "dset.toy.n_test=1",
        "dset.toy.min_duration=4.0", "dset.toy.max_duration=4.2", f"out_dir={tmp_path / 'out'}",
        f"eval.rec_dir={tmp_path / 'evaluation'}",
    ]))  # fmt: skip
    data = DataSettings(data_dir=data_dir)
    (track,) = data.tracks("test")
    mixture, _ = read_track_audio(track, list(data.sources), mixture="stems")  # evaluation's
    assert 4.0 <= mixture.shape[-1] / 44100 <= 4.2  # two chunks of 2.98 s, one of 10 s
    song = tmp_path / "song.wav"
    sf.write(song, mixture.T, 44100, subtype="FLOAT")
    written = inference_script.run(
        run_config(common + [f"+file_path={song}", f"+rec_dir={tmp_path / 'inference'}"])
    )
    code = separate_main([str(song), "-m", str(folder), "-o", str(tmp_path / "cli"),
                          "--precision", "fp32", "--device", "cpu", "--no-progress"])  # fmt: skip
    assert code == 0

    stems = {
        "inference": sf.read(written["vocals"], dtype="float32")[0].T,
        "evaluate": sf.read(tmp_path / "evaluation" / track.name / "vocals.wav", dtype="float32")[
            0
        ].T,  # fmt: skip
        "bsrnn-separate": sf.read(tmp_path / "cli" / "song" / "vocals.wav", dtype="float32")[0].T,
    }
    own = ChunkSettings(segment_len=131584 / 44100)
    want = Separator([model], chunking=own)(torch.from_numpy(mixture)[None])[0, 0].numpy()
    whole = Separator([model], chunking=ChunkSettings(segment_len=10.0))
    other = whole(torch.from_numpy(mixture)[None])[0, 0].numpy()
    assert np.abs(want - other).max() > 1e-4  # the chunk length matters for this song
    for name, stem in stems.items():
        assert stem.shape == mixture.shape, name
        np.testing.assert_allclose(stem, want, atol=1e-6, err_msg=name)
