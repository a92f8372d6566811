"""Where and how the network runs: device, CPU threads, and numeric precision.

Only torch is needed here (no Lightning): the separator, evaluation, training and the
benchmarks share these helpers so that they choose devices, threads and precisions alike.

- :func:`resolve_device`: ``"auto"``/``None`` -> CUDA when available, else the CPU.
- :func:`physical_cores` / :func:`set_num_threads`: one torch thread per physical core (SMT
  siblings do not speed up the network's matmuls and LSTMs; they slow them down).
- :func:`cpu_bf16_support`: whether this CPU computes bf16 natively (AVX-512 BF16 or AMX).
  Without it, bf16 autocast on the CPU is *emulated* (converted to fp32 around every op) and is
  slower than fp32, so :func:`inference_precision` and :func:`training_precision` fall back to
  fp32 there, with a warning that says why.
- :func:`autocast`: the context manager that applies an inference precision.
- :func:`auto_precision`: ``precision=auto``: bf16 only where a short probe of the model's own
  forward pass shows it faster than fp32 on this machine (cached per CPU/GPU model, torch
  version, threads and model digest in ``$XDG_CACHE_HOME/bsrnn/precision.json``); fp32
  wherever bf16 is not native or not faster. A CPU flag does not predict the speed: the same
  four-stem separation ran 0.74x as fast in bf16 on one AVX-512 BF16 Xeon and 2.1x as fast on
  an AVX-512 BF16 EPYC.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import platform
import re
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from bsrnn.errors import ConfigError
from bsrnn.files import write_text_atomic

log = logging.getLogger(__name__)

#: Inference precisions (``eval.precision``); ``auto`` is resolved by :func:`auto_precision`.
PRECISIONS = ("auto", "fp32", "bf16")

#: ``precision=auto`` picks bf16 only when its probe time is below this fraction of fp32's
#: (a margin over the timing noise of a shared machine).
BF16_SPEEDUP_MARGIN = 0.9

#: Lightning ``trainer.precision`` values (and their short aliases) accepted by
#: :func:`training_precision`.
TRAINING_PRECISIONS = (
    "32-true",
    "32",
    "bf16-mixed",
    "bf16",
    "16-mixed",
    "16",
    "bf16-true",
    "16-true",
    "64-true",
    "64",
    "transformer-engine",
    "transformer-engine-float16",
)

#: Lightning precisions refused, and why (the STFT must run in fp32: see
#: :mod:`bsrnn.models.mixed_precision`).
REFUSED_TRAINING_PRECISIONS = {
    "bf16-true": "it casts the weights and STFT input to bf16, and torch.stft has no bf16 on CUDA",
    "16-true": "it casts the weights and STFT input to fp16 (no gradient scaler; the STFT "
    "would run in half precision)",
    "64-true": "the models' STFT windows and complex masks are built for fp32",
    "64": "the models' STFT windows and complex masks are built for fp32",
    "transformer-engine": "TransformerEngine layers are not used by these networks",
    "transformer-engine-float16": "TransformerEngine layers are not used by these networks",
}

#: ``/proc/cpuinfo`` flags that mean native bf16 arithmetic: x86 AVX-512 BF16 and AMX-BF16,
#: aarch64 BF16 (ARMv8.6 ``bf16`` feature).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")

_CPUINFO = Path("/proc/cpuinfo")
_SYS_CPU = Path("/sys/devices/system/cpu")
_CGROUP = Path("/sys/fs/cgroup")


# --------------------------------------------------------------------------------------------
# Device
# --------------------------------------------------------------------------------------------
def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"``: CUDA when available, else CPU. A CUDA device asked for on a machine
    without one falls back to the CPU with a warning."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        log.warning("device %r requested but CUDA is not available: using the CPU", str(device))
        return torch.device("cpu")
    return dev


# --------------------------------------------------------------------------------------------
# CPU description and threads
# --------------------------------------------------------------------------------------------
def _read_cpuinfo() -> str | None:
    """The text of ``/proc/cpuinfo``, or None where there is none (not Linux) or it is
    unreadable. Tests replace this function to simulate other CPUs."""
    try:
        return _CPUINFO.read_text(errors="replace")
    except OSError:
        return None


def _cpuinfo_blocks(text: str) -> list[dict[str, str]]:
    """``/proc/cpuinfo`` as one ``{key: value}`` mapping per logical CPU (blank-line separated)."""
    blocks: list[dict[str, str]] = []
    for chunk in re.split(r"\n\s*\n", text):
        entry: dict[str, str] = {}
        for line in chunk.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                entry[key.strip().lower()] = value.strip()
        if entry:
            blocks.append(entry)
    return blocks


def cpu_flags() -> set[str]:
    """The CPU feature flags from ``/proc/cpuinfo`` (x86 ``flags``, aarch64 ``Features``);
    empty where they cannot be read."""
    text = _read_cpuinfo()
    if not text:
        return set()
    for block in _cpuinfo_blocks(text):
        for key in ("flags", "features"):
            if block.get(key):
                return set(block[key].split())
    return set()


def cpu_model() -> str:
    """A readable name of the CPU (``model name`` from ``/proc/cpuinfo``; else the platform's
    processor string; else the machine architecture)."""
    text = _read_cpuinfo()
    if text:
        for block in _cpuinfo_blocks(text):
            for key in ("model name", "hardware", "cpu model"):
                if block.get(key):
                    return block[key]
    return platform.processor() or platform.machine() or "unknown CPU"


def _allowed_cpus() -> list[int]:
    """Logical CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        try:
            return sorted(os.sched_getaffinity(0))
        except OSError:
            pass
    return list(range(os.cpu_count() or 1))


