"""What the entry scripts share: the settings schemas for Hydra, the run's typed settings built
once from the config, and one way to end on an error.

Only the entry scripts (``train.py``, ``evaluate.py``, ``inference.py``, ``prep_dataset.py``)
import this module; everything below them receives typed settings and plain values.

- :func:`register_schemas`: puts the defaults of every settings dataclass into Hydra's
  ConfigStore: ``src_mod/_<arch>`` (each registered architecture's typed config),
  ``dset/_defaults`` (:class:`~bsrnn.data.DataSettings`), ``optim/_defaults``
  (:class:`~bsrnn.settings.OptimSettings`), ``scheduler/_defaults``
  (:class:`~bsrnn.settings.SchedulerSettings`), ``dset/_toy_generator`` (the stand-in
  generator's :class:`~bsrnn.data.toy.ToyParams`) and ``eval/_defaults``
  (:class:`~bsrnn.evaluation.EvalSettings` and :class:`~bsrnn.chunking.ChunkSettings`), and
  ``_run_defaults`` (top level: the run's ``seed``, whose default is ``DataSettings.seed``). The
  YAML files of ``conf/`` start from them (``defaults: [_defaults, _self_]``), so each states
  only what differs, every option can be overridden on the command line, and a default is
  written once: in its dataclass.
- :func:`settings_from_config`: the run's :class:`~bsrnn.settings.RunSettings` from the
  composed config, every key checked once.
- :func:`run_entry`: a domain error (:class:`~bsrnn.errors.BsrnnError`) prints one line and
  exits 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bsrnn.errors import BsrnnError, ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")


def _yaml_value(value: Any) -> Any:
    """Plain values a Hydra schema holds (paths as text, tuples as lists)."""
    if isinstance(value, dict):
        return {k: _yaml_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_yaml_value(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def register_schemas() -> None:
    """Store the defaults of every settings group in Hydra's ConfigStore (see the module)."""
    from hydra.core.config_store import ConfigStore

    from bsrnn.chunking import ChunkSettings
    from bsrnn.data import DataSettings
    from bsrnn.data.toy import ToyParams
    from bsrnn.evaluation import EvalSettings
    from bsrnn.models import registered
    from bsrnn.settings import SchedulerSettings, optim_defaults

    store = ConfigStore.instance()
    eval_defaults = {**dataclasses.asdict(EvalSettings()), **ChunkSettings().to_mapping()}
    store.store(group="eval", name="_defaults", node=_yaml_value(eval_defaults))
    data_defaults = _yaml_value(dataclasses.asdict(DataSettings()))
    # the run's seed defaults to the dataset's (one default), and dset.seed follows the run's
    store.store(name="_run_defaults", node={"seed": data_defaults["seed"]})
    data_defaults.update(sample_rate="${sample_rate}", seed="${seed}")
    store.store(group="dset", name="_defaults", node=data_defaults)
    toy = _yaml_value(dataclasses.asdict(ToyParams()))
    store.store(group="dset", name="_toy_generator", node={"toy": toy})
    store.store(group="optim", name="_defaults", node=_yaml_value(optim_defaults()))
    store.store(group="scheduler", name="_defaults", node=SchedulerSettings.defaults())
    for arch, spec in registered().items():
        defaults = spec.config.defaults()
        node = {"arch": arch, "name": "???", "target": None, **defaults, "targets": None}
        node["sample_rate"] = "${sample_rate}"
        store.store(group="src_mod", name=f"_{arch}", node=node)


def config_to_plain(cfg: Any) -> dict[str, Any]:
    """The whole composed config as plain Python, its interpolations resolved (a ConfigError
    naming the key when one cannot be)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "the config"
        raise ConfigError(f"cannot resolve {key}: {err.msg}") from None


def settings_from_config(cfg: Any):
    """The run's :class:`~bsrnn.settings.RunSettings` from the composed (Hydra) config: its
    interpolations resolved, then every key of every group checked once
    (:func:`bsrnn.settings.build_settings`), before anything runs."""
    from bsrnn.settings import build_settings

    return build_settings(config_to_plain(cfg))


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
