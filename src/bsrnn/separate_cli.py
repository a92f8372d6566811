"""``bsrnn-separate``: split songs into stems from the command line.

    bsrnn-separate -m outputs/simo-bsrnn song.mp3 album/            # a model folder
    bsrnn-separate -m simo-bsrnn song.flac --stems vocals,drums     # a preset: outputs/<name>/
    bsrnn-separate -m simo-bsrnn a.mp3 --format flac --bits 24 -o stems/ --tta --wiener 1
    bsrnn-separate --list-models

Inputs: files and folders (searched for audio files), any format soundfile reads, any sample
rate, mono or stereo. Stems: ``separated/<model>/<track>/<stem>.<ext>`` (``-o DIR``:
``DIR/<track>/<stem>.<ext>``) at the input's rate, channel count and length, each written
atomically. Existing stems are skipped unless ``--force``. A file that cannot be read gets one
line naming it and why; the others still go through, and the exit code is 1.

Also ``python -m bsrnn.separate``. It runs the code of ``inference.py``
(:func:`bsrnn.model_folder.load_separator`, :func:`bsrnn.stems.separate_file`); the options
are checked as evaluation's (:class:`~bsrnn.evaluation.EvalSettings`).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import soundfile as sf
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from bsrnn.errors import BsrnnError, ConfigError

PROG = "bsrnn-separate"
log = logging.getLogger("bsrnn.separate_cli")

#: File suffixes searched for in folders: soundfile's formats and their usual aliases.
AUDIO_SUFFIXES = frozenset(
    {f.lower() for f in sf.available_formats()} | {"aif", "aifc", "oga", "opus", "wave"}
) - {"raw"}


def _say(message: str, err: bool = False) -> None:
    """The command's own output (stdout; errors on stderr), kept clear of progress bars."""
    tqdm.write(message, file=sys.stderr if err else sys.stdout)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Separate songs into stems (vocals, bass, drums, other) with a trained "
        "bsrnn model.",
    )
    p.add_argument("inputs", nargs="*", type=Path, help="audio files and folders of them")
    p.add_argument(
        "-m",
        "--model",
        help="a model folder (checkpoints that describe themselves) or a preset name, "
        "resolved as <out-dir>/<name>/",
    )
    p.add_argument(
        "--out-dir",
        type=Path,
        default=Path("outputs"),
        help="where training wrote its model folders (default: outputs)",
    )
    p.add_argument(
        "-o",
        "--out",
        type=Path,
        help="stems go to OUT/<track>/<stem>.<ext> (default: separated/<model>)",
    )
    p.add_argument("--stems", help="comma-separated stems (default: every stem of the model)")
    p.add_argument("--format", choices=("wav", "flac"), default="wav", dest="fmt")
    p.add_argument(
        "--bits",
        type=int,
        choices=(16, 24, 32),
        help="16, 24 (integer PCM) or 32 (float, WAV only); default: 32 for WAV, 24 for FLAC",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda:N")
    p.add_argument(
        "--backend",
        default="pytorch",
        choices=("pytorch", "onnxruntime"),
        help="pytorch (a model folder, default) or onnxruntime (a folder written by "
        "bsrnn-export; CPU, fp32, no --tta/--wiener)",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "bf16"),
        help="auto: bf16 only where a probe shows it faster here (default)",
    )
    p.add_argument(
        "--segment",
        type=float,
        help="chunk length in seconds (default: the model's preferred chunk: BSRNN's 10 s, an "
        "imported RoFormer's chunk_size)",
    )
    p.add_argument("--overlap", type=float, help="chunk overlap, a fraction (default 0.1)")
    p.add_argument(
        "--tta",
        action="store_true",
        help="average the plain, channel-swapped and polarity-inverted passes (3x the time)",
    )
    p.add_argument(
        "--wiener",
        type=int,
        default=0,
        metavar="N",
        help="multichannel Wiener filter with N EM iterations (default 0: off)",
    )
    p.add_argument(
        "--wiener-residual", action="store_true", help="add a residual source to the Wiener filter"
    )
    p.add_argument(
        "--wiener-softmask",
        action="store_true",
        help="start the Wiener filter from ratio masks (with --wiener 0: ratio masks alone)",
    )
    p.add_argument("--force", action="store_true", help="redo files whose stems exist")
    p.add_argument(
        "--list-models",
        action="store_true",
        help="list the presets and the model folders under --out-dir",
    )
    p.add_argument("-j", "--threads", type=int, help="CPU threads (default: one per physical core)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    return p


# --------------------------------------------------------------------------------------------
# Models: presets and folders
# --------------------------------------------------------------------------------------------
def presets_dir() -> Path | None:
    """``conf/src_mod`` of this checkout (or of the current folder)."""
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        folder = root / "conf" / "src_mod"
        if folder.is_dir():
            return folder
    return None


def _preset_values(folder: Path, name: str, depth: int = 0) -> dict:
    """A preset's keys, following its ``defaults`` chain of presets in the same folder."""
    import yaml

    try:
        data = yaml.safe_load((folder / f"{name}.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    values: dict = {}
    for entry in data.pop("defaults", None) or []:
        if isinstance(entry, str) and entry != "_self_" and depth < 8:
            if (folder / f"{entry}.yaml").is_file():
                values.update(_preset_values(folder, entry, depth + 1))
    values.update(data)
    return values


def preset_targets(name: str) -> str | None:
    """What a preset's model separates, in words (None: no such preset)."""
    folder = presets_dir()
    if folder is None or not (folder / f"{name}.yaml").is_file():
        return None
    values = _preset_values(folder, name)
    targets = values.get("targets")
    if values.get("target") is None and targets:
        return ", ".join(map(str, targets))
    return f"one model per stem (src_mod.target, default {values.get('target', 'vocals')})"


def model_folders(out_dir: Path) -> dict[Path, str]:
    """The model folders under ``out_dir``, each with its stems in words."""
    from bsrnn.checkpoints import load_model
    from bsrnn.model_folder import folder_targets, model_dir_checkpoints

    found: dict[Path, str] = {}
    if not out_dir.is_dir():
        return found
    for folder in sorted(p for p in out_dir.iterdir() if p.is_dir()):
        try:
            paths = model_dir_checkpoints(folder)
        except BsrnnError:  # not a model folder
            continue
        try:
            models = [load_model(p) for p in paths]
            found[folder] = (
                f"{', '.join(folder_targets(models))}  ({', '.join(p.name for p in paths)})"
            )
        except BsrnnError as err:
            found[folder] = f"(cannot be read: {_one_line(err)})"
    return found


def list_models(out_dir: Path) -> None:
    folder = presets_dir()
    _say(
        f"presets ({folder or 'conf/src_mod not found'}; train one with "
        "`python train.py src_mod=NAME`, then use -m NAME):"
    )
    for path in sorted(folder.glob("*.yaml")) if folder else []:
        if path.stem.startswith("_"):
            continue
        trained = "  [trained]" if (out_dir / path.stem).is_dir() else ""
        _say(f"  {path.stem:<20} {preset_targets(path.stem)}{trained}")
    found = model_folders(out_dir)
    _say(f"model folders in {out_dir}/:" + ("" if found else " none"))
    for model_dir, text in found.items():
        _say(f"  {model_dir.name:<20} {text}")


def resolve_model(model: str | None, out_dir: Path) -> Path:
    """A model folder from ``-m``: an existing folder, or ``<out_dir>/<name>``."""
    if not model:
        names = [p.name for p in model_folders(out_dir)]
        raise ConfigError(
            "no model given: use -m FOLDER or -m PRESET ("
            + (
                f"model folders in {out_dir}: {', '.join(names)}"
                if names
                else f"no model folder in {out_dir}; see --list-models"
            )
            + ")"
        )
    path = Path(model)
    if path.is_dir():
        return path
    candidate = out_dir / model
    if candidate.is_dir():
        return candidate
    if preset_targets(model) is not None:
        raise ConfigError(
            f"preset {model!r} has no trained model in {candidate} (train it: python train.py "
            f"src_mod={model}; or give --out-dir)"
        )
    raise ConfigError(
        f"model {model!r} is neither a folder nor a preset with a folder in {out_dir} "
        "(see --list-models)"
    )


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------
def collect_inputs(inputs: Sequence[Path]) -> list[Path]:
    """Files as given, and the audio files in folders (recursively, sorted); hidden files are
    left out. A path that does not exist is kept: it fails with its own line."""
    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found = sorted(
                p
                for p in item.rglob("*")
                if p.is_file()
                and not p.name.startswith(".")
                and p.suffix.lower().lstrip(".") in AUDIO_SUFFIXES
            )
            if not found:
                log.warning("no audio file in %s", item)
            files.extend(found)
        else:
            files.append(item)
    return list(dict.fromkeys(files))


def track_names(files: Sequence[Path]) -> dict[Path, str]:
    """Output folder name per input: its stem; where stems collide (``a.mp3`` and ``a.wav``,
    or ``song1/mixture.wav`` and ``song2/mixture.wav``), the parent folder's name is prefixed,
    then the suffix appended, then a number."""

    def name(f: Path, level: int) -> str:
        parts = [f.parent.name, f.stem] if level >= 1 and f.parent.name else [f.stem]
        if level >= 2:
            parts.append(f.suffix.lstrip("."))
        return "-".join(p for p in parts if p)

    names: dict[Path, str] = {}
    for level in range(3):
        counts: dict[str, int] = {}
        for f in files:
            key = name(f, level)
            counts[key] = counts.get(key, 0) + 1
        for f in files:
            if f not in names and counts[name(f, level)] == 1:
                names[f] = name(f, level)
    for i, f in enumerate(files):
        names.setdefault(f, f"{name(f, 2)}-{i}")
    return {f: names[f] for f in files}


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------
def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("bsrnn.runtime").setLevel(logging.INFO)  # the precision choice


def run(args: argparse.Namespace) -> int:
    from bsrnn.stems import output_subtype

    if args.list_models:
        list_models(args.out_dir)
        return 0
    if not args.inputs:
        raise ConfigError("no input: give audio files or folders (or --list-models)")
    bits = args.bits if args.bits is not None else (32 if args.fmt == "wav" else 24)
    subtype = output_subtype(args.fmt, bits)
    model_dir = resolve_model(args.model, args.out_dir)
    stems = [s.strip() for s in args.stems.split(",") if s.strip()] if args.stems else None
    out = args.out if args.out is not None else Path("separated") / model_dir.resolve().name
    if args.backend == "onnxruntime":
        targets, separate_one, what = _onnxruntime_backend(args, model_dir, stems, subtype)
    else:
        targets, separate_one, what = _pytorch_backend(args, model_dir, stems, subtype)
    _say(
        f"model {model_dir} ({', '.join(targets)}), {what}; "
        f"stems -> {out}/<track>/<stem>.{args.fmt} ({bits}-bit{' float' if bits == 32 else ''})"
    )
    files = collect_inputs(args.inputs)
    names = track_names(files)
    done = skipped = failed = 0
    t0 = time.perf_counter()
    for path in files:
        track_dir = out / names[path]
        dests = [track_dir / f"{t}.{args.fmt}" for t in targets]
        if not args.force and all(d.is_file() for d in dests):
            skipped += 1
            _say(f"skipped {path}: its stems exist in {track_dir} (--force redoes them)")
            continue
        start = time.perf_counter()
        try:
            separate_one(path, track_dir)
        except BsrnnError as err:  # unreadable audio, a stem folder that is a file...
            failed += 1
            _say(f"{PROG}: failed: {_one_line(err)}", err=True)
            continue
        done += 1
        _say(f"separated {path} -> {track_dir}/ ({time.perf_counter() - start:.1f} s)")
    _say(
        f"{done} file(s) separated, {skipped} skipped, {failed} failed in "
        f"{time.perf_counter() - t0:.1f} s"
    )
    return 1 if failed else 0


#: ``(targets, separate_one(path, track_dir), description)`` of a backend.
Backend = tuple[list[str], Callable[[Path, Path], Any], str]


def _pytorch_backend(
    args: argparse.Namespace, model_dir: Path, stems: list[str] | None, subtype: str
) -> Backend:
    """The Separator over a model folder (trained or imported)."""
    from bsrnn.chunking import ChunkSettings
    from bsrnn.evaluation import EvalSettings
    from bsrnn.model_folder import load_separator
    from bsrnn.runtime import set_num_threads
    from bsrnn.stems import separate_file

    settings = EvalSettings(
        device=args.device,
        precision=args.precision,
        tta=args.tta,
        wiener_iterations=args.wiener,
        wiener_residual=args.wiener_residual,
        wiener_softmask=args.wiener_softmask,
    )
    chunk_args = {}
    if args.segment is not None:
        chunk_args["segment_len"] = args.segment
    if args.overlap is not None:
        chunk_args["overlap"] = args.overlap
    chunking = ChunkSettings(**chunk_args)  # segment null: the model's preferred one
    threads = set_num_threads(args.threads)
    separator = load_separator(model_dir, stems, chunking=chunking, **settings.separator_options())
    separator.resolve_precision()
    extras = [x for x, on in (("TTA", args.tta), (f"Wiener x{args.wiener}", args.wiener)) if on]

    def separate_one(path: Path, track_dir: Path) -> Any:
        progress = False if args.no_progress else path.name
        return separate_file(
            separator, path, track_dir, progress=progress, ext=args.fmt, subtype=subtype
        )

    what = f"{separator.device}, {separator.precision}, {threads} thread(s)"
    return separator.targets, separate_one, what + "".join(", " + x for x in extras)


def _onnxruntime_backend(
    args: argparse.Namespace, model_dir: Path, stems: list[str] | None, subtype: str
) -> Backend:
    """``--backend onnxruntime``: a folder written by ``bsrnn-export``, separated by
    :mod:`bsrnn.onnx_runtime` (CPU, fp32, the networks alone)."""
    from bsrnn.onnx_runtime import OnnxSeparator, separate_file

    unsupported = [
        name
        for name, on in (
            ("--tta", args.tta),
            ("--wiener", args.wiener or args.wiener_softmask or args.wiener_residual),
            ("--precision bf16", args.precision == "bf16"),
            (f"--device {args.device}", args.device not in ("auto", "cpu")),
        )
        if on
    ]
    if unsupported:
        raise ConfigError(
            f"--backend onnxruntime runs the exported networks alone (CPU, fp32): drop "
            f"{', '.join(unsupported)}"
        )
    separator = OnnxSeparator(model_dir, stems, args.segment, args.overlap, args.threads)

    def separate_one(path: Path, track_dir: Path) -> Any:
        return separate_file(separator, path, track_dir, ext=args.fmt, subtype=subtype)

    return separator.targets, separate_one, "ONNX Runtime, fp32"


def main(argv: Sequence[str] | None = None) -> int:
    """The console entry point: the exit status (0: every file done or skipped; 1: a file
    failed or a domain error; 2: bad arguments)."""
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        with logging_redirect_tqdm():
            return run(args)
    except BsrnnError as err:
        _say(f"{PROG}: error: {_one_line(err)}", err=True)
        return 1
    except KeyboardInterrupt:
        _say(f"{PROG}: interrupted", err=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