def _cores_from_sysfs(cpus: Iterable[int], root: Path = _SYS_CPU) -> int | None:
    """Physical cores among ``cpus``: logical CPUs sharing a ``thread_siblings_list`` are one
    core. None when the topology files are missing."""
    cores: set[str] = set()
    for cpu in cpus:
        path = root / f"cpu{cpu}" / "topology" / "thread_siblings_list"
        try:
            cores.add(path.read_text().strip())
        except OSError:
            return None
    return len(cores) or None


def _cores_from_cpuinfo(cpus: Iterable[int], text: str | None) -> int | None:
    """Physical cores among ``cpus``: distinct (``physical id``, ``core id``) pairs in
    ``/proc/cpuinfo``. None when the file does not say (e.g. on most ARM systems)."""
    if not text:
        return None
    wanted = set(cpus)
    cores: set[tuple[str, str]] = set()
    for block in _cpuinfo_blocks(text):
        if "processor" not in block or "core id" not in block:
            continue
        try:
            cpu = int(block["processor"])
        except ValueError:
            continue
        if cpu in wanted:
            cores.add((block.get("physical id", "0"), block["core id"]))
    return len(cores) or None


def _cgroup_cpu_limit(root: Path = _CGROUP) -> int | None:
    """CPUs' worth of time a cgroup CPU quota allows (``docker --cpus``), rounded up; None
    without a quota. cgroup v2 ``cpu.max``, else v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us``."""
    try:
        quota, _, period = (root / "cpu.max").read_text().strip().partition(" ")
    except OSError:
        try:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    try:
        q, p = int(quota), int(period or 100000)
    except ValueError:  # "max": no quota
        return None
    if q <= 0 or p <= 0:
        return None
    return max(1, math.ceil(q / p))


def physical_cores() -> int:
    """Number of physical CPU cores this process may use (never 0).

    Counts the cores of the logical CPUs in the process's affinity mask, SMT siblings once
    (from ``/sys/devices/system/cpu/cpu*/topology/thread_siblings_list``, else
    ``/proc/cpuinfo``'s ``physical id``/``core id``); falls back to the number of allowed
    logical CPUs. A cgroup CPU quota (containers) caps the count.
    """
    cpus = _allowed_cpus()
    count = _cores_from_sysfs(cpus)
    if count is None:
        count = _cores_from_cpuinfo(cpus, _read_cpuinfo())
    if count is None:
        count = len(cpus) or os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    if limit is not None:
        count = min(count, limit)
    return max(1, int(count))


