"""Separation without PyTorch: an exported model folder (``bsrnn-export``) run with ONNX Runtime.

    python -m bsrnn.onnx_runtime -m exported/simo-bsrnn song.mp3 other.wav -o stems/
    bsrnn-separate --backend onnxruntime -m exported/simo-bsrnn song.mp3   # the same code

Imports numpy, soundfile, soxr and onnxruntime (and this package's torch-free modules:
:mod:`bsrnn.audio`, :mod:`bsrnn.chunk_plan`, :mod:`bsrnn.errors`, :mod:`bsrnn.files`), never
torch. It repeats our PyTorch path step for step: the file's audio resampled to the model's
rate (soxr), cut into the chunks of :mod:`bsrnn.chunk_plan` (the model's preferred segment,
else 10 s; 10 % overlap; the reference's linear fader) and summed back with their weights;
per chunk and network, the channels adapted as :class:`bsrnn.separator.Separator` does, the
framing quirk applied, the STFT in numpy (:func:`stft`, equal to ``torch.stft`` to float
rounding), the network's core through ONNX Runtime, the iSTFT in numpy (:func:`istft`); the
stems resampled back to the file's rate and length. Stems: ``OUT_DIR/<track>/<stem>.wav``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bsrnn.audio import AudioError, fit_length, read_audio, resample, write_audio
from bsrnn.chunk_plan import ChunkSettings, _plan, chunk_weights, normalises
from bsrnn.errors import BsrnnError, CheckpointError, ConfigError

PROG = "python -m bsrnn.onnx_runtime"
log = logging.getLogger("bsrnn.onnx_runtime")

#: The ``format`` of ``model.json`` this runtime reads (written by ``bsrnn.export``).
MANIFEST_FORMAT = "bsrnn-onnx/1"


# --------------------------------------------------------------------------------------------
# STFT / iSTFT in numpy (torch.stft / torch.istft with a StftSpec's settings)
# --------------------------------------------------------------------------------------------
def stft_window(stft: dict[str, Any]) -> np.ndarray:
    """The window ``[n_fft]``: periodic Hann (or ones for ``"rect"``) of ``win_length``,
    zero-padded to ``n_fft`` on both sides (as torch does)."""
    n_fft, win = int(stft["n_fft"]), int(stft["win_length"] or stft["n_fft"])
    if stft["window"] == "rect":
        w = np.ones(win)
    elif stft["window"] == "hann":
        w = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win) / win)
    else:
        raise ConfigError(f"unknown STFT window {stft['window']!r} in model.json")
    left = (n_fft - win) // 2
    return np.pad(w, (left, n_fft - win - left))


def stft(x: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """``x [..., samples]`` -> complex ``[..., n_fft // 2 + 1, frames]``, as ``torch.stft(x,
    n_fft, hop_length, win_length, window, center, pad_mode="reflect", normalized,
    onesided=True)``."""
    n_fft, hop = int(spec["n_fft"]), int(spec["hop_length"])
    x = np.asarray(x, dtype=np.float64)
    if spec["center"]:
        pad = [(0, 0)] * (x.ndim - 1) + [(n_fft // 2, n_fft // 2)]
        x = np.pad(x, pad, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft, axis=-1)[..., ::hop, :]
    out = np.fft.rfft(frames * stft_window(spec), axis=-1)  # [..., frames, F]
    if spec["normalized"]:
        out = out / np.sqrt(n_fft)
    return np.swapaxes(out, -1, -2)


def istft(spec_values: np.ndarray, spec: dict[str, Any], length: int | None = None) -> np.ndarray:
    """Complex ``[..., F, frames]`` -> ``[..., samples]`` float32, as ``torch.istft`` with the
    same settings (``length`` None: ``(frames - 1) * hop`` samples when centred)."""
    n_fft, hop = int(spec["n_fft"]), int(spec["hop_length"])
    window = stft_window(spec)
    values = np.swapaxes(np.asarray(spec_values), -1, -2)  # [..., frames, F]
    if spec["normalized"]:
        values = values * np.sqrt(n_fft)
    frames = np.fft.irfft(values, n=n_fft, axis=-1) * window  # [..., frames, n_fft]
    n_frames = frames.shape[-2]
    blocks = -(-n_fft // hop)  # each frame spans this many hops
    lead = frames.shape[:-2]
    frames = np.pad(frames, [(0, 0)] * len(lead) + [(0, 0), (0, blocks * hop - n_fft)])
    frames = frames.reshape(*lead, n_frames, blocks, hop)
    out = np.zeros((*lead, n_frames + blocks - 1, hop))
    env = np.zeros((n_frames + blocks - 1, hop))
    win_sq = np.pad(window**2, (0, blocks * hop - n_fft)).reshape(blocks, hop)
    for j in range(blocks):  # overlap-add: block j of frame f lands at hop f + j
        out[..., j : j + n_frames, :] += frames[..., :, j, :]
        env[j : j + n_frames] += win_sq[j]
    out = out.reshape(*lead, -1)
    env = env.reshape(-1)
    total = n_fft + hop * (n_frames - 1)
    start = n_fft // 2 if spec["center"] else 0
    end = (
        start + length if length is not None else (total - n_fft // 2 if spec["center"] else total)
    )
    out, env = out[..., start : min(end, total)], env[start : min(end, total)]
    if np.any(np.abs(env) < 1e-11):
        raise ConfigError("the STFT's window overlap-add is zero somewhere: cannot invert it")
    out = out / env
    if end > total:
        out = np.pad(out, [(0, 0)] * len(lead) + [(0, end - total)])
    return out.astype(np.float32)


def framing_padding(framing: dict[str, Any], n_samples: int, hop: int) -> int:
    """Zeros added at the right of the input (``Framing.padding``)."""
    if not framing.get("pad_to_even_frames"):
        return 0
    pad = hop - n_samples % hop
    if ((n_samples + pad) // hop) % 2 == 0:
        pad += hop
    return pad


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------
class OnnxNetwork:
    """One exported network: ``model.json``'s record of it and its ONNX Runtime session.
    :meth:`__call__` is the waveform forward: ``[B, C, t] -> [B, S, C, t']``."""

    def __init__(self, folder: Path, record: dict[str, Any], threads: int | None) -> None:
        import onnxruntime

        self.record = record
        self.targets: list[str] = list(record["targets"])
        self.audio_channels: int | None = record["audio_channels"]
        self.stft: dict[str, Any] = record["stft"]
        self.framing: dict[str, Any] = record["framing"]
        self.min_samples = int(record["min_samples"])
        path = folder / record["file"]
        if not path.is_file():
            raise CheckpointError(f"{path} (named in {folder / 'model.json'}) not found")
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        self.input_name = record["input"]["name"]
        self.output_name = record["output"]["name"]

    def __call__(self, mixture: np.ndarray) -> np.ndarray:
        n_samples = mixture.shape[-1]
        hop = int(self.stft["hop_length"])
        pad = framing_padding(self.framing, n_samples, hop)
        if pad:
            mixture = np.pad(mixture, [(0, 0), (0, 0), (0, pad)])
        spec = stft(mixture, self.stft)  # [B, C, F, frames] complex
        real = np.stack([spec.real, spec.imag], -1).astype(np.float32)
        stems = self.session.run([self.output_name], {self.input_name: real})[0]
        est = stems[..., 0].astype(np.float64) + 1j * stems[..., 1]  # [B, S, C, F, frames]
        length = n_samples + pad if self.framing.get("output_length") == "input" else None
        wave = istft(est, self.stft, length)
        return wave[..., :n_samples] if pad else wave

    def run(self, x: np.ndarray) -> np.ndarray:
        """``x [B, C, t]`` -> ``[B, s, C, t]``, the channels adapted to the network (as
        ``Separator._run_model``) and a short output zero-filled to ``t``."""
        batch, channels, t = x.shape
        want = self.audio_channels

        def run(inputs: np.ndarray) -> np.ndarray:
            return fit_length(self(inputs), t)

        if want is None or want == channels:
            return run(x)
        if want == 1:  # each channel as its own item
            y = run(x.reshape(batch * channels, 1, t))
            return y.reshape(batch, channels, -1, t).transpose(0, 2, 1, 3)
        if channels == 1:  # a mono file for a multichannel network: duplicated, averaged
            return run(np.repeat(x, want, axis=1)).mean(axis=2, keepdims=True)
        raise ConfigError(
            f"a network for {want}-channel audio cannot separate {channels}-channel audio"
        )


class OnnxSeparator:
    """Separate with an exported folder: ``targets`` (default: every stem, in ``model.json``'s
    order), chunks of ``segment`` seconds (default: the model's preferred segment, else 10 s)
    with ``overlap`` (0.1), ONNX Runtime on ``threads`` threads (None: its default)."""

    def __init__(
        self,
        folder: str | os.PathLike,
        targets: Sequence[str] | None = None,
        segment: float | None = None,
        overlap: float | None = None,
        threads: int | None = None,
    ) -> None:
        folder = Path(folder)
        manifest_path = folder / "model.json"
        if not manifest_path.is_file():
            raise CheckpointError(
                f"{manifest_path} not found: expected a folder written by bsrnn-export"
            )
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise CheckpointError(f"cannot read {manifest_path}: {err}") from None
        if manifest.get("format") != MANIFEST_FORMAT:
            raise CheckpointError(
                f"{manifest_path} has format {manifest.get('format')!r}: expected "
                f"{MANIFEST_FORMAT!r}"
            )
        self.folder = folder
        self.sample_rate = int(manifest["sample_rate"])
        available = list(manifest["targets"])
        self.targets = list(targets) if targets else available
        missing = [t for t in self.targets if t not in available]
        if missing:
            raise ConfigError(
                f"{folder} has no network for {', '.join(missing)}: it gives {', '.join(available)}"
            )
        by_file = {n["file"]: n for n in manifest["networks"]}
        files = list(dict.fromkeys(manifest["stems"][t] for t in self.targets))
        self.networks = [OnnxNetwork(folder, by_file[f], threads) for f in files]
        # (network index, stem index) of every requested target
        self._picks = [
            (files.index(manifest["stems"][t]), by_file[manifest["stems"][t]]["targets"].index(t))
            for t in self.targets
        ]
        seg = manifest.get("segment_samples")
        self.preferred_segment = None if seg is None else seg / self.sample_rate
        chunk_args: dict[str, Any] = {}
        if segment is not None or self.preferred_segment is not None:
            chunk_args["segment_len"] = segment if segment is not None else self.preferred_segment
        if overlap is not None:
            chunk_args["overlap"] = overlap
        self.chunking = ChunkSettings(**chunk_args)
        self.min_samples = max(n.min_samples for n in self.networks)

    def separate_chunk(self, x: np.ndarray) -> np.ndarray:
        """``x [B, C, t]`` (model rate) -> ``[B, S, C, t]`` float32, ``self.targets`` order."""
        outs = [net.run(x) for net in self.networks]
        return np.stack([outs[i][:, j] for i, j in self._picks], axis=1).astype(np.float32)

    def separate_track(self, mixture: np.ndarray) -> np.ndarray:
        """A whole track ``[C, n]`` (model rate) -> ``[S, C, n]`` float32, chunk by chunk as
        :func:`bsrnn.chunking.separate_in_chunks` does."""
        x = np.asarray(mixture, dtype=np.float32)[None]  # [1, C, n]
        n = x.shape[-1]
        if 0 < n < self.min_samples:
            padded = np.pad(x[0], [(0, 0), (0, self.min_samples - n)])
            return self.separate_track(padded)[..., :n]
        chunks = _plan(n, self.sample_rate, self.chunking)
        if not chunks:
            return self.separate_chunk(x)[0]
        weights = chunk_weights(chunks, self.chunking)
        out: np.ndarray | None = None
        wsum = np.zeros(n, dtype=np.float32)
        for chunk, weight in zip(chunks, weights):
            a, b = chunk.start, chunk.stop
            piece = np.zeros((1, x.shape[1], b - a), dtype=np.float32)
            lo, hi = max(a, 0), min(b, n)
            piece[..., lo - a : hi - a] = x[..., lo:hi]
            y = self.separate_chunk(piece)  # [1, S, C, b - a]
            if out is None:
                out = np.zeros((y.shape[1], x.shape[1], n), dtype=np.float32)
            w = weight[lo - a : hi - a]
            out[..., lo:hi] += y[0, ..., lo - a : hi - a] * w
            wsum[lo:hi] += w
        assert out is not None
        if normalises(self.chunking):
            out /= np.maximum(wsum, np.finfo(np.float32).tiny)
        return out

    def separate_audio(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """A file's audio ``[C, n]`` at any rate -> stems ``[S, C, n]`` at that rate."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 2:
            raise ConfigError(f"expected audio [channels, samples], got shape {audio.shape}")
        n = audio.shape[-1]
        y = self.separate_track(resample(audio, sample_rate, self.sample_rate))
        if self.sample_rate != sample_rate:
            y = np.stack([resample(est, self.sample_rate, sample_rate) for est in y])
        return fit_length(y, n)


def separate_file(
    separator: OnnxSeparator,
    file_path: str | os.PathLike,
    rec_dir: str | os.PathLike,
    ext: str = "wav",
    subtype: str = "FLOAT",
) -> dict[str, Path]:
    """Separate an audio file into ``rec_dir/<stem>.<ext>`` (written to a temporary folder,
    moved in when all are done); integer PCM is clipped at full scale with a warning."""
    path, rec_dir = Path(file_path), Path(rec_dir)
    if rec_dir.exists() and not rec_dir.is_dir():
        raise ConfigError(f"{rec_dir} is an existing file: expected a folder for the stems")
    audio, sr = read_audio(path)
    if audio.shape[-1] == 0:
        raise AudioError(f"{path} holds no audio (0 frames)")
    if audio.shape[0] not in (1, 2):
        raise AudioError(f"{path} has {audio.shape[0]} channels: expected mono or stereo audio")
    stems = separator.separate_audio(audio, sr)
    rec_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{rec_dir.name}.", dir=rec_dir.parent))
    written = {}
    try:
        for target, est in zip(separator.targets, stems):
            if subtype.startswith("PCM") and np.abs(est).max() > 1.0:
                log.warning("%s %s: samples beyond full scale clipped", path.name, target)
                est = np.clip(est, -1.0, 1.0)
            write_audio(tmp_dir / f"{target}.{ext}", est, sr, subtype=subtype)
        rec_dir.mkdir(parents=True, exist_ok=True)
        for target in separator.targets:
            dest = rec_dir / f"{target}.{ext}"
            os.replace(tmp_dir / f"{target}.{ext}", dest)
            written[target] = dest
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return written


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Separate songs with a folder written by bsrnn-export (ONNX Runtime, no "
        "PyTorch).",
    )
    p.add_argument("inputs", nargs="+", type=Path, help="audio files")
    p.add_argument("-m", "--model", required=True, type=Path, help="the exported folder")
    p.add_argument("-o", "--out", type=Path, default=Path("separated"), help="stems folder")
    p.add_argument("--stems", help="comma-separated stems (default: every stem)")
    p.add_argument("--segment", type=float, help="chunk seconds (default: the model's)")
    p.add_argument("--overlap", type=float, help="chunk overlap fraction (default 0.1)")
    p.add_argument("-j", "--threads", type=int, help="ONNX Runtime threads")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status 0 when every file was separated, 1 otherwise."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        stems = [s.strip() for s in args.stems.split(",") if s.strip()] if args.stems else None
        separator = OnnxSeparator(args.model, stems, args.segment, args.overlap, args.threads)
    except BsrnnError as err:
        sys.stderr.write(f"{PROG}: error: {' '.join(str(err).split())}\n")
        return 1
    failed = 0
    for path in args.inputs:
        start = time.perf_counter()
        try:
            separate_file(separator, path, args.out / path.stem)
        except BsrnnError as err:
            failed += 1
            sys.stderr.write(f"{PROG}: failed: {' '.join(str(err).split())}\n")
            continue
        sys.stdout.write(
            f"separated {path} -> {args.out / path.stem}/ ({time.perf_counter() - start:.1f} s)\n"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
