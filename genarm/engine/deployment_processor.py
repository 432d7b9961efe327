"""The processor class a deployment hands to vLLM: the runner's GenARM processor
(``logits_processor`` for V1, ``logits_processor_v2`` for V2) bound to the
deployment's ARM specs. It lives apart from both so that V2, which reuses V1's
row helpers, imports V1 and never the other way round.
"""

from __future__ import annotations

import copyreg
from abc import ABCMeta
from collections.abc import Sequence

from genarm.engine.logits_processor import GenARMLogitsProcessor, Runner
from genarm.reward_weights import ArmSpec

__all__ = ["processor_for"]


class _DeploymentBound(ABCMeta):
    """Metaclass of the processor classes ``processor_for`` makes: one per ARM set."""


def processor_for(specs: Sequence[ArmSpec], runner: Runner = "v1") -> type:
    """The processor class for a deployment serving ``specs`` on vLLM's ``runner``.

    The specs ride on the class because vLLM gives ``validate_params`` (a
    classmethod, run in the front-end process at admission) nothing else; the
    same class is what vLLM ships to its engine processes, so both sides see
    one ARM list, with no process-global state (two deployments in one process
    keep theirs apart).
    """
    if runner == "v2":
        from genarm.engine.logits_processor_v2 import GenARMLogitsProcessorV2 as base
    else:
        base = GenARMLogitsProcessor
    return _DeploymentBound(base.__name__, (base,), {"specs": tuple(specs)})


# vLLM's CPU build spawns its engine processes and pickles the config, this class
# with it: pickle would look a made class up by name and fail, so it is rebuilt
# from its specs instead.
copyreg.pickle(_DeploymentBound, lambda cls: (processor_for, (cls.specs, cls.runner)))
