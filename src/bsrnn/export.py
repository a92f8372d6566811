"""``bsrnn-export``: a model folder to ONNX files a program without PyTorch can run.

    bsrnn-export -m outputs/simo-bsrnn -o exported/simo-bsrnn
    python -m bsrnn.export -m imported/mel-roformer -o exported/mel-roformer

For every network of the folder (each checkpoint that :func:`bsrnn.checkpoints.load_model`
reads: ``<target>.ckpt`` per target, ``separator.ckpt`` for a multi-target model, training's or
``import_msst.py``'s), one ONNX file of its :meth:`~bsrnn.models.base.SeparationModel.core`:
mixture spectrogram ``spec [batch, channels, bins, frames, 2]`` (real, imaginary) in, stem
spectrograms ``stems [batch, stems, channels, bins, frames, 2]`` out, with dynamic batch and
frame axes (and channel axis for networks that take any channel count). The STFT and iSTFT stay
outside the graph (ONNX has no iSTFT); ``model.json`` says how to compute them, with everything
else a runtime needs (format ``bsrnn-onnx/1``): sample rate, the stems in order and which file
gives each, the STFT of every network (window, n_fft, hop, win_length, center, normalized),
its framing quirks, channel count and preferred segment. :mod:`bsrnn.onnx_runtime` is such a
runtime.

The graphs come from PyTorch's TorchScript-based exporter (``torch.onnx.export(...,
dynamo=False)``, opset :data:`OPSET`: it exports LSTMs/GRUs, attention and the rotary
embeddings in seconds), are checked with ``onnx.checker`` and, when ONNX Runtime is installed,
run once against PyTorch on a test spectrogram of another shape than the traced one. A network
that cannot be exported is refused in one line naming the operator.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bsrnn.errors import BsrnnError, ConfigError
from bsrnn.files import atomic_path, write_text_atomic
from bsrnn.models import SeparationModel, arch_name
from bsrnn.onnx_runtime import MANIFEST_FORMAT

PROG = "bsrnn-export"
log = logging.getLogger("bsrnn.export")

#: ONNX opset of the exported graphs.
OPSET = 17
#: Names of the graphs' input and output.
INPUT_NAME, OUTPUT_NAME = "spec", "stems"
#: Frames of the spectrogram the graph is traced with (and, different, checked with).
TRACE_FRAMES, CHECK_FRAMES = 24, 19
#: A graph's output may differ from PyTorch's by this much (relative to its peak) at export.
CHECK_TOLERANCE = 1e-4


class ExportError(BsrnnError):
    """A network that cannot be exported to ONNX (the message names the operator)."""


def _operator(err: BaseException) -> str:
    """The operator an exporter error names (e.g. ``aten::view_as_complex``), or its text."""
    text = " ".join(str(err).split())
    found = re.search(r"operator '([^']+)'", text) or re.search(
        r"(aten|prim)::[A-Za-z0-9_.]+", text
    )
    if found:
        return found.group(found.lastindex or 0) if "operator '" in found.group(0) else found[0]
    return text[:200]


def _core_inputs(model: SeparationModel, frames: int, batch: int = 1) -> torch.Tensor:
    """A random mixture spectrogram ``[batch, C, F, frames, 2]`` for ``model``'s core (one
    frame more where the model's framing asks for an even count, e.g. SCNet)."""
    if model.framing.pad_to_even_frames and frames % 2:
        frames += 1
    channels = model.audio_channels or 1
    generator = torch.Generator().manual_seed(frames)
    shape = (batch, channels, model.stft_spec.n_bins, frames, 2)
    return torch.randn(shape, generator=generator)


class _Core(torch.nn.Module):
    """``model.core`` as a module's forward (what the exporter traces)."""

    def __init__(self, model: SeparationModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.model.core(spec)


def export_core(model: SeparationModel, path: str | Path) -> Path:
    """Write ``model.core`` to ``path`` as ONNX (dynamic batch and frames; dynamic channels
    when the network takes any count), checked with ``onnx.checker``. Raises
    :class:`ExportError` naming the operator when the export fails."""
    import onnx

    path = Path(path)
    model = model.eval()
    example = _core_inputs(model, TRACE_FRAMES)
    axes = {0: "batch", 3: "frames"}
    out_axes = {0: "batch", 4: "frames"}
    if model.audio_channels is None:
        axes[1] = out_axes[2] = "channels"
    quiet = contextlib.redirect_stdout(io.StringIO())  # the exporter prints its graph on errors
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings(), quiet:
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings
        try:
            torch.onnx.export(
                _Core(model),
                (example,),
                str(tmp),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: out_axes},
                opset_version=OPSET,
                dynamo=False,
            )
        except Exception as err:  # the exporter raises many kinds; one line names the operator
            raise ExportError(
                f"cannot export {type(model).__name__} ({', '.join(model.targets)}) to ONNX: "
                f"unsupported operator {_operator(err)}"
            ) from None
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except Exception as err:
            raise ExportError(
                f"the ONNX graph of {type(model).__name__} fails onnx.checker: "
                f"{' '.join(str(err).split())[:300]}"
            ) from None
    return path


