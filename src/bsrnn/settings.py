"""The typed settings of a run, built once from the composed config before anything runs.

:func:`build_settings` turns the plain (resolved) config of ``train.py``, ``evaluate.py``,
``inference.py`` or ``prep_dataset.py`` into a :class:`RunSettings`: the network's typed config
(``src_mod``), :class:`~bsrnn.data.DataSettings` (``dset``),
:class:`~bsrnn.chunking.ChunkSettings` and :class:`~bsrnn.evaluation.EvalSettings` (``eval``),
:class:`OptimSettings` (``optim``) and :class:`SchedulerSettings` (``scheduler``). Every key of
every group is checked here, once: a bad value raises a :class:`~bsrnn.errors.ConfigError`
naming the key, the value and what is expected, and the components below receive built objects
that they do not check again.

The optimizer and the scheduler are ``_target_`` nodes (any ``torch.optim`` class, or one of
yours): their targets are imported, their keyword arguments checked against the constructor's
signature, and both are built once on a dummy parameter, so an error surfaces here rather than
after the first epoch.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import bsrnn.checks as checks
from bsrnn.errors import ConfigError, reject_unknown_keys

#: ``optim.monitor_val`` -> (logged metric, better direction).
MONITORS: dict[str, tuple[str, str]] = {"loss": ("val/loss", "min"), "sdr": ("val/usdr", "max")}
#: ``optim.val_loss`` choices: the reference's per-chunk median, or the whole assembled track.
VAL_LOSSES = ("chunks", "track")
#: ``scheduler.interval`` choices: step the scheduler once per epoch or per optimizer step.
INTERVALS = ("epoch", "step")
#: Keys of the ``scheduler`` group that configure how Lightning steps it, not its constructor.
SCHEDULER_RUN_KEYS = ("interval", "monitor", "frequency", "warmup_steps")


# --------------------------------------------------------------------------------------------
# Checking values
# --------------------------------------------------------------------------------------------
def _locate(key: str, target: Any) -> Callable[..., Any]:
    """The class or function a ``_target_`` names (ConfigError naming ``key`` otherwise)."""
    import importlib

    if not isinstance(target, str) or not target:
        raise ConfigError(f"invalid {key}={target!r}: expected a dotted import path")
    module_name, _, name = target.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), name)
        if not callable(found):
            raise TypeError(target)
        return found
    except (ImportError, AttributeError, TypeError, ValueError):
        raise ConfigError(
            f"invalid {key}={target!r}: cannot import it (expected a class such as "
            "torch.optim.Adam)"
        ) from None


def _check_kwargs(where: str, fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> None:
    """Each keyword of ``kwargs`` is a parameter of ``fn`` of the right kind: the kind of its
    default (a number, an integer, true/false, a list of numbers)."""
    params = inspect.signature(fn).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for key, value in kwargs.items():
        param = params.get(key)
        if param is None:
            if takes_any:
                continue
            valid = [n for n, p in params.items() if n not in ("self", "params", "optimizer")]
            raise ConfigError(
                f"unknown key {where}.{key}: {fn.__qualname__} takes {', '.join(valid)}"
            )
        default = param.default
        name = f"{where}.{key}"
        if isinstance(default, bool):
            checks.boolean(name, value)
        elif isinstance(default, int | float) and default is not None:
            checks.number(name, value)
        elif isinstance(default, tuple) and all(isinstance(d, int | float) for d in default):
            what = f"{len(default)} numbers, e.g. {list(default)}"
            checks.numbers(name, value, length=len(default), expected=what)
        elif param.annotation in (int, "int") and default is inspect.Parameter.empty:
            checks.integer(name, value, minimum=0)


def _build_once(where: str, build: Callable[[], Any]) -> Any:
    """Run ``build`` (the optimizer or scheduler on a dummy parameter): torch's own checks
    (e.g. ``Invalid learning rate``) become a ConfigError naming ``where``."""
    try:
        return build()
    except (TypeError, ValueError) as err:
        raise ConfigError(f"invalid {where}: {err}") from None


# --------------------------------------------------------------------------------------------
# optim
# --------------------------------------------------------------------------------------------
def _default_optimizer() -> dict[str, Any]:
    return {"_target_": "torch.optim.Adam"}


@dataclass(frozen=True)
class OptimSettings:
    """The ``optim`` group: learning rate, optimizer, loss, monitoring and early stopping.

    ``optimizer``: a ``_target_`` node (``torch.optim.Adam`` by default) and its keyword
    arguments other than ``lr`` (``lr`` is this group's, scaled by ``scale_lr``).
    ``loss_type`` L1/MSE, ``loss_domain`` ``t``/``tf``/``t+tf``/``t+mrstft`` (each null: the
    network's own, :attr:`~bsrnn.models.SeparationModel.loss_preference`);
    ``masked_mse``: MSST's quantile-masked waveform MSE with ``loss_q`` and ``loss_coarse``
    (:class:`~bsrnn.losses.MaskedMSELoss`). ``ema_momentum``: an exponential moving average
    of the weights (null: none), used for validation, checkpoints and separation.
    ``monitor_val`` ``loss``/``sdr``: checkpoint choice and early stopping (``patience``
    epochs; null: none). ``val_loss`` ``chunks`` (the reference's) or ``track``. ``scale_lr``: the
    reference's rule, ``lr * batch_size * devices * accumulate_grad_batches / 16``.
    """

    lr: float = 5.0e-4
    optimizer: Mapping[str, Any] = field(default_factory=_default_optimizer)
    loss_type: str | None = None
    loss_domain: str | None = None
    monitor_val: str = "loss"
    val_loss: str = "chunks"
    max_epochs: int = 100
    patience: int | None = 10
    grad_clip_norm: float | None = 5.0
    accumulate_grad_batches: int = 1
    scale_lr: bool = False
    loss_q: float = 0.95
    loss_coarse: bool = True
    ema_momentum: float | None = None

    def __post_init__(self) -> None:
        from bsrnn.losses import L1_LOSS_DOMAINS, LOSS_BUILDERS, LOSS_DOMAINS, MASKED_MSE

        set_ = functools.partial(object.__setattr__, self)
        set_("lr", checks.number("optim.lr", self.lr, minimum=0.0))
        checks.choice("optim.loss_type", self.loss_type, tuple(LOSS_BUILDERS), optional=True)
        q = checks.number(
            "optim.loss_q", self.loss_q, above=0, maximum=1, expected="a quantile in (0, 1]"
        )
        set_("loss_q", q)
        checks.boolean("optim.loss_coarse", self.loss_coarse)
        momentum = checks.number(
            "optim.ema_momentum", self.ema_momentum, above=0, below=1, optional=True
        )
        set_("ema_momentum", momentum)
        if self.loss_type == MASKED_MSE and self.loss_domain not in (None, "t"):
            raise ConfigError(
                f"invalid optim.loss_domain={self.loss_domain!r} with optim.loss_type="
                f"{MASKED_MSE}: MSST's masked loss is on the waveform (null or t)"
            )
        if self.loss_domain is not None:
            checks.choice("optim.loss_domain", self.loss_domain, LOSS_DOMAINS + L1_LOSS_DOMAINS)
            if self.loss_domain in L1_LOSS_DOMAINS and self.loss_type not in (None, "L1"):
                raise ConfigError(
                    f"invalid optim.loss_type={self.loss_type!r} with optim.loss_domain="
                    f"{self.loss_domain!r}: MSST's loss is L1 (optim.loss_type=L1)"
                )
        checks.choice("optim.monitor_val", self.monitor_val, tuple(MONITORS))
        checks.choice("optim.val_loss", self.val_loss, VAL_LOSSES)
        checks.integer("optim.max_epochs", self.max_epochs, minimum=1)
        checks.integer("optim.patience", self.patience, minimum=1, optional=True)
        clip = checks.number("optim.grad_clip_norm", self.grad_clip_norm, above=0, optional=True)
        set_("grad_clip_norm", clip)
        checks.integer("optim.accumulate_grad_batches", self.accumulate_grad_batches, minimum=1)
        checks.boolean("optim.scale_lr", self.scale_lr)
        node = self.optimizer
        if not isinstance(node, Mapping) or "_target_" not in node:
            checks.fail(
                "optim.optimizer",
                node,
                "a mapping with a _target_ (e.g. torch.optim.Adam) and its keyword arguments",
            )
        kwargs = {k: v for k, v in node.items() if k not in ("_target_", "_partial_")}
        if "lr" in kwargs:
            raise ConfigError(
                "optim.optimizer.lr is set: set the learning rate with optim.lr (it is scaled "
                "by optim.scale_lr and passed to the optimizer)"
            )
        cls = _locate("optim.optimizer._target_", node["_target_"])
        _check_kwargs("optim.optimizer", cls, kwargs)
        set_("optimizer", dict(node))
        self.optimizer_factory(self.lr)  # torch's own checks, before anything runs

    @property
    def monitor_key(self) -> str:
        """The logged metric that checkpointing and early stopping follow."""
        return MONITORS[self.monitor_val][0]

    @property
    def monitor_mode(self) -> str:
        """``min`` or ``max``: which way ``monitor_key`` is better."""
        return MONITORS[self.monitor_val][1]

    def optimizer_factory(self, lr: float) -> Callable[..., Any]:
        """``factory(params) -> Optimizer`` with learning rate ``lr`` (checked on a dummy
        parameter)."""
        import torch

        cls = _locate("optim.optimizer._target_", self.optimizer["_target_"])
        kwargs = {k: v for k, v in self.optimizer.items() if k not in ("_target_", "_partial_")}
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
        factory = functools.partial(cls, lr=float(lr), **kwargs)
        _build_once("optim.optimizer", lambda: factory([torch.nn.Parameter(torch.zeros(1))]))
        return factory


# --------------------------------------------------------------------------------------------
# scheduler
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SchedulerSettings:
    """The ``scheduler`` group: a ``_target_`` node (a ``torch.optim.lr_scheduler`` class and
    its arguments) and how Lightning steps it: every ``interval`` (``epoch``/``step``) x
    ``frequency``, following the logged ``monitor`` when it is a ``ReduceLROnPlateau``.
    ``warmup_steps``: the learning rate rises linearly from 0 over the first optimizer steps.
    """

    node: Mapping[str, Any] | None = None
    interval: str = "epoch"
    monitor: str = "val/loss"
    frequency: int = 1
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        checks.choice("scheduler.interval", self.interval, INTERVALS)
        checks.text(
            "scheduler.monitor", self.monitor, expected="a logged metric name (val/loss, val/usdr)"
        )
        checks.integer("scheduler.frequency", self.frequency, minimum=1)
        checks.integer("scheduler.warmup_steps", self.warmup_steps, minimum=0)
        if self.node is not None:
            kwargs = {k: v for k, v in self.node.items() if k not in ("_target_", "_partial_")}
            cls = _locate("scheduler._target_", self.node.get("_target_"))
            _check_kwargs("scheduler", cls, kwargs)
            self.factory()  # the constructor's own checks

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> SchedulerSettings:
        """From the ``scheduler`` group (null or ``{}``: no scheduler, only the run keys)."""
        if mapping is None:
            return cls()
        if not isinstance(mapping, Mapping):
            checks.fail("scheduler", mapping, "a mapping")
        run = {k: mapping[k] for k in SCHEDULER_RUN_KEYS if k in mapping}
        node = {k: v for k, v in mapping.items() if k not in SCHEDULER_RUN_KEYS}
        return cls(node=node or None, **run)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The run keys with their defaults (the base of every ``scheduler`` preset)."""
        return {f.name: f.default for f in fields(cls) if f.name != "node"}

    @property
    def is_plateau(self) -> bool:
        import torch

        node = self.node or {}
        target = _locate("scheduler._target_", node.get("_target_")) if node else None
        return isinstance(target, type) and issubclass(
            target, torch.optim.lr_scheduler.ReduceLROnPlateau
        )

    def factory(self) -> Callable[..., Any] | None:
        """``factory(optimizer) -> LRScheduler`` (checked on a dummy optimizer), or None."""
        if self.node is None:
            return None
        import torch

        cls = _locate("scheduler._target_", self.node["_target_"])
        kwargs = {k: v for k, v in self.node.items() if k not in ("_target_", "_partial_")}
        factory = functools.partial(cls, **kwargs)
        dummy = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        _build_once("scheduler", lambda: factory(dummy))
        return factory


# --------------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------------
#: Top-level keys of conf/config.yaml and what each must be.
_TOP_LEVEL = {
    "seed": "an integer",
    "out_dir": "a folder",
    "sample_rate": "an integer",
    "targets": "a list of stem names",
    "offset": "seconds",
    "max_len": "seconds or null",
    "fast_tr": "true or false",
    "ckpt_path": "a checkpoint path, last or auto",
    "tb_dir": "a folder",
    "tb_version": "a name or null",
    "model_dir": "a model folder or null",
}


@dataclass(frozen=True)
class RunSettings:
    """Everything a run needs, typed and checked: ``arch`` and ``model`` (the ``src_mod``
    preset's architecture and typed config; ``preset``: its plain options), ``data``,
    ``chunking``, ``eval``, ``optim``, ``scheduler``, and the top-level values (``targets``:
    the stems evaluate.py and inference.py separate; ``model_dir``: a folder of
    self-describing checkpoints that replaces the preset)."""

    arch: str
    model: Any
    preset: Mapping[str, Any]
    data: Any
    chunking: Any
    eval: Any
    optim: OptimSettings
    scheduler: SchedulerSettings
    seed: int
    out_dir: str
    targets: tuple[str, ...]
    fast_tr: bool = False
    ckpt_path: str | None = None
    tb_dir: str = "tb_logs/"
    tb_version: str | int | None = None
    model_dir: str | None = None
    preset_name: str = ""
    offset: float = 0.0
    max_len: float | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def stems(self) -> list[str] | None:
        """The stems evaluate.py and inference.py separate: ``targets`` when set; else every
        stem of ``model_dir`` (None) or of a multi-target preset; else, for a per-target
        preset, the dataset's sources that have a checkpoint in ``<out_dir>/<name>/`` (all of
        them when none has, or with random weights: the error then names the missing file)."""
        if self.targets:
            return list(self.targets)
        if self.model_dir is not None:
            return None
        if len(self.model.targets) > 1:
            return list(self.model.targets)
        from bsrnn.paths import checkpoint_path

        folder = f"{self.out_dir}/{self.model_name}"
        trained = [s for s in self.data.sources if checkpoint_path(folder, [s]).is_file()]
        if self.eval.allow_random_weights or not trained:
            return list(self.data.sources)
        return trained

    @property
    def model_name(self) -> str:
        """The preset's ``name`` (outputs/<name>/), or the model folder's name."""
        if self.model_dir is not None:
            from pathlib import Path

            return Path(self.model_dir).name
        return self.preset_name or self.arch


def build_settings(config: Mapping[str, Any]) -> RunSettings:
    """Check every group of the resolved, plain ``config`` and build :class:`RunSettings`.

    Keys added with ``+key=value`` that an entry script reads itself (``file_path``,
    ``rec_dir``) are kept in ``extra``.
    """
    from bsrnn.chunking import ChunkSettings
    from bsrnn.data import DataSettings
    from bsrnn.evaluation import EvalSettings
    from bsrnn.models import model_config

    config = dict(config)
    for group in ("src_mod", "dset", "eval", "optim"):
        if not isinstance(config.get(group), Mapping):
            raise ConfigError(f"the config has no {group} group (a mapping)")
    preset = dict(config["src_mod"])
    arch, model = model_config(preset)
    data = DataSettings.from_mapping(config["dset"])
    eval_cfg = dict(config["eval"])
    chunking = ChunkSettings.from_mapping(eval_cfg)
    evaluation = EvalSettings.from_mapping(eval_cfg)
    optim_cfg = dict(config["optim"])
    reject_unknown_keys(optim_cfg, [f.name for f in fields(OptimSettings)], "optim")
    optim = OptimSettings(**optim_cfg)
    scheduler = SchedulerSettings.from_mapping(config.get("scheduler"))
    if optim.loss_type == "masked_mse" and data.batch_size == 1:
        raise ConfigError(
            "optim.loss_type=masked_mse with dset.batch_size=1: MSST's masked loss keeps what "
            "lies below the quantile over the batch, which is nothing with one item (always 0)"
            "; use dset.batch_size >= 2 or optim.loss_type=MSE"
        )

    # the run's seed: the top-level key (which dset.seed follows), by default dset's own
    seed = checks.integer("seed", config.get("seed", data.seed), minimum=0)
    targets = config.get("targets") or []
    if isinstance(targets, str):
        targets = [targets]
    targets = checks.names("targets", targets, expected=_TOP_LEVEL["targets"])
    offset = checks.number("offset", config.get("offset") or 0.0, minimum=0.0)
    max_len = checks.number("max_len", config.get("max_len"), above=0, optional=True)
    fast_tr = checks.boolean("fast_tr", config.get("fast_tr", False))
    for key in ("out_dir", "tb_dir"):
        checks.text(key, config.get(key), expected=_TOP_LEVEL[key])
    for key in ("ckpt_path", "model_dir"):
        checks.text(key, config.get(key), optional=True, expected=_TOP_LEVEL[key])
    extra = {k: v for k, v in config.items() if k not in _TOP_LEVEL and not _is_group(k)}
    return RunSettings(
        arch=arch,
        model=model,
        preset=preset,
        data=data,
        chunking=chunking,
        eval=evaluation,
        optim=optim,
        scheduler=scheduler,
        seed=seed,
        out_dir=str(config["out_dir"]),
        targets=tuple(targets),
        fast_tr=fast_tr,
        ckpt_path=config.get("ckpt_path"),
        tb_dir=str(config["tb_dir"]),
        tb_version=config.get("tb_version"),
        model_dir=config.get("model_dir"),
        preset_name=str(preset.get("name") or arch),
        offset=offset,
        max_len=max_len,
        extra=extra,
    )


def _is_group(key: str) -> bool:
    return key in ("src_mod", "dset", "eval", "optim", "scheduler", "trainer", "hydra")


def optim_defaults() -> dict[str, Any]:
    """Every ``optim`` key with its default (the base of ``conf/optim/*.yaml``)."""
    out = {}
    for f in fields(OptimSettings):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        out[f.name] = default
    return out
