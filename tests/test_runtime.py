"""bsrnn.runtime: device resolution, physical cores and threads, bf16 support and precisions."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch

from bsrnn import runtime
from bsrnn.errors import ConfigError

CPUINFO_NO_BF16 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: Test CPU without bf16
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse sse2 avx avx2 fma

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: Test CPU without bf16
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse sse2 avx avx2 fma

processor\t: 2
vendor_id\t: AuthenticAMD
model name\t: Test CPU without bf16
physical id\t: 0
core id\t\t: 1
flags\t\t: fpu sse sse2 avx avx2 fma
"""

CPUINFO_BF16 = CPUINFO_NO_BF16.replace("avx2 fma", "avx2 fma avx512f avx512_bf16").replace(
    "without", "with"
)

CPUINFO_ARM = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes sha2 bf16 i8mm

processor\t: 1
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes sha2 bf16 i8mm
"""


@pytest.fixture
def no_bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_read_cpuinfo", lambda: CPUINFO_NO_BF16)


@pytest.fixture
def bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_read_cpuinfo", lambda: CPUINFO_BF16)


# --------------------------------------------------------------------------------------------
# Device
# --------------------------------------------------------------------------------------------
def test_resolve_device_auto_and_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.resolve_device(None) == torch.device("cpu")
    assert runtime.resolve_device("auto") == torch.device("cpu")
    assert runtime.resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_resolve_device_cuda_without_cuda_falls_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="bsrnn.runtime"):
        assert runtime.resolve_device("cuda:0") == torch.device("cpu")
    assert "CUDA is not available" in caplog.text


def test_resolve_device_auto_prefers_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.resolve_device("auto") == torch.device("cuda")
    assert runtime.resolve_device("cuda:1") == torch.device("cuda:1")


# --------------------------------------------------------------------------------------------
# Cores and threads
# --------------------------------------------------------------------------------------------
def _topology(root: Path, siblings: dict[int, str]) -> None:
    for cpu, text in siblings.items():
        d = root / f"cpu{cpu}" / "topology"
        d.mkdir(parents=True)
        (d / "thread_siblings_list").write_text(text + "\n")


def test_cores_from_sysfs_counts_smt_siblings_once(tmp_path: Path) -> None:
    # 4 logical CPUs, 2 cores with 2 threads each (Linux numbers siblings 0,2 and 1,3)
    _topology(tmp_path, {0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3"})
    assert runtime._cores_from_sysfs([0, 1, 2, 3], tmp_path) == 2
    assert runtime._cores_from_sysfs([0, 2], tmp_path) == 1  # affinity: one core's two threads
    assert runtime._cores_from_sysfs([0, 1], tmp_path) == 2
    assert runtime._cores_from_sysfs([7], tmp_path) is None  # missing topology: unknown


def test_cores_from_cpuinfo() -> None:
    assert runtime._cores_from_cpuinfo([0, 1, 2], CPUINFO_NO_BF16) == 2  # cpus 0, 1 share core 0
    assert runtime._cores_from_cpuinfo([0, 1], CPUINFO_NO_BF16) == 1
    assert runtime._cores_from_cpuinfo([0, 1], CPUINFO_ARM) is None  # no core ids: unknown
    assert runtime._cores_from_cpuinfo([0], None) is None


def test_cgroup_cpu_limit(tmp_path: Path) -> None:
    assert runtime._cgroup_cpu_limit(tmp_path) is None  # no cgroup files
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert runtime._cgroup_cpu_limit(tmp_path) is None
    (tmp_path / "cpu.max").write_text("250000 100000\n")  # docker --cpus=2.5
    assert runtime._cgroup_cpu_limit(tmp_path) == 3
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert runtime._cgroup_cpu_limit(tmp_path) is None
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    assert runtime._cgroup_cpu_limit(tmp_path) == 1


def test_physical_cores_capped_by_cgroup_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_cores_from_sysfs", lambda cpus: 8)
    monkeypatch.setattr(runtime, "_cgroup_cpu_limit", lambda: 2)
    assert runtime.physical_cores() == 2
    monkeypatch.setattr(runtime, "_cgroup_cpu_limit", lambda: None)
    assert runtime.physical_cores() == 8


def test_physical_cores_is_positive_and_within_affinity() -> None:
    cores = runtime.physical_cores()
    assert 1 <= cores <= len(runtime._allowed_cpus())


def test_physical_cores_falls_back_to_logical_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_cores_from_sysfs", lambda cpus: None)
    monkeypatch.setattr(runtime, "_cgroup_cpu_limit", lambda: None)
    monkeypatch.setattr(runtime, "_read_cpuinfo", lambda: None)
    monkeypatch.setattr(runtime, "_allowed_cpus", lambda: [0, 1, 2])
    assert runtime.physical_cores() == 3
    monkeypatch.setattr(runtime, "_allowed_cpus", lambda: [])
    assert runtime.physical_cores() >= 1


def test_set_num_threads() -> None:
    before = torch.get_num_threads()
    try:
        assert runtime.set_num_threads(1) == 1
        assert torch.get_num_threads() == 1
        cores = runtime.physical_cores()
        assert runtime.set_num_threads(None) == cores
        assert torch.get_num_threads() == cores
        assert runtime.set_num_threads(0) == cores
        with pytest.raises(ConfigError):
            runtime.set_num_threads(-1)
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------
# bf16 support
# --------------------------------------------------------------------------------------------
def test_cpu_bf16_support_reads_cpuinfo_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_read_cpuinfo", lambda: CPUINFO_NO_BF16)
    ok, reason = runtime.cpu_bf16_support()
    assert not ok and "avx512_bf16" in reason and "LSTM" in reason  # AVX2 only
    monkeypatch.setattr(
        runtime, "_read_cpuinfo", lambda: CPUINFO_NO_BF16.replace("fma\n", "fma avx512f\n")
    )
    ok, reason = runtime.cpu_bf16_support()
    assert not ok and "LSTM" not in reason  # AVX-512 without BF16: emulated, slow
    monkeypatch.setattr(runtime, "_read_cpuinfo", lambda: CPUINFO_BF16)
    ok, reason = runtime.cpu_bf16_support()
    assert ok and "avx512_bf16" in reason
    monkeypatch.setattr(runtime, "_read_cpuinfo", lambda: CPUINFO_ARM)
    assert runtime.cpu_bf16_support()[0]
    monkeypatch.setattr(
        runtime, "_read_cpuinfo", lambda: CPUINFO_NO_BF16.replace("fma\n", "fma amx_bf16\n")
    )
    assert runtime.cpu_bf16_support()[0]


def test_cpu_bf16_support_without_cpuinfo_asks_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_read_cpuinfo", lambda: None)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    ok, reason = runtime.cpu_bf16_support()
    assert not ok and "AVX2" in reason
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512_BF16")
    assert runtime.cpu_bf16_support()[0]


def test_cpu_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_read_cpuinfo", lambda: CPUINFO_BF16)
    assert runtime.cpu_model() == "Test CPU with bf16"
    monkeypatch.setattr(runtime, "_read_cpuinfo", lambda: None)
    assert runtime.cpu_model()


# --------------------------------------------------------------------------------------------
# Inference precision and autocast
# --------------------------------------------------------------------------------------------
CPU = torch.device("cpu")


def test_inference_precision_unknown_is_config_error() -> None:
    with pytest.raises(ConfigError, match=r"eval\.precision.*fp32, bf16"):
        runtime.inference_precision("fp16", CPU)
    with pytest.raises(ConfigError, match=r"eval\.precision"):
        runtime.autocast(CPU, "half")


def test_inference_precision_fp32_always(no_bf16_cpu: None) -> None:
    assert runtime.inference_precision("fp32", CPU) == "fp32"


def test_inference_precision_bf16_on_cpu_without_bf16_falls_back(
    no_bf16_cpu: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="bsrnn.runtime"):
        assert runtime.inference_precision("bf16", CPU) == "fp32"
    assert "emulated" in caplog.text and "slower" in caplog.text
    assert "avx512_bf16" in caplog.text


def test_inference_precision_bf16_on_cpu_with_bf16(
    bf16_cpu: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="bsrnn.runtime"):
        assert runtime.inference_precision("BF16", CPU) == "bf16"
    assert not caplog.records


def fake_cuda(monkeypatch: pytest.MonkeyPatch, capabilities: dict[int, tuple[int, int]]) -> list:
    """Pretend CUDA devices with these compute capabilities exist; returns the list of
    ``including_emulation`` values ``is_bf16_supported`` was called with."""
    calls: list = []

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        calls.append(including_emulation)
        return True

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: f"GPU{i}")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: capabilities[i])
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    return calls


def test_inference_precision_bf16_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_cuda(monkeypatch, {0: (9, 0), 1: (7, 0)})
    assert runtime.inference_precision("bf16", torch.device("cuda")) == "bf16"
    assert runtime.inference_precision("bf16", torch.device("cuda:0")) == "bf16"
    # the model's device counts, not the current one (0): a V100 emulates bf16
    assert runtime.inference_precision("bf16", torch.device("cuda:1")) == "fp32"
    assert calls and not any(calls)  # emulation never counts


def test_bf16_native_on_a_pre_ampere_gpu_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda(monkeypatch, {0: (7, 5)})
    native, reason = runtime.bf16_native("cuda:0")
    assert not native and "compute capability 7.5" in reason


def test_autocast_runs_linear_in_bf16_on_cpu() -> None:
    layer = torch.nn.Linear(8, 4)
    x = torch.randn(3, 8)
    with runtime.autocast(CPU, "bf16"):
        y = layer(x)
    assert y.dtype == torch.bfloat16
    with runtime.autocast(CPU, "fp32"):
        y32 = layer(x)
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y.float(), y32, atol=0.05, rtol=0.05)
    assert not torch.is_autocast_enabled("cpu")  # nothing leaks out of the context


# --------------------------------------------------------------------------------------------
# Training precision (Lightning's trainer.precision)
# --------------------------------------------------------------------------------------------
def test_training_precision_bf16_mixed_on_cpu_without_bf16(
    no_bf16_cpu: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="bsrnn.runtime"):
        assert runtime.training_precision("bf16-mixed", "cpu") == "32-true"
    assert "emulated" in caplog.text and "trainer.precision=bf16-mixed" in caplog.text


def test_training_precision_bf16_mixed_on_cpu_with_bf16(bf16_cpu: None) -> None:
    assert runtime.training_precision("bf16-mixed", "cpu") == "bf16-mixed"


def test_training_precision_fp16_on_cpu_is_config_error(bf16_cpu: None) -> None:
    with pytest.raises(ConfigError, match=r"trainer\.precision=16-mixed.*CPU"):
        runtime.training_precision("16-mixed", "cpu")
    with pytest.raises(ConfigError, match=r"trainer\.precision"):
        runtime.training_precision(16, "cpu")


def test_training_precision_auto_accelerator_without_cuda(
    monkeypatch: pytest.MonkeyPatch, no_bf16_cpu: None
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert runtime.training_precision("bf16-mixed", "auto") == "32-true"
    with pytest.raises(ConfigError):
        runtime.training_precision("16-mixed", "auto")


def test_training_precision_passes_through(
    monkeypatch: pytest.MonkeyPatch, no_bf16_cpu: None
) -> None:
    assert runtime.training_precision(32, "cpu") == "32"
    assert runtime.training_precision("32-true", "cpu") == "32-true"
    capabilities = {0: (8, 0)}
    fake_cuda(monkeypatch, capabilities)
    assert runtime.training_precision("16-mixed", "gpu") == "16-mixed"
    assert runtime.training_precision("bf16-mixed", "cuda") == "bf16-mixed"
    capabilities[0] = (7, 0)
    assert runtime.training_precision("bf16-mixed", "cuda") == "32-true"


@pytest.mark.parametrize("value", ["bf16-true", "16-true", "64", "64-true"])
def test_true_low_or_double_precisions_are_refused_in_one_line(value: str) -> None:
    with pytest.raises(
        ConfigError, match=rf"trainer\.precision={value} is not supported: .*; use 32-true"
    ):
        runtime.training_precision(value, "cpu")


def test_matmul_precision_sets_tf32_consistently() -> None:
    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    try:
        assert runtime.apply_matmul_precision("High") == "high"
        assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.allow_tf32
        runtime.apply_matmul_precision("highest")
        assert torch.get_float32_matmul_precision() == "highest"
        assert not torch.backends.cudnn.allow_tf32
        with pytest.raises(ConfigError, match="trainer.matmul_precision='tf32'"):
            runtime.apply_matmul_precision("tf32")
    finally:
        torch.set_float32_matmul_precision(before[0])
        torch.backends.cudnn.allow_tf32 = before[1]


def test_deterministic_on_cuda_sets_cublas_and_warns_only(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert runtime.prepare_determinism(True, "cpu") is True
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    with caplog.at_level(logging.WARNING, logger="bsrnn.runtime"):
        assert runtime.prepare_determinism(True, "cuda") == "warn"
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert len(caplog.records) == 1 and "reflect padding" in caplog.text


def test_training_precision_unknown_is_config_error() -> None:
    with pytest.raises(ConfigError, match=r"trainer\.precision='fp8'.*32-true"):
        runtime.training_precision("fp8", "cpu")


def test_inference_precision_auto_is_left_to_the_probe(no_bf16_cpu: None) -> None:
    """``auto`` needs the model: inference_precision passes it on for auto_precision."""
    assert runtime.inference_precision("auto", CPU) == "auto"
    assert "auto" in runtime.PRECISIONS


def test_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert runtime.cache_dir() == tmp_path / "bsrnn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert runtime.cache_dir() == Path.home() / ".cache" / "bsrnn"


def test_evaluation_workers_never_get_a_cuda_model(caplog: pytest.LogCaptureFixture) -> None:
    from types import SimpleNamespace

    from bsrnn.evaluation import _on_cuda

    assert _on_cuda(SimpleNamespace(separator=SimpleNamespace(device=torch.device("cuda:1"))))
    assert not _on_cuda(SimpleNamespace(separator=SimpleNamespace(device=torch.device("cpu"))))
    assert not _on_cuda(SimpleNamespace(targets=["vocals"]))  # the mixture baseline