def set_num_threads(n: int | None) -> int:
    """Set torch's intra-op CPU threads: ``n``, or one per physical core for ``None``/0.
    Returns the number used."""
    if n is not None and int(n) < 0:
        raise ConfigError(f"the number of threads must be >= 0 (0: one per core), got {n}")
    threads = int(n) if n else physical_cores()
    torch.set_num_threads(threads)
    log.debug("torch CPU threads: %d", threads)
    return threads


# --------------------------------------------------------------------------------------------
# Precision
# --------------------------------------------------------------------------------------------
def cpu_bf16_support() -> tuple[bool, str]:
    """Whether this CPU computes bf16 natively, and a short reason for logs.

    Linux: the ``avx512_bf16``/``amx_bf16`` (x86) or ``bf16`` (aarch64) flag in
    ``/proc/cpuinfo``. Elsewhere: torch's CPU capability when it names BF16 or AMX, else False.
    """
    flags = cpu_flags()
    if flags:
        found = [f for f in BF16_CPU_FLAGS if f in flags]
        if found:
            return True, f"the CPU has {'/'.join(found)}"
        reason = "the CPU has no avx512_bf16/amx_bf16 flag in /proc/cpuinfo"
        if "avx2" in flags and "avx512f" not in flags:
            # autocast sends the LSTM to oneDNN in bf16, which it has no kernel for here
            reason += " (nor AVX-512: oneDNN cannot run the LSTM in bf16 at all)"
        return False, reason
    try:
        capability = str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        capability = ""
    if "BF16" in capability.upper() or "AMX" in capability.upper():
        return True, f"torch reports CPU capability {capability}"
    return False, f"cannot tell that the CPU has native bf16 (torch CPU capability {capability!r})"


def _check_precision(precision: str) -> str:
    value = str(precision).strip().lower()
    if value not in PRECISIONS:
        raise ConfigError(
            f"unknown eval.precision={precision!r}: expected one of {', '.join(PRECISIONS)}"
        )
    return value


def inference_precision(precision: str, device: torch.device) -> str:
    """The precision to run inference in: ``precision`` (``"fp32"``/``"bf16"``), or ``"fp32"``
    (with a warning) where bf16 would be emulated: a CPU without native bf16, a CUDA device
    without bf16 support, or another device type. ``"auto"`` comes back as ``"auto"``: the
    caller resolves it with :func:`auto_precision` (it needs the model). Raises ConfigError for
    an unknown value."""
    value = _check_precision(precision)
    if value in ("fp32", "auto"):
        return value
    native, reason = bf16_native(device)
    if not native:
        log.warning(
            "eval.precision=bf16 on %s runs in fp32: %s (emulated bf16 is slower than fp32)",
            torch.device(device),
            reason,
        )
        return "fp32"
    return value


def autocast(
    device: torch.device | str, precision: str
) -> contextlib.AbstractContextManager[object]:
    """A context manager running its body in ``precision``: bf16 autocast on ``device``'s type
    for ``"bf16"`` (matmuls, convolutions and RNNs in bf16; see torch.autocast), nothing for
    ``"fp32"``. Call :func:`inference_precision` first to pick a precision the device runs
    well."""
    value = _check_precision(precision)
    if value == "auto":
        raise ConfigError("precision 'auto' must be resolved (auto_precision) before autocast")
    if value == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# --------------------------------------------------------------------------------------------
