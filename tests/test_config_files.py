"""Each default is written once: the YAML files of conf/ start from the settings dataclasses
(through the schemas ``cli.register_schemas`` stores) or from another file of their group, and
state only what they change."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
GROUPS = ("dset", "optim", "scheduler", "eval", "src_mod")
FILES = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


def _group(group: str, choice: str) -> dict:
    """The composed ``group`` node for ``group=choice``, interpolations unresolved."""
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("config", overrides=[f"{group}={choice}"])
    return OmegaConf.to_container(cfg[group], resolve=False)


def _changed(own: object, parent: object) -> bool:
    if isinstance(own, dict) and isinstance(parent, dict):
        return any(k not in parent or _changed(v, parent[k]) for k, v in own.items())
    return own != parent


@pytest.mark.parametrize(("group", "name"), FILES)
def test_no_file_restates_a_default_it_does_not_change(group, name):
    raw = OmegaConf.to_container(OmegaConf.load(CONF / group / f"{name}.yaml"), resolve=False)
    defaults = raw.pop("defaults", None)
    assert defaults and defaults[-1] == "_self_", f"{group}/{name}.yaml builds on nothing"
    parent = _group(group, defaults[0])
    restated = sorted(k for k, v in raw.items() if k in parent and not _changed(v, parent[k]))
    assert not restated, f"{group}/{name}.yaml restates its parent's {restated}"
