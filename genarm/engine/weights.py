"""Per-request reward weights: the ARM specs a deployment serves and the rules
that turn a request's ``reward_weights`` into one weight per ARM.

The same rules run at the HTTP edge, in the logits processor's
``validate_params`` (request admission) and in its ``update_state`` (worker).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

# Key of the request's weights in ``SamplingParams.extra_args``.
EXTRA_ARGS_KEY = "reward_weights"


class RewardWeightError(ValueError):
    """A request's reward weights are invalid; ``param`` names the offending field."""

    def __init__(self, message: str, param: str = EXTRA_ARGS_KEY) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class ArmSpec:
    """What a client needs to know about one ARM to build a slider for it."""

    name: str
    default_weight: float = 1.0
    min_weight: float = -5.0
    max_weight: float = 5.0
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArmSpec:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def resolve_reward_weights(
    specs: Sequence[ArmSpec], requested: Mapping[str, Any] | None
) -> dict[str, float]:
    """One float per ARM, in spec order: requested values, else each default.

    Raises RewardWeightError naming the ARM for unknown names, non-numbers,
    non-finite values and values outside [min_weight, max_weight].
    """
    if requested is None:
        requested = {}
    if not isinstance(requested, Mapping):
        raise RewardWeightError(
            f"'{EXTRA_ARGS_KEY}' must be an object mapping ARM names to numbers, "
            f"got {type(requested).__name__}"
        )
    by_name = {s.name: s for s in specs}
    unknown = [name for name in requested if name not in by_name]
    if unknown:
        served = ", ".join(by_name) or "none"
        raise RewardWeightError(
            f"unknown ARM {unknown[0]!r} in '{EXTRA_ARGS_KEY}'; this server's ARMs: {served}",
            param=f"{EXTRA_ARGS_KEY}.{unknown[0]}",
        )
    weights: dict[str, float] = {}
    for spec in specs:
        value = requested.get(spec.name, spec.default_weight)
        param = f"{EXTRA_ARGS_KEY}.{spec.name}"
        # bool is an int subclass; a JSON true is not a weight.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RewardWeightError(
                f"weight of ARM {spec.name!r} must be a number, got {type(value).__name__}",
                param=param,
            )
        try:
            value = float(value)
        except OverflowError:  # an integer beyond any float
            raise RewardWeightError(
                f"weight of ARM {spec.name!r} must be within "
                f"[{spec.min_weight}, {spec.max_weight}], got an integer of "
                f"{value.bit_length()} bits",
                param=param,
            ) from None
        if not math.isfinite(value):
            raise RewardWeightError(
                f"weight of ARM {spec.name!r} must be finite, got {value}", param=param
            )
        if not spec.min_weight <= value <= spec.max_weight:
            raise RewardWeightError(
                f"weight of ARM {spec.name!r} must be within "
                f"[{spec.min_weight}, {spec.max_weight}], got {value}",
                param=param,
            )
        weights[spec.name] = value
    return weights
