"""ONNX export and separation without PyTorch: the numpy STFT equals torch's, the exported
networks of every family (every ``conf/src_mod/*-tiny`` preset, an oBSRNN with TAC and
attention, a short-output Mel-RoFormer, the shared MSST fixtures after import) separate a file
as our PyTorch path does, and the runtime module works with torch unimportable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from bsrnn.checkpoints import save_model  # noqa: E402
from bsrnn.chunk_plan import linspace  # noqa: E402
from bsrnn.chunking import ChunkSettings  # noqa: E402
from bsrnn.export import ExportError, export_core, export_model_dir  # noqa: E402
from bsrnn.export import main as export_main  # noqa: E402
from bsrnn.model_folder import load_separator  # noqa: E402
from bsrnn.models import ModelConfig, SeparationModel, StftSpec, build_model  # noqa: E402
from bsrnn.onnx_runtime import OnnxSeparator, istft, stft  # noqa: E402
from bsrnn.paths import checkpoint_path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MSST = REPO.parent / "shared" / "fixtures" / "msst-roformer"
#: The heavier tiny presets (tens of seconds here) run as slow tests.
SLOW_PRESETS = {"mel-roformer-tiny"}
TINY_PRESETS = [
    pytest.param(name, marks=pytest.mark.slow) if name in SLOW_PRESETS else name
    for name in sorted(p.stem for p in (REPO / "conf" / "src_mod").glob("*-tiny.yaml"))
]
#: Stems of the ONNX path may differ from PyTorch's by this much of their peak (fp32).
TOLERANCE = 1e-4
SR = 44100


@pytest.mark.parametrize(
    "spec",
    [
        StftSpec(2048, 512),
        StftSpec(2048, 441, 2048, normalized=True),
        StftSpec(1024, 300, 700, window="rect"),
        StftSpec(512, 128, 400),
    ],
    ids=["hann", "normalized-hop441", "rect-win700", "hann-win400"],
)
def test_numpy_stft_and_istft_equal_torch(spec):
    x = torch.randn(2, 3, 5000, generator=torch.Generator().manual_seed(0))
    settings = spec.to_dict()
    ours, theirs = spec.stft(x), stft(x.numpy(), settings)
    assert theirs.shape == ours.shape
    assert np.abs(ours.numpy() - theirs).max() <= 1e-6 * np.abs(theirs).max()
    for length in (5000, None):
        expected = spec.istft(ours, length=length).numpy()
        got = istft(theirs, settings, length)
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= 2e-6


def test_fader_ramps_equal_torch_linspace():
    """The chunk fader's ramps (numpy, shared by both paths) are torch's (equal here; at most
    one float32 step apart where torch's kernel rounds differently)."""
    for steps in (1, 2, 3, 7, 100, 4410, 44101, 88200):
        expected = torch.linspace(0, 1, steps).numpy()
        np.testing.assert_allclose(linspace(0, 1, steps), expected, rtol=0, atol=6e-8)


def _model_dir(model: SeparationModel, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, checkpoint_path(folder, model.targets))
    return folder


def _song(path: Path, seconds: float = 1.3, channels: int = 2, rate: int = SR) -> Path:
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)
    audio = np.stack([tone * (1 - 0.3 * c) for c in range(channels)], 1)
    sf.write(path, audio.astype(np.float32), rate, subtype="FLOAT")
    return path


def _compare(model_dir: Path, exported: Path, song: Path, segment: float | None) -> float:
    """Largest difference of the ONNX stems from the PyTorch stems, relative to their peak."""
    audio, rate = sf.read(song, dtype="float32", always_2d=True)
    audio = audio.T
    chunking = ChunkSettings(segment_len=segment) if segment else ChunkSettings()
    reference = load_separator(model_dir, chunking=chunking)  # null: the model's segment
    expected = reference.separate_audio(audio, rate)
    runtime = OnnxSeparator(exported, segment=segment, threads=1)
    assert runtime.targets == reference.targets
    assert runtime.chunking == reference.chunking
    got = runtime.separate_audio(audio, rate)
    assert got.shape == expected.shape
    return float(np.abs(got - expected).max() / np.abs(expected).max())


def _tiny(compose, name: str) -> SeparationModel:
    torch.manual_seed(0)
    return build_model(compose(f"src_mod={name}")["src_mod"]).eval()


@pytest.mark.parametrize("preset", TINY_PRESETS)
def test_every_tiny_preset_separates_through_onnx_as_with_pytorch(preset, compose, tmp_path):
    model = _tiny(compose, preset)
    model_dir = _model_dir(model, tmp_path / "model")
    manifest = export_model_dir(model_dir, tmp_path / "exported")
    record = manifest["networks"][0]
    assert manifest["targets"] == model.targets or sorted(manifest["targets"]) == sorted(
        model.targets
    )
    assert record["stft"] == model.stft_spec.to_dict()
    assert record["framing"] == model.framing.to_dict()
    assert record["export_check"]["max_error_of_peak"] <= TOLERANCE
    song = _song(tmp_path / "song.wav", rate=48000)  # resampled both ways
    # chunks of 0.5 s: several chunks and the fader on both paths
    assert _compare(model_dir, tmp_path / "exported", song, segment=0.5) <= TOLERANCE


