"""OmegaConf containers to plain Python, for the code below the entry scripts (which receives
plain values and typed settings only)."""

from __future__ import annotations

from typing import Any


def to_plain(value: Any) -> Any:
    """A resolved plain-Python copy of an OmegaConf node (dict, list or value); anything else
    is returned as it is."""
    if type(value).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        if OmegaConf.is_config(value):
            return OmegaConf.to_container(value, resolve=True)
    return value