def check_against_torch(model: SeparationModel, path: str | Path) -> float | None:
    """Run the exported graph with ONNX Runtime on a spectrogram of another shape than the
    traced one and return its largest difference from ``model.core`` relative to the peak
    (None when ONNX Runtime is not installed). Raises :class:`ExportError` beyond
    :data:`CHECK_TOLERANCE`."""
    try:
        import onnxruntime
    except ImportError:
        return None
    spec = _core_inputs(model, CHECK_FRAMES, batch=2)
    with torch.no_grad():
        expected = model.core(spec).float().numpy()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {INPUT_NAME: spec.numpy()})[0]
    if got.shape != expected.shape:
        raise ExportError(
            f"{path}: the ONNX graph returns {got.shape} for an input whose PyTorch output is "
            f"{expected.shape} (a shape baked in at export)"
        )
    error = float(abs(got - expected).max() / max(abs(expected).max(), 1e-12))
    if error > CHECK_TOLERANCE:
        raise ExportError(
            f"{path}: the ONNX graph differs from PyTorch by {error:.2e} of the peak "
            f"(more than {CHECK_TOLERANCE:g})"
        )
    return error


def network_record(model: SeparationModel, onnx_file: str) -> dict[str, Any]:
    """What ``model.json`` says about one network."""
    return {
        "file": onnx_file,
        "arch": arch_name(model),
        "targets": list(model.targets),
        "audio_channels": model.audio_channels,
        "stft": model.stft_spec.to_dict(),
        "framing": model.framing.to_dict(),
        "segment_samples": model.segment_samples,
        "min_samples": int(model.min_samples),
        "input": {"name": INPUT_NAME, "shape": ["batch", "channels", "bins", "frames", 2]},
        "output": {
            "name": OUTPUT_NAME,
            "shape": ["batch", "stems", "channels", "bins", "frames", 2],
        },
        "config": model.config.to_dict(),
    }


def export_model_dir(
    model_dir: str | Path, out_dir: str | Path, check: bool = True
) -> dict[str, Any]:
    """Export every network of ``model_dir`` into ``out_dir`` (one ``<checkpoint>.onnx``
    each) and write ``out_dir/model.json``; returns the manifest. ``check``: compare each graph
    with PyTorch through ONNX Runtime (when installed)."""
    from bsrnn.checkpoints import load_model
    from bsrnn.model_folder import folder_targets, model_dir_checkpoints

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    paths = model_dir_checkpoints(model_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"-o {out_dir} is an existing file: expected a folder")
    models = [load_model(p, map_location="cpu") for p in paths]
    rates = {m.sample_rate for m in models}
    if len(rates) > 1:
        raise ConfigError(f"the networks of {model_dir} disagree on the sample rate: {rates}")
    out_dir.mkdir(parents=True, exist_ok=True)
    networks = []
    for path, model in zip(paths, models):
        onnx_file = f"{path.stem}.onnx"
        export_core(model, out_dir / onnx_file)
        record = network_record(model, onnx_file)
        if check:
            error = check_against_torch(model, out_dir / onnx_file)
            record["export_check"] = None if error is None else {"max_error_of_peak": error}
        log.info("%s (%s) -> %s", path, ", ".join(model.targets), out_dir / onnx_file)
        networks.append(record)
    targets = folder_targets(models)
    # the network giving each stem: the first that produces it (as the Separator)
    stem_source = {t: next(n["file"] for n in networks if t in n["targets"]) for t in targets}
    segments = {m.segment_samples for m in models}
    manifest = {
        "format": MANIFEST_FORMAT,
        "source": str(model_dir),
        "sample_rate": rates.pop(),
        "targets": targets,
        "stems": stem_source,
        "segment_samples": segments.pop() if len(segments) == 1 else None,
        "networks": networks,
    }
    write_text_atomic(out_dir / "model.json", json.dumps(manifest, indent=2) + "\n")
    return manifest


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Export a model folder (training's or import_msst.py's) to ONNX files and "
        "a model.json, for separation without PyTorch (python -m bsrnn.onnx_runtime).",
    )
    p.add_argument("-m", "--model", required=True, type=Path, help="the model folder")
    p.add_argument("-o", "--out", required=True, type=Path, help="the folder to write")
    p.add_argument(
        "--no-check", action="store_true", help="skip the ONNX Runtime check against PyTorch"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        manifest = export_model_dir(args.model, args.out, check=not args.no_check)
    except BsrnnError as err:
        sys.stderr.write(f"{PROG}: error: {' '.join(str(err).split())}\n")
        return 1
    except ImportError as err:
        sys.stderr.write(f"{PROG}: error: {err} (install the extra: pip install '.[onnx]')\n")
        return 1
    files = ", ".join(n["file"] for n in manifest["networks"])
    sys.stdout.write(
        f"exported {args.model} ({', '.join(manifest['targets'])}) -> {args.out}/ "
        f"({files}, model.json)\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