@pytest.mark.parametrize(
    "options",
    [
        # oBSRNN: TAC (PReLU), attention, two heads, GRU band layer, mask context
        dict(arch="bsrnn", targets=["vocals", "bass"], feature_dim=16, num_repeat=1,
             stereo="tac", act_tac="prelu", n_att_head=2, n_heads=2, band_layer="gru",
             mask_ctxt=1),
        dict(arch="bsrnn", target="drums", feature_dim=16, num_repeat=1, stereo="naive",
             time_layer="conv", subtract_last_trgt=False),
        # Mel-RoFormer whose output is (frames - 1) * hop samples, a linear transformer
        dict(arch="mel_band_roformer", targets=["vocals", "other"], dim=16, depth=1,
             stereo=False, dim_head=8, heads=2, time_transformer_depth=1,
             freq_transformer_depth=1, linear_transformer_depth=1, attn_dropout=0.0,
             ff_dropout=0.0, num_bands=16, stft_hop_length=441, mlp_expansion_factor=1),
    ],
    ids=["obsrnn-tac-attention", "bsrnn-naive-conv", "mel-short-output-linear"],
)  # fmt: skip
def test_other_family_options_separate_through_onnx(options, tmp_path):
    torch.manual_seed(0)
    model = build_model(options).eval()
    model_dir = _model_dir(model, tmp_path / "model")
    export_model_dir(model_dir, tmp_path / "exported")
    song = _song(tmp_path / "song.wav", seconds=1.1, channels=2)
    assert _compare(model_dir, tmp_path / "exported", song, segment=0.6) <= TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("case", ["bs-stereo-1stem", "mel-stereo-4stems"])
def test_imported_msst_checkpoints_separate_through_onnx(case, tmp_path):
    if not MSST.is_dir():
        pytest.fail(f"MSST fixtures not found at {MSST}")
    sys.path.insert(0, str(REPO))
    import import_msst

    import_msst.import_msst(MSST / f"{case}.yaml", MSST / f"{case}.ckpt", tmp_path / "model")
    assert export_main(["-m", str(tmp_path / "model"), "-o", str(tmp_path / "exported")]) == 0
    song = _song(tmp_path / "song.wav", seconds=1.0)
    assert _compare(tmp_path / "model", tmp_path / "exported", song, segment=None) <= TOLERANCE


class _ComplexCore(SeparationModel):
    """A core that computes with a complex tensor (no ONNX type): the export must refuse it."""

    stft_spec = StftSpec(256, 64)
    audio_channels = None

    def core(self, spec: torch.Tensor) -> torch.Tensor:
        x = torch.view_as_complex(spec.contiguous())
        return torch.view_as_real(x * x)[:, None]


def test_an_unexportable_network_is_refused_in_one_line_naming_the_operator(tmp_path):
    model = _ComplexCore(ModelConfig())
    with pytest.raises(ExportError, match=r"unsupported operator aten::view_as_complex") as info:
        export_core(model, tmp_path / "x.onnx")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "x.onnx").exists()


def test_cli_export_then_both_commands_separate_without_torch(compose, tmp_path):
    """``bsrnn-export``, then ``python -m bsrnn.onnx_runtime`` in a subprocess where importing
    torch fails, then ``bsrnn-separate --backend onnxruntime``: the same stems."""
    model = _tiny(compose, "simo-bsrnn-tiny")
    model_dir = _model_dir(model, tmp_path / "model")
    exported = tmp_path / "exported"
    assert export_main(["-m", str(model_dir), "-o", str(exported)]) == 0
    manifest = json.loads((exported / "model.json").read_text())
    assert manifest["stems"] == {t: "separator.onnx" for t in manifest["targets"]}
    song = _song(tmp_path / "song.wav", seconds=0.8, channels=1)

    blocker = tmp_path / "blocker"
    (blocker / "torch").mkdir(parents=True)
    (blocker / "torch" / "__init__.py").write_text("raise ImportError('torch is blocked')\n")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(blocker), str(REPO / "src")]),
        "OMP_NUM_THREADS": "1",
    }
    code = (
        "import sys, runpy\n"
        "try:\n    import torch\nexcept ImportError:\n    pass\n"
        "else:\n    raise SystemExit('torch importable')\n"
        "sys.argv = ['x', '-m', sys.argv[1], sys.argv[2], '-o', sys.argv[3]]\n"
        "runpy.run_module('bsrnn.onnx_runtime', run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(exported), str(song), str(tmp_path / "ort")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "torch" not in done.stderr

    from bsrnn.separate import main as separate_main

    status = separate_main(
        ["--backend", "onnxruntime", "-m", str(exported), str(song), "-o", str(tmp_path / "cli")]
    )
    assert status == 0
    audio, _ = sf.read(song, dtype="float32", always_2d=True)
    reference = load_separator(model_dir).separate_audio(audio.T, SR)
    for i, target in enumerate(manifest["targets"]):
        a, rate = sf.read(tmp_path / "ort" / "song" / f"{target}.wav", dtype="float32")
        b, _ = sf.read(tmp_path / "cli" / "song" / f"{target}.wav", dtype="float32")
        assert rate == SR and a.shape == (audio.shape[0],)
        np.testing.assert_array_equal(a, b)
        assert np.abs(a - reference[i, 0]).max() <= TOLERANCE * np.abs(reference).max()


def test_import_bsrnn_does_not_import_torch():
    code = "import sys, bsrnn, bsrnn.onnx_runtime; print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_separate_refuses_options_the_onnx_backend_lacks(tmp_path, capsys):
    from bsrnn.separate import main as separate_main

    song = _song(tmp_path / "song.wav", seconds=0.2)
    status = separate_main(["--backend", "onnxruntime", "-m", str(tmp_path), str(song), "--tta"])
    assert status == 1
    assert "--tta" in capsys.readouterr().err
