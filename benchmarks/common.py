"""What every benchmark shares: the machine line, timing, the real configs, results on disk.

Every script in benchmarks/ imports this module first (``import common``: the scripts' own
folder is on ``sys.path`` when Python runs them). Importing it puts the repository's ``src/``
and the repository itself on ``sys.path`` once, so that ``bsrnn`` and the test oracles
(``tests.reference``) import from this checkout.

- :func:`machine_line` / :func:`machine_info`: CPU model and the flags that matter for speed
  (avx2, avx512f, avx512_bf16, amx), cores, threads, torch version, GPU name when CUDA, date.
- :func:`sync`, :func:`timed`, :func:`best_of`, :func:`interleaved`: wall and process CPU time,
  warm-up, repeats, CUDA synchronisation.
- :func:`compose`, :func:`run_settings`, :func:`preset_options`, :func:`preset_model`,
  :func:`preset_loss`: configurations composed from conf/ with Hydra's compose API, as
  train.py composes them (never a copy of a preset).
- :func:`write_results`: a Markdown report and its data as JSON, written atomically.
- :func:`run_child`, :func:`reset_peak_rss`, :func:`peak_rss_mib`: one measurement per fresh
  process, and its memory high-water mark.
"""

from __future__ import annotations

import datetime
import gc
import inspect
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "src"):  # tests.reference from the repository, bsrnn from src/
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from bsrnn import runtime  # noqa: E402

SR = 44100
STEMS = ("vocals", "bass", "drums", "other")
#: The CPU flags a speed figure depends on (shown in the machine line when present).
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8")


