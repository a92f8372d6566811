"""precision=auto: bf16 only where native and where the probe of the model shows it faster;
the probe is cached per device, torch version, threads and model; the Separator uses it."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from bsrnn import precision_probe, runtime
from bsrnn.errors import ConfigError
from bsrnn.evaluation import EvalSettings
from bsrnn.models import build_model
from bsrnn.separator import Separator

CPU = torch.device("cpu")
CPUINFO_NO_BF16 = """processor\t: 0
model name\t: Test CPU
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse sse2 avx avx2 fma
"""
CPUINFO_BF16 = CPUINFO_NO_BF16.replace("avx2 fma", "avx2 fma avx512f avx512_bf16")


@pytest.fixture(autouse=True)
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "bsrnn" / "precision.json"


def timer_of(times: dict[str, float], calls: list[str]):
    def timer(precision: str) -> float:
        calls.append(precision)
        return times[precision]

    return timer


def test_picks_fp32_when_the_probe_says_bf16_is_slower(monkeypatch, caplog, cache_home):
    monkeypatch.setattr(runtime, "_read_cpuinfo", lambda: CPUINFO_BF16)
    calls: list[str] = []
    with caplog.at_level(logging.INFO, logger="bsrnn.runtime"):
        got = runtime.auto_precision(CPU, "m1", timer_of({"fp32": 9.3, "bf16": 12.5}, calls))
    assert got == "fp32" and sorted(calls) == ["bf16", "fp32"]
    assert "precision auto: fp32" in caplog.text and "12.5" in caplog.text
    entry = next(iter(json.loads(cache_home.read_text()).values()))
    assert entry["choice"] == "fp32" and entry["model"] == "m1"


def test_picks_bf16_when_native_and_faster(monkeypatch, caplog):
    monkeypatch.setattr(runtime, "_read_cpuinfo", lambda: CPUINFO_BF16)
    calls: list[str] = []
    with caplog.at_level(logging.INFO, logger="bsrnn.runtime"):
        got = runtime.auto_precision(CPU, "m1", timer_of({"fp32": 2.1, "bf16": 1.0}, calls))
    assert got == "bf16" and "precision auto: bf16" in caplog.text


def test_a_marginal_gain_keeps_fp32(monkeypatch):
    monkeypatch.setattr(runtime, "_read_cpuinfo", lambda: CPUINFO_BF16)
    got = runtime.auto_precision(CPU, "m", timer_of({"fp32": 1.0, "bf16": 0.95}, []), cache=None)
    assert got == "fp32"


def test_without_native_bf16_no_probe_runs(monkeypatch, caplog):
    monkeypatch.setattr(runtime, "_read_cpuinfo", lambda: CPUINFO_NO_BF16)
    calls: list[str] = []
    with caplog.at_level(logging.INFO, logger="bsrnn.runtime"):
        got = runtime.auto_precision(CPU, "m", timer_of({"fp32": 9.0, "bf16": 1.0}, calls))
    assert got == "fp32" and calls == [] and "emulated" in caplog.text


def test_the_probe_is_cached_per_model(monkeypatch, caplog):
    monkeypatch.setattr(runtime, "_read_cpuinfo", lambda: CPUINFO_BF16)
    calls: list[str] = []
    fast = timer_of({"fp32": 2.0, "bf16": 1.0}, calls)
    assert runtime.auto_precision(CPU, "model-a", fast) == "bf16"
    assert len(calls) == 2
    with caplog.at_level(logging.INFO, logger="bsrnn.runtime"):
        assert runtime.auto_precision(CPU, "model-a", fast) == "bf16"
    assert len(calls) == 2 and "cached probe" in caplog.text  # no new probe
    slow = timer_of({"fp32": 1.0, "bf16": 2.0}, calls)
    assert runtime.auto_precision(CPU, "model-b", slow) == "fp32"  # another model: probed
    assert len(calls) == 4
    key_a = runtime.precision_probe_key(CPU, "model-a")
    assert key_a != runtime.precision_probe_key(CPU, "model-b")
    monkeypatch.setattr(runtime, "_read_cpuinfo", lambda: CPUINFO_BF16.replace("Test", "Other"))
    assert runtime.precision_probe_key(CPU, "model-a") != key_a  # another CPU model


def test_a_corrupt_cache_is_ignored(monkeypatch, cache_home):
    monkeypatch.setattr(runtime, "_read_cpuinfo", lambda: CPUINFO_BF16)
    cache_home.parent.mkdir(parents=True)
    cache_home.write_text("{not json")
    calls: list[str] = []
    assert runtime.auto_precision(CPU, "m", timer_of({"fp32": 1.0, "bf16": 3.0}, calls)) == "fp32"
    assert len(calls) == 2 and json.loads(cache_home.read_text())


def test_separator_probes_its_own_model(monkeypatch):
    """Separator(precision="auto") times its models' forward in both precisions (the timing
    function is replaced: bf16 "faster" on a CPU with native bf16)."""
    monkeypatch.setattr(runtime, "_read_cpuinfo", lambda: CPUINFO_BF16)
    seen: list[tuple[str, tuple]] = []

    def fake_time(fn, device, precision, repeats=3):
        with torch.no_grad():
            fn()  # the real forward pass runs
        seen.append((precision, device.type))
        return {"fp32": 2.0, "bf16": 1.0}[precision]

    monkeypatch.setattr(precision_probe, "time_forward", fake_time)
    model = build_model(dict(target="vocals", feature_dim=8, num_repeat=1)).eval()
    sep = Separator([model], precision="auto")
    assert sep.precision == "auto" and not seen  # building one probes (and writes) nothing
    assert sep.resolve_precision() == "bf16" and [p for p, _ in seen] == ["fp32", "bf16"]
    monkeypatch.setattr(runtime, "_read_cpuinfo", lambda: CPUINFO_NO_BF16)
    lazy = Separator([model], precision="auto")
    lazy(0.1 * torch.randn(1, 2, 4096))  # the first use resolves it
    assert lazy.precision == "fp32"


def test_eval_settings_accept_auto_and_reject_others():
    assert EvalSettings(precision="AUTO").precision == "auto"
    with pytest.raises(ConfigError, match="eval.precision"):
        EvalSettings(precision="fp16")
    with pytest.raises(ConfigError, match="resolved"):
        runtime.autocast(CPU, "auto")
