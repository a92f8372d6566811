# Two commands on a fresh clone: `make demo` (the main job on the stand-in data) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench setup clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-test.txt requirements-augment.txt requirements-onnx.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	# the optional extra "augment" (augment=msst), pinned, without its declared dependencies
	# (audiomentations asks for soxr<1 and librosa's stack; see requirements-augment.txt)
	$(PY) -m pip install --quiet --no-deps -r requirements-augment.txt
	# test-only: museval's metrics module, loaded from its file (its package import needs ffmpeg)
	$(PY) -m pip install --quiet --no-deps -r requirements-test.txt
	# the optional ONNX extra (export and separation without PyTorch), so its tests run
	$(PY) -m pip install --quiet -r requirements-onnx.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) demo.py

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: $(STAMP)
	$(PY) benchmarks/bench_model.py

clean:
	rm -rf $(VENV) .pytest_cache