# precision=auto: a probe of the model's own forward pass, cached
# --------------------------------------------------------------------------------------------
def bf16_native(device: torch.device | str) -> tuple[bool, str]:
    """Whether ``device`` computes bf16 natively, and why (for logs). The one rule for every
    precision choice (inference, training, benchmarks): a CPU needs native bf16
    (:func:`cpu_bf16_support`); a CUDA device is asked about itself (not the current device)
    without counting emulation: compute capability 8.0 or newer (Ampere+) and
    ``torch.cuda.is_bf16_supported(including_emulation=False)``; other device types: no."""
    device = torch.device(device)
    if device.type == "cpu":
        return cpu_bf16_support()
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False, "CUDA is not available"
        index = device.index if device.index is not None else torch.cuda.current_device()
        name = torch.cuda.get_device_name(index)
        major, minor = torch.cuda.get_device_capability(index)
        if major < 8:
            return False, f"{name} (compute capability {major}.{minor}) has no native bf16"
        if not torch.cuda.is_bf16_supported(including_emulation=False):  # the build (CUDA 11+)
            return False, f"{name}: this CUDA build reports no native bf16"
        return True, f"{name} (compute capability {major}.{minor}) supports bf16"
    return False, f"no bf16 autocast support assumed on device type {device.type!r}"


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/bsrnn`` (default ``~/.cache/bsrnn``)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "bsrnn"


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def precision_probe_key(device: torch.device | str, model_digest: str) -> str:
    """The cache key of a probe: device model, torch version, CPU threads and the model's
    architecture+config digest."""
    device = torch.device(device)
    parts = [_device_name(device), device.type, torch.__version__, torch.get_num_threads()]
    text = json.dumps([*parts, model_digest])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def time_forward(
    fn: Callable[[], object], device: torch.device | str, precision: str, repeats: int = 3
) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` in ``precision`` after one warm-up call
    (without gradients; CUDA is synchronised around each call)."""
    device = torch.device(device)

    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        with torch.no_grad(), autocast(device, precision):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    once()
    return statistics.median(once() for _ in range(max(1, repeats)))


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def auto_precision(
    device: torch.device | str,
    model_digest: str,
    timer: Callable[[str], float],
    cache: Path | None | bool = True,
) -> str:
    """``precision=auto``: ``"bf16"`` where bf16 is native on ``device`` and a probe shows it
    faster than fp32 (its median time below :data:`BF16_SPEEDUP_MARGIN` of fp32's), else
    ``"fp32"``. The choice and its reason are logged.

    ``timer(precision)`` returns the seconds of one forward pass of the model in that
    precision (e.g. :func:`time_forward` of the actual model on a short input); tests inject
    their own. ``model_digest`` names the architecture and config (the probe measures this
    model's layer shapes). The result is cached in ``cache`` (a JSON file; ``True``:
    ``cache_dir() / "precision.json"``; ``False``/None: no cache) under
    :func:`precision_probe_key`, written atomically.
    """
    device = torch.device(device)
    native, reason = bf16_native(device)
    if not native:
        log.info("precision auto: fp32 (%s; bf16 would be emulated)", reason)
        return "fp32"
    path = cache_dir() / "precision.json" if cache is True else (cache or None)
    key = precision_probe_key(device, model_digest)
    entries = _read_cache(path) if path is not None else {}
    entry = entries.get(key)
    if isinstance(entry, dict) and entry.get("choice") in ("fp32", "bf16"):
        log.info(
            "precision auto: %s (cached probe on %s: fp32 %.4f s, bf16 %.4f s per forward; %s)",
            entry["choice"],
            entry.get("device", "?"),
            float(entry.get("fp32_s", float("nan"))),
            float(entry.get("bf16_s", float("nan"))),
            path,
        )
        return str(entry["choice"])
    fp32_s = float(timer("fp32"))
    bf16_s = float(timer("bf16"))
    choice = "bf16" if bf16_s < BF16_SPEEDUP_MARGIN * fp32_s else "fp32"
    log.info(
        "precision auto: %s (probe on %s, %d thread(s): fp32 %.4f s, bf16 %.4f s per forward, "
        "bf16 %.2fx as fast)",
        choice,
        _device_name(device),
        torch.get_num_threads(),
        fp32_s,
        bf16_s,
        fp32_s / bf16_s if bf16_s > 0 else float("inf"),
    )
    if path is not None:
        entries[key] = {
            "choice": choice,
            "fp32_s": fp32_s,
            "bf16_s": bf16_s,
            "device": _device_name(device),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "model": model_digest,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        try:
            write_text_atomic(path, json.dumps(entries, indent=1, sort_keys=True) + "\n")
        except OSError as err:  # a read-only home: the probe runs again next time
            log.warning("cannot cache the precision probe in %s: %s", path, err)
    return choice


def _training_accelerator(accelerator: str) -> str:
    """``"cpu"``, ``"cuda"`` or another device type for a Lightning ``trainer.accelerator``."""
    value = str(accelerator).strip().lower()
    if value in ("auto", "gpu"):
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    return value


def training_precision(precision: str | int, accelerator: str) -> str:
    """Check a Lightning ``trainer.precision`` against ``trainer.accelerator`` and return the
    value to give Lightning.

    ``bf16-mixed`` where the device has no native bf16 (:func:`bf16_native`: a CPU without
    AVX-512 BF16/AMX, a GPU older than Ampere) becomes ``"32-true"`` with one warning line
    (emulated bf16 is slower than fp32); ``16-mixed`` on the CPU is a ConfigError (Lightning
    has no fp16 autocast there); ``*-true`` other than 32 and TransformerEngine are refused in
    one line (:data:`REFUSED_TRAINING_PRECISIONS`). Other values pass through (as strings).
    """
    value = str(precision).strip().lower()
    if value not in TRAINING_PRECISIONS:
        raise ConfigError(
            f"unknown trainer.precision={precision!r}: expected one of "
            f"{', '.join(TRAINING_PRECISIONS)}"
        )
    if value in REFUSED_TRAINING_PRECISIONS:
        raise ConfigError(
            f"trainer.precision={precision} is not supported: "
            f"{REFUSED_TRAINING_PRECISIONS[value]}; use 32-true, bf16-mixed or 16-mixed (GPU)"
        )
    device = _training_accelerator(accelerator)
    is_bf16 = value.startswith("bf16")
    if device == "cpu" and value in ("16-mixed", "16"):
        raise ConfigError(
            f"trainer.precision={precision} is not supported on the CPU: Lightning has no "
            "fp16 autocast there; use 32-true, or bf16-mixed on a CPU with native bf16"
        )
    if is_bf16 and device in ("cpu", "cuda"):
        native, reason = bf16_native(device)
        if not native:
            log.warning(
                "trainer.precision=%s trains in 32-true: %s, so bf16 would be emulated, which "
                "is slower than fp32",
                precision,
                reason,
            )
            return "32-true"
    return str(precision)


# --------------------------------------------------------------------------------------------
# Matmul precision (TF32) and determinism: the same in training, evaluation and benchmarks
# --------------------------------------------------------------------------------------------
#: ``trainer.matmul_precision`` values (``torch.set_float32_matmul_precision``).
MATMUL_PRECISIONS = ("highest", "high", "medium")


def apply_matmul_precision(value: str) -> str:
    """Set fp32 matmul precision for this process: ``highest`` (true fp32, the default),
    ``high`` (TF32 on Ampere+ GPUs) or ``medium`` (bf16 passes). cuDNN convolutions and RNNs
    follow the same choice (``torch.backends.cudnn.allow_tf32``: only when not ``highest``),
    so that "fp32" means one thing everywhere. Returns the value; ConfigError if unknown."""
    choice = str(value).strip().lower()
    if choice not in MATMUL_PRECISIONS:
        raise ConfigError(
            f"unknown trainer.matmul_precision={value!r}: expected one of "
            f"{', '.join(MATMUL_PRECISIONS)}"
        )
    torch.set_float32_matmul_precision(choice)
    torch.backends.cudnn.allow_tf32 = choice != "highest"
    log.debug("float32 matmul precision: %s (cudnn TF32 %s)", choice, choice != "highest")
    return choice


#: What ``trainer.deterministic=true`` cannot make deterministic on CUDA (warned once).
CUDA_NONDETERMINISTIC = (
    "the backward pass of reflect padding (the STFT's centre padding inside the "
    "multi-resolution loss and the models' STFTs) has no deterministic CUDA kernel: it runs "
    "with a warning (torch.use_deterministic_algorithms(warn_only=True))"
)


def prepare_determinism(deterministic: Any, accelerator: str) -> Any:
    """Make ``trainer.deterministic=true`` work on CUDA: ``CUBLAS_WORKSPACE_CONFIG=:4096:8``
    (needed by deterministic cuBLAS; set before CUDA initialises, kept if already set) and
    ``"warn"`` instead of ``True`` for Lightning (torch's ``warn_only``), logging in one line
    what stays non-deterministic (:data:`CUDA_NONDETERMINISTIC`). Other values pass through."""
    if deterministic is not True or _training_accelerator(accelerator) != "cuda":
        return deterministic
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    log.warning("trainer.deterministic=true on CUDA: %s", CUDA_NONDETERMINISTIC)
    return "warn"
