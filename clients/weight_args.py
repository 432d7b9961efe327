"""Reward weights as people type them on command lines, parsed in one place.

    parse_reward_weights("harmless=1,concise=0.5")   # {"harmless": 1.0, "concise": 0.5}
    parse_weight_items(["harmless=1", "concise=0.5"])  # repeated --weight NAME=VALUE
    parse_weight_ranges("concise:-1:2")               # {"concise": (-1.0, 2.0)}

Only the syntax is checked here (a name, a finite number); whether an ARM of that
name exists and the value is within its range is the server's to say (and a
client's, once it has read ``/v1/models``). Errors are ``WeightArgError``, a
``ValueError`` whose message can be shown to the user as is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = [
    "WeightArgError",
    "parse_reward_weights",
    "parse_weight_item",
    "parse_weight_items",
    "parse_weight_ranges",
    "parse_weight_value",
]


class WeightArgError(ValueError):
    """A weight argument that cannot be sent."""


def parse_weight_value(text: str) -> float:
    """One weight: a finite number (the server refuses NaN and infinities anyway)."""
    try:
        value = float(text)
    except ValueError:
        raise WeightArgError(f"a weight must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise WeightArgError(f"a weight must be finite, got {text!r}")
    return value


def parse_weight_item(item: str) -> tuple[str, float]:
    """``"NAME=VALUE"`` -> (NAME, VALUE); spaces around the name are dropped."""
    name, sep, value = item.partition("=")
    if not sep or not name.strip():
        raise WeightArgError(f"expected NAME=VALUE, got {item!r}")
    return name.strip(), parse_weight_value(value)


def parse_weight_items(items: Iterable[str]) -> dict[str, float]:
    """Repeated ``NAME=VALUE`` arguments -> {NAME: VALUE}; a later one wins."""
    return dict(parse_weight_item(item) for item in items)


def parse_reward_weights(text: str | None) -> dict[str, float] | None:
    """``"a=1.0,b=-0.5"`` -> {"a": 1.0, "b": -0.5}; None or "" -> None (no weights
    given, so a request carries no ``reward_weights`` and the server's defaults apply)."""
    if not text:
        return None
    return parse_weight_items(text.split(","))


def parse_weight_ranges(text: str | None) -> dict[str, tuple[float, float]] | None:
    """``"a:0:2,b:-1:1"`` -> {"a": (0.0, 2.0), "b": (-1.0, 1.0)}; None or "" -> None."""
    if not text:
        return None
    out = {}
    for item in text.split(","):
        parts = item.split(":")
        if len(parts) != 3 or not parts[0].strip():
            raise WeightArgError(f"expected NAME:LO:HI, got {item!r}")
        lo, hi = parse_weight_value(parts[1]), parse_weight_value(parts[2])
        if lo > hi:
            raise WeightArgError(f"empty range in {item!r}")
        out[parts[0].strip()] = (lo, hi)
    return out
