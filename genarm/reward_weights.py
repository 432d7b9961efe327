"""Reward weights, owned here: the ARMs a deployment serves (``ArmSpec``), the key
of a request's weights in ``SamplingParams.extra_args`` and the rules that turn
what a request asked for into one weight per ARM.

The way a request's weights travel (no other module repeats a rule):

1. The HTTP edge (or an offline ``LLM`` user) forwards the raw object:
   ``SamplingParams(extra_args=extra_args_for(requested))``.
2. vLLM admits the request through ``GenARMLogitsProcessor.validate_params``,
   the one place the rules run (``resolve_reward_weights``); a bad value is a
   400 naming the field, before the engine sees it.
3. The worker's ``update_state`` only reads the admitted values
   (``admitted_weights``): nothing there can fail a request or the engine.

The specs reach the processor on one route: ``processor_for(specs)``, built
from the deployment config (``arm_specs``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genarm.config import DeploymentConfig

# Key of the request's weights in ``SamplingParams.extra_args``.
EXTRA_ARGS_KEY = "reward_weights"


class RewardWeightError(ValueError):
    """A request's reward weights are invalid; ``param`` names the offending field."""

    def __init__(self, message: str, param: str = EXTRA_ARGS_KEY) -> None:
        super().__init__(message)
        self.param = param

    @property
    def parameter(self) -> str:
        """The name vLLM's validation errors give the same thing."""
        return self.param


@dataclass(frozen=True)
class ArmSpec:
    """One served ARM as clients see it (``/v1/models`` lists these as they are):
    enough to build a slider for it. Derived from the config by ``arm_specs``."""

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


def arm_specs(cfg: DeploymentConfig) -> list[ArmSpec]:
    """The ARMs a deployment serves, in config order (= weight order in the engine)."""
    return [
        ArmSpec(
            name=arm.name,
            default_weight=arm.default_weight,
            min_weight=arm.min_weight,
            max_weight=arm.max_weight,
            description=arm.description,
        )
        for arm in cfg.arms
    ]


# vLLM carries extra_args integers within these bounds only (msgspec's int64/uint64).
_EXTRA_ARGS_INT_RANGE = (-(2**63), 2**64 - 1)


def extra_args_for(requested: Any) -> dict[str, Any] | None:
    """``SamplingParams.extra_args`` carrying a request's raw weights (checked at admission).

    Integers past what vLLM can carry travel as floats (the weight they stand
    for); one past any float cannot travel at all and is refused here.
    """
    if requested is None:
        return None
    if isinstance(requested, Mapping):
        requested = {name: _carriable(name, value) for name, value in requested.items()}
    return {EXTRA_ARGS_KEY: requested}


def _carriable(name: str, value: Any) -> Any:
    low, high = _EXTRA_ARGS_INT_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or low <= value <= high:
        return value
    try:
        return float(value)
    except OverflowError:
        raise RewardWeightError(
            f"weight of ARM {name!r} is an integer of {value.bit_length()} bits, "
            "beyond any number a weight can be",
            param=f"{EXTRA_ARGS_KEY}.{name}",
        ) from None


def requested_weights(params: Any) -> Any:
    """The raw weights a ``SamplingParams`` carries (None: each ARM's default)."""
    return (params.extra_args or {}).get(EXTRA_ARGS_KEY)


def admitted_weights(specs: Sequence[ArmSpec], requested: Mapping[str, Any] | None) -> tuple:
    """One float per ARM of weights ``resolve_reward_weights`` has already accepted:
    a read, no checks (the worker's side, which must never fail)."""
    requested = requested or {}
    return tuple(float(requested.get(s.name, s.default_weight)) for s in specs)


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
