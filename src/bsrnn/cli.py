"""What the entry scripts share: the architecture schemas for Hydra, settings built once from the
config, and one way to end on an error.

Only the entry scripts (``train.py``, ``evaluate.py``, ``inference.py``, ``prep_dataset.py``)
import this module; everything below them receives typed settings and plain values.

- :func:`register_schemas`: puts every registered architecture's options, with the
  defaults of its typed config, into Hydra's ConfigStore as ``src_mod/_<arch>``, and the
  evaluation and chunking options as ``eval/_defaults``. The presets in ``conf/src_mod/`` and
  ``conf/eval/default.yaml`` start from them (``defaults: [_bsrnn, _self_]``), so each states
  only what differs, every option can be overridden on the command line, and a default is
  written once: in its settings dataclass.
- :func:`run_entry`: a domain error (:class:`~bsrnn.errors.BsrnnError`) prints one line and
  exits 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from bsrnn.errors import BsrnnError

log = logging.getLogger(__name__)

T = TypeVar("T")


def register_schemas() -> None:
    """Store ``src_mod/_<arch>`` (``arch``, ``name``, ``target`` and every option) and
    ``eval/_defaults`` (every EvalSettings and ChunkSettings option) for Hydra."""
    import dataclasses

    from hydra.core.config_store import ConfigStore

    from bsrnn.chunking import ChunkSettings
    from bsrnn.evaluation import EvalSettings
    from bsrnn.models import ARCHITECTURES

    store = ConfigStore.instance()
    eval_defaults = {**dataclasses.asdict(EvalSettings()), **ChunkSettings().to_mapping()}
    store.store(group="eval", name="_defaults", node=eval_defaults)
    for arch, spec in ARCHITECTURES.items():
        defaults = spec.config.defaults()
        node = {"arch": arch, "name": "???", "target": None, **defaults, "targets": None}
        node["sample_rate"] = "${sample_rate}"
        store.store(group="src_mod", name=f"_{arch}", node=node)


def plain(node: Any) -> Any:
    """A resolved plain-Python copy of an OmegaConf node (dict, list or value)."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return node


def run_entry(script: str, fn: Callable[[], T]) -> T:
    """Run ``fn``; a :class:`~bsrnn.errors.BsrnnError` prints ``<script>: error: <message>``
    on stderr and exits 1, any other exception prints its traceback and exits 1.
    ``HYDRA_FULL_ERROR=1`` re-raises everything."""
    try:
        return fn()
    except BsrnnError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        log.debug("%s failed", script, exc_info=True)
        sys.stderr.write(f"{script}: error: {err}\n")
        raise SystemExit(1) from None
    except Exception:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        traceback.print_exc()
        raise SystemExit(1) from None
