"""The one way settings are checked: small functions that take a setting's full key and value
and return the value, typed (an int widened to float where a number is expected), or raise a
:class:`~bsrnn.errors.ConfigError` of one line, ``invalid <key>=<value!r>: expected <what>``.

Every settings dataclass (``RunSettings``' groups, ``DataSettings``, ``ChunkSettings``,
``EvalSettings``, the networks' configs) checks its fields with these in ``__post_init__``; the
components that receive the built settings do not check them again. Plain Python only (no
torch, no numpy): ``bsrnn.chunk_plan`` and the ONNX runtime import it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any, NoReturn

from bsrnn.errors import ConfigError


def fail(key: str, value: Any, expected: str) -> NoReturn:
    """Raise ``invalid <key>=<value!r>: expected <expected>``."""
    raise ConfigError(f"invalid {key}={value!r}: expected {expected}")


def _or_null(expected: str, optional: bool) -> str:
    return f"{expected} or null" if optional else expected


def _bounds(
    minimum: float | None, maximum: float | None, above: float | None, below: float | None
) -> str:
    """``>= 1``, ``> 0``, ``in [0, 1)``, ... (empty without bounds)."""
    low = (f"[{minimum:g}", minimum) if minimum is not None else None
    low = (f"({above:g}", above) if above is not None else low
    high = (f"{maximum:g}]", maximum) if maximum is not None else None
    high = (f"{below:g})", below) if below is not None else high
    if low and high:
        return f" in {low[0]}, {high[0]}"
    if low:
        return f" >= {minimum:g}" if above is None else f" > {above:g}"
    if high:
        return f" <= {maximum:g}" if below is None else f" < {below:g}"
    return ""


def _within(value: float, minimum, maximum, above, below) -> bool:
    return not (
        (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
        or (above is not None and value <= above)
        or (below is not None and value >= below)
    )


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def number(
    key: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    below: float | None = None,
    optional: bool = False,
    expected: str | None = None,
) -> float | None:
    """A finite number (as float) within the bounds (``minimum``/``maximum`` inclusive,
    ``above``/``below`` exclusive); None too when ``optional``. ``expected`` replaces the
    generated description in the message."""
    if value is None and optional:
        return None
    if not is_number(value) or not _within(value, minimum, maximum, above, below):
        what = expected or "a number" + _bounds(minimum, maximum, above, below)
        fail(key, value, _or_null(what, optional))
    return float(value)


def integer(
    key: str,
    value: Any,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    optional: bool = False,
    expected: str | None = None,
) -> int | None:
    """An int (not a bool) within ``[minimum, maximum]``; None too when ``optional``."""
    if value is None and optional:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not _within(value, minimum, maximum, None, None)
    ):
        what = expected or "an integer" + _bounds(minimum, maximum, None, None)
        fail(key, value, _or_null(what, optional))
    return int(value)


def probability(key: str, value: Any, *, optional: bool = False) -> float | None:
    """A number in [0, 1]."""
    return number(
        key, value, minimum=0.0, maximum=1.0, optional=optional, expected="a probability in [0, 1]"
    )


def boolean(key: str, value: Any) -> bool:
    """``true`` or ``false`` (not 0/1)."""
    if not isinstance(value, bool):
        fail(key, value, "true or false")
    return value


def choice(key: str, value: Any, choices: Sequence[str], *, optional: bool = False) -> str | None:
    """One of ``choices``; None too when ``optional``."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or value not in choices:
        fail(key, value, _or_null(f"one of {', '.join(choices)}", optional))
    return value


def text(key: str, value: Any, *, optional: bool = False, expected: str = "a non-empty string"):
    """A non-empty string; None too when ``optional``."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        fail(key, value, _or_null(expected, optional))
    return value


def path(
    key: str, value: Any, *, optional: bool = False, expected: str = "a path"
) -> str | os.PathLike | None:
    """A non-empty path (a string or ``os.PathLike``); None too when ``optional``."""
    if value is None and optional:
        return None
    if not isinstance(value, str | os.PathLike) or not str(value):
        fail(key, value, _or_null(expected, optional))
    return value


def names(key: str, value: Any, *, expected: str = "a list of names") -> tuple[str, ...]:
    """A list of non-empty strings, as a tuple."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        fail(key, value, expected)
    if not all(isinstance(v, str) and v for v in value):
        fail(key, list(value), expected)
    return tuple(value)


def integers(
    key: str,
    value: Any,
    *,
    minimum: int | None = None,
    length: int | None = None,
    expected: str | None = None,
) -> tuple[int, ...]:
    """A list of ints (each ``>= minimum``; ``length`` of them when given), as a tuple."""
    what = expected or (
        (f"{length} integers" if length is not None else "a list of integers")
        + _bounds(minimum, None, None, None)
    )
    if isinstance(value, str) or not isinstance(value, Sequence):
        fail(key, value, what)
    if (length is not None and len(value) != length) or not all(
        isinstance(v, int) and not isinstance(v, bool) and _within(v, minimum, None, None, None)
        for v in value
    ):
        fail(key, list(value), what)
    return tuple(int(v) for v in value)


def numbers(
    key: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    length: int | None = None,
    expected: str | None = None,
) -> tuple[float, ...]:
    """A list of finite numbers (within ``[minimum, maximum]``; ``length`` of them when
    given), as a tuple of floats."""
    what = expected or (
        (f"{length} numbers" if length is not None else "a list of numbers")
        + _bounds(minimum, maximum, None, None)
    )
    if isinstance(value, str) or not isinstance(value, Sequence):
        fail(key, value, what)
    if (length is not None and len(value) != length) or not all(
        is_number(v) and _within(v, minimum, maximum, None, None) for v in value
    ):
        fail(key, list(value), what)
    return tuple(float(v) for v in value)


def ordered(where: str, low_key: str, low: Any, high_key: str, high: Any) -> None:
    """``low <= high`` for a range given by two numeric settings ``<where>.<low_key>`` and
    ``<where>.<high_key>``."""
    if not (is_number(low) and is_number(high) and low <= high):
        raise ConfigError(
            f"invalid {where}.{low_key}={low!r} and {high_key}={high!r}: expected numbers, "
            f"{low_key} <= {high_key}"
        )
