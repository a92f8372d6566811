"""The entry scripts' error contract: a domain error is one line and exit 1; a bug keeps its
traceback. And the package's imports point one way (no module imports one that imports it)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_domain_error_is_one_line_and_exit_1():
    proc = _run(
        "from bsrnn.cli import run_entry\n"
        "from bsrnn.errors import DatasetError\n"
        "def f():\n    raise DatasetError('no track folders in data/x/test')\n"
        "run_entry('evaluate.py', f)\n"
    )
    assert proc.returncode == 1
    assert proc.stderr == "evaluate.py: error: no track folders in data/x/test\n"


def test_unexpected_exception_keeps_its_traceback():
    proc = _run(
        "from bsrnn.cli import run_entry\n"
        "def f():\n    return {}['missing']\n"
        "run_entry('train.py', f)\n"
    )
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert "KeyError: 'missing'" in proc.stderr and "in f" in proc.stderr


@pytest.mark.slow
def test_entry_script_with_a_bad_option_exits_1_with_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "evaluate.py", "eval.sdr_type=psnr", f"hydra.run.dir={tmp_path}"],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith("evaluate.py: error: unknown eval.sdr_type='psnr'")
    )


def _imports(path: Path) -> set[str]:
    """The bsrnn modules a file imports (at any depth in the file)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bsrnn"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("bsrnn"))
    return found


def test_dependencies_point_one_way():
    root = REPO / "src"
    modules = {}
    for path in root.rglob("*.py"):
        name = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = _imports(path)

    def deps(name: str) -> set[str]:  # a package's __init__ is part of importing its modules
        return {d for d in modules.get(name, set()) if d in modules and d != name}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            for d in deps(todo.pop()):
                if d == goal:
                    return True
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        return False

    cycles = [(a, b) for a in modules for b in deps(a) if reaches(b, a)]
    allowed = {(pkg, sub) for pkg in modules for sub in modules if sub.startswith(pkg + ".")}
    assert [c for c in cycles if c not in allowed and c[::-1] not in allowed] == []
    assert "lightning" not in " ".join(
        str(modules[m]) for m in ("bsrnn.models.bsrnn", "bsrnn.separator", "bsrnn.checkpoints")
    )