# --------------------------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------------------------
def machine_info(device: torch.device | str = "cpu", threads: int | None = None) -> dict:
    """The facts a speed figure needs beside it, as a JSON-able dict."""
    device = torch.device(device)
    flags = runtime.cpu_flags()
    bf16, reason = runtime.bf16_native(device)
    info: dict[str, Any] = {
        "cpu": runtime.cpu_model(),
        "cpu_flags": [f for f in SPEED_FLAGS if f in flags],
        "physical_cores": runtime.physical_cores(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": threads if threads is not None else torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "bf16_native": bf16,
        "bf16_reason": reason,
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
    }
    if os.name == "posix":
        info["load_average"] = [round(x, 1) for x in os.getloadavg()]
    if device.type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def machine_line(device: torch.device | str = "cpu", threads: int | None = None) -> str:
    """One line to quote with every figure: CPU, flags, cores, threads, torch, GPU, date."""
    m = machine_info(device, threads)
    flags = ", ".join(m["cpu_flags"]) or "no AVX2/AVX-512/AMX"
    gpu = f"; GPU {m['gpu']} (CUDA {m['cuda']})" if "gpu" in m else ""
    load = f"; load {m['load_average'][0]}" if "load_average" in m else ""
    return (
        f"machine: {m['cpu']} ({flags}; {m['physical_cores']} physical cores, "
        f"{m['logical_cpus']} logical), {m['torch_threads']} torch thread(s), native bf16 on "
        f"{m['device']}: {'yes' if m['bf16_native'] else 'no'} ({m['bf16_reason']}){gpu}; "
        f"torch {m['torch']}, Python {m['python']}; {m['date']}{load}"
    )


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------
def sync(device: torch.device | str) -> None:
    """Wait for the device's queued work (CUDA), so that a clock read after it counts it."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Times:
    """Wall-clock and process CPU seconds of repeated calls."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def of(self, clock: str) -> list[float]:
        """The times by ``clock``: ``"wall"`` or ``"cpu"``."""
        return self.wall if clock == "wall" else self.cpu

    def median(self, clock: str = "wall") -> float:
        return statistics.median(self.of(clock))

    def best(self, clock: str = "wall") -> float:
        return min(self.of(clock))

    def to_dict(self) -> dict[str, list[float]]:
        return {"wall_s": self.wall, "cpu_s": self.cpu}


def timed(fn: Callable[[], Any], device: torch.device | str = "cpu") -> tuple[float, float, Any]:
    """``(wall s, process CPU s, result)`` of one call of ``fn``, the device synchronised."""
    sync(device)
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    sync(device)
    return time.perf_counter() - w0, time.process_time() - c0, out


def best_of(
    fn: Callable[[], Any], repeats: int, warmup: int = 1, device: torch.device | str = "cpu"
) -> Times:
    """``warmup`` untimed calls, then ``repeats`` timed ones."""
    for _ in range(warmup):
        fn()
    times = Times()
    for _ in range(repeats):
        gc.collect()
        wall, cpu, _ = timed(fn, device)
        times.wall.append(wall)
        times.cpu.append(cpu)
    return times


def interleaved(
    fns: Mapping[str, Callable[[], Any]],
    repeats: int,
    warmup: int = 1,
    device: torch.device | str = "cpu",
) -> dict[str, Times]:
    """Times of each function, called in turn (``warmup`` rounds untimed) so that they share
    the machine's noise."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: Times() for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            gc.collect()
            wall, cpu, _ = timed(fn, device)
            times[name].wall.append(wall)
            times[name].cpu.append(cpu)
    return times


def default_clock(device: torch.device | str) -> str:
    """Process CPU time on the CPU (other jobs on a shared machine disturb it less), wall
    time on a GPU (the CPU mostly waits there)."""
    return "wall" if torch.device(device).type == "cuda" else "cpu"


# --------------------------------------------------------------------------------------------
# Memory (Linux)
# --------------------------------------------------------------------------------------------
def status_kib(key: str) -> int:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``); 0 where unreadable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak_rss() -> bool:
    """Reset the process's RSS high-water mark (Linux ``clear_refs``); False where it can't."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib(exact: bool) -> float:
    """The RSS high-water mark since :func:`reset_peak_rss` (``exact``), else since the
    process started."""
    if exact and status_kib("VmHWM"):
        return status_kib("VmHWM") / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------------------------
# Configurations from conf/
# --------------------------------------------------------------------------------------------
def compose(overrides: Sequence[str] = ()):
    """The config train.py would get for ``overrides`` (of the real conf/), unresolved."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from bsrnn.cli import register_schemas

    register_schemas()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        return hydra_compose("config", overrides=list(overrides))


def run_settings(overrides: Sequence[str] = ()):
    """The checked :class:`~bsrnn.settings.RunSettings` of ``overrides``, as train.py builds
    them."""
    from bsrnn.cli import settings_from_config

    return settings_from_config(compose(overrides))


def preset_exists(name: str) -> bool:
    return (REPO / "conf" / "src_mod" / f"{name}.yaml").is_file()


def experiment_exists(name: str) -> bool:
    return (REPO / "conf" / "experiment" / f"{name}.yaml").is_file()


def preset_options(name: str, overrides: Sequence[str] = ()) -> dict:
    """The plain options of preset ``conf/src_mod/<name>.yaml`` (``overrides`` such as
    ``src_mod.feature_dim=16`` applied)."""
    return dict(run_settings([f"src_mod={name}", *overrides]).preset)


def preset_model(name: str, overrides: Sequence[str] = (), seed: int | None = 0):
    """The network of preset ``name`` with random weights (``torch.manual_seed(seed)`` first
    unless ``seed`` is None)."""
    from bsrnn.models import build_model

    if seed is not None:
        torch.manual_seed(seed)
    return build_model(run_settings([f"src_mod={name}", *overrides]).model)


def preset_loss(net, overrides: Sequence[str] = ()):
    """The training loss of ``net`` as train.py builds it (optim settings of the config, the
    model's declared loss preference)."""
    from bsrnn.losses import build_loss

    return build_loss(run_settings(overrides).optim, net.loss_preference, net.stft_spec)


# --------------------------------------------------------------------------------------------
# The per-band oracles (tests/reference/) with our networks' weights
# --------------------------------------------------------------------------------------------
def _oracle_kwargs(cls: type, options: dict[str, Any]) -> dict[str, Any]:
    """The options the oracle's constructor takes (the rest are not network options)."""
    accepted = inspect.signature(cls).parameters
    return {k: v for k, v in options.items() if k in accepted}


def bsrnn_pair(ours: nn.Module) -> nn.Module:
    """The per-band BSRNN oracle holding ``ours``' weights (its random ones, mapped back)."""
    from bsrnn.models.bsrnn_checkpoints import convert_reference_state_dict
    from tests.reference.per_band_baseline import PerBandBSRNN

    oracle = PerBandBSRNN(**_oracle_kwargs(PerBandBSRNN, ours.config.to_dict()))
    ours.load_state_dict(convert_reference_state_dict(oracle.state_dict(), ours))
    return oracle


def roformer_pair(ours: nn.Module) -> nn.Module:
    """The per-band RoFormer oracle (MSST's computation), its norm gains moved away from 1 so
    that a mix-up would show, its weights loaded into ``ours``."""
    from bsrnn.models.roformer_msst import msst_to_state_dict
    from tests.reference.roformer_per_band_baseline import PerBandRoformer

    config = ours.config
    mel = hasattr(config, "membership")
    kwargs = _oracle_kwargs(PerBandRoformer, config.to_dict())
    if mel:
        kwargs["membership"] = config.membership()
    oracle = PerBandRoformer(mel=mel, **kwargs)
    with torch.no_grad():
        for name, p in oracle.named_parameters():
            if name.endswith("gamma"):
                p.add_(torch.rand(p.shape) - 0.5)
    ours.load_state_dict(msst_to_state_dict(oracle.state_dict(), ours))
    return oracle


#: The oracle of each architecture (``RunSettings.arch``).
ORACLES: dict[str, Callable[[nn.Module], nn.Module]] = {
    "bsrnn": bsrnn_pair,
    "bs_roformer": roformer_pair,
    "mel_band_roformer": roformer_pair,
}


def oracle_pair(
    preset: str, overrides: Sequence[str] = (), seed: int = 0
) -> tuple[nn.Module, nn.Module] | str:
    """``(ours, oracle)`` of ``preset`` (``overrides`` applied) with the same random weights,
    or why there is none."""
    arch = run_settings([f"src_mod={preset}", *overrides]).arch
    if arch not in ORACLES:
        return f"no per-band oracle for architecture {arch!r} in tests/reference/"
    ours = preset_model(preset, overrides, seed=seed)
    torch.manual_seed(seed)
    return ours, ORACLES[arch](ours)


def outputs(out: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(waveforms, STFTs or None) of either network's output."""
    if isinstance(out, torch.Tensor):
        return out, None
    if isinstance(out, dict):
        return out["waveforms"], out.get("stfts")
    return out.waveforms, out.stfts


def agreement(ours: nn.Module, oracle: nn.Module, mixture: torch.Tensor) -> float:
    """Peak-relative largest difference of the two networks' fp32 outputs."""
    ours.eval()
    oracle.eval()
    with torch.no_grad():
        a, b = outputs(ours(mixture))[0], outputs(oracle(mixture))[0]
    return ((a - b).abs().max() / b.abs().max()).item()


#: HTDemucs as ``demucs.pretrained`` builds the ``htdemucs`` model (signature 955717e8): the
#: constructor arguments stored in that checkpoint that differ from HTDemucs' defaults.
HTDEMUCS_KWARGS: dict[str, Any] = {
    "sources": ["drums", "bass", "other", "vocals"],
    "audio_channels": 2,
    "samplerate": SR,
    "segment": Fraction(39, 5),
    "channels": 48,
    "depth": 4,
    "nfft": 4096,
    "bottom_channels": 512,
    "dconv_mode": 3,
    "dconv_comp": 8,
    "t_layers": 5,
    "t_heads": 8,
    "t_dropout": 0.02,
    "multi_freqs": [],
}


def demucs_version() -> str | None:
    """The installed demucs' version, or None (benchmarks/requirements.txt installs it)."""
    import importlib.util

    if importlib.util.find_spec("demucs") is None:
        return None
    import demucs

    return getattr(demucs, "__version__", "?")


def htdemucs(seed: int, device: torch.device | str = "cpu") -> tuple[nn.Module, Callable]:
    """HTDemucs with random weights, and ``separate(mixture [B, 2, T]) -> [B, 4, 2, T]``
    through ``demucs.apply.apply_model`` with its defaults (shifts=1, split=True,
    overlap=0.25, 7.8 s segments), as ``demucs.separate`` runs it."""
    import random

    from demucs.apply import apply_model
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(seed)
    random.seed(seed)  # apply_model's random shift
    model = HTDemucs(**HTDEMUCS_KWARGS).eval()

    def separate(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return apply_model(model, x, device=str(device))

    return model, separate


# --------------------------------------------------------------------------------------------
# Signals
# --------------------------------------------------------------------------------------------
def noise(shape: Sequence[int], seed: int, scale: float = 0.1) -> torch.Tensor:
    """Gaussian noise of ``shape`` times ``scale``, the same for the same seed."""
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*shape, generator=gen)


def mixture(seconds: float, seed: int, channels: int = 2, rate: int = SR) -> torch.Tensor:
    """A benchmark's stereo mixture ``[channels, T]`` (the same in every process)."""
    return noise((channels, int(round(seconds * rate))), seed)


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------
def write_results(out: Path | str | None, name: str, markdown: str, data: Any) -> list[Path]:
    """Write ``<out>/<name>.md`` and ``<out>/<name>.json`` atomically (nothing for None)."""
    if out is None:
        return []
    from bsrnn.files import write_text_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.md", out / f"{name}.json"]
    write_text_atomic(paths[0], markdown.rstrip() + "\n")
    write_text_atomic(paths[1], json.dumps(data, indent=1, default=str) + "\n")
    print(f"results: {paths[0]}, {paths[1]}", file=sys.stderr)
    return paths


def markdown_table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (cells as given, str() of anything else)."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# One measurement per process
# --------------------------------------------------------------------------------------------
def run_child(script: str | Path, cfg: Mapping[str, Any], threads: int) -> dict[str, Any]:
    """Run ``python <script> --child <cfg as JSON>`` with ``threads`` OpenMP/MKL threads; its
    last stdout line is the JSON result. A failure is ``{"error": <last stderr line>}``."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, str(script), "--child", json.dumps(dict(cfg))]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        error = lines[-1] if lines else f"exit code {proc.returncode}"
        return {"error": error if len(error) <= 160 else error[:157] + "..."}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def autocast(device: torch.device | str, dtype: torch.dtype | None):
    """``torch.autocast`` on ``device``'s type in ``dtype``; a no-op for None (fp32)."""
    device = torch.device(device)
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def bf16_skip(device: torch.device | str, force: bool) -> str | None:
    """None when bf16 should be timed on ``device``, else why not (no native bf16: emulated
    bf16 is slower than fp32; ``force`` times it anyway)."""
    if force or runtime.bf16_native(device)[0]:
        return None
    return "n/a: no native bf16 here (see the machine line; --force-bf16 times emulated bf16)"
