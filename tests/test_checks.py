"""bsrnn.checks, the one way settings are checked, and the option roles that model configs
declare on their fields (which decide what ``differences`` compares)."""

from __future__ import annotations

import dataclasses

import pytest

import bsrnn.checks as checks
from bsrnn.errors import ConfigError
from bsrnn.models.base import ModelConfig, option
from bsrnn.models.roformer import BSRoformerConfig
from bsrnn.models.scnet import SCNetConfig


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: checks.number("a.x", "3"), "invalid a.x='3': expected a number"),
        (lambda: checks.number("a.x", 0, above=0), "invalid a.x=0: expected a number > 0"),
        (lambda: checks.number("a.x", 1, minimum=0, below=1), r"expected a number in \[0, 1\)"),
        (lambda: checks.number("a.x", float("nan")), "invalid a.x=nan: expected a number"),
        (lambda: checks.integer("a.n", True, minimum=1), "invalid a.n=True: expected an integer"),
        (lambda: checks.integer("a.n", 0, minimum=1, optional=True), ">= 1 or null"),
        (lambda: checks.choice("a.c", "z", ("p", "q")), "invalid a.c='z': expected one of p, q"),
        (lambda: checks.boolean("a.b", 1), "invalid a.b=1: expected true or false"),
        (lambda: checks.probability("a.p", 1.5), r"a.p=1.5: expected a probability in \[0, 1\]"),
        (lambda: checks.names("a.s", "vocals"), "invalid a.s='vocals': expected a list of names"),
        (lambda: checks.integers("a.l", [1, 0], minimum=1), r"a.l=\[1, 0\]: expected .* >= 1"),
        (lambda: checks.ordered("a", "lo", 2, "hi", 1), "invalid a.lo=2 and hi=1: expected"),
    ],
)
def test_a_bad_value_is_one_line_naming_key_value_and_expectation(call, message):
    with pytest.raises(ConfigError, match=message) as err:
        call()
    assert "\n" not in str(err.value)


def test_good_values_come_back_typed():
    assert checks.number("x", 3) == 3.0 and isinstance(checks.number("x", 3), float)
    assert checks.integer("n", None, optional=True) is None
    assert checks.integers("l", [1, 2]) == (1, 2)
    assert checks.numbers("l", [1, 0.5], maximum=1) == (1.0, 0.5)


def test_option_roles_are_declared_on_the_fields():
    roles = BSRoformerConfig.option_roles()
    assert roles["segment"] == roles["use_torch_checkpoint"] == "runtime"
    assert roles["flash_attn"] == "unused"
    assert {k for k, r in roles.items() if r == "loss"} == {
        k for k in roles if k.startswith("multi_stft_")
    }
    assert "dim" in BSRoformerConfig.network_options()
    assert "segment" not in BSRoformerConfig.network_options()
    assert SCNetConfig.option_roles()["segment"] == "runtime"


def test_differences_ignore_options_that_are_not_network_options():
    base = BSRoformerConfig(dim=8, depth=1)
    other = dataclasses.replace(
        base, segment=8192, flash_attn=False, multi_stft_hop_size=256, use_torch_checkpoint=True
    )
    assert base.differences(other) == {}
    assert base.differences(dataclasses.replace(base, dim=16)) == {"dim": (8, 16)}
    scnet = SCNetConfig()
    assert scnet.differences(dataclasses.replace(scnet, segment=None)) == {}


def test_a_new_architecture_declares_its_roles_without_a_list():
    @dataclasses.dataclass(frozen=True)
    class ToyConfig(ModelConfig):
        width: int = 4
        chunk: int = option(100, role="runtime")

    a, b = ToyConfig(), ToyConfig(chunk=200)
    assert a.inert_options() == {"chunk"} and a.differences(b) == {}
    with pytest.raises(TypeError, match="role"):
        option(1, role="speed")
