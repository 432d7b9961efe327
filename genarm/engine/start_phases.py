"""The phases of an engine start, told across processes.

The model is loaded, compiled and given its KV cache in vLLM's worker process,
while ``/health`` answers in the API process. The front end names a file in
``GENARM_START_PHASES`` before it starts the engine; every process it spawns
inherits the variable, and the worker (rank 0) appends one JSON line per phase
it enters. The front end reads the last line to say where the start is, and
all of them at the end for the summary it logs. A file, not a pipe: nothing
has to read it for the worker to go on, and a crashed start leaves it to read.

Phases, in order (``PHASES``): ``tokenizer`` and ``engine processes`` (front
end: the engine-core and worker processes start and import vLLM), then
``worker set-up``, ``loading weights``, ``compiling`` (or loading compiled
graphs from the cache), ``KV cache``, ``warm-up`` (worker).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

ENV = "GENARM_START_PHASES"
# In the order a start goes through them (compiling only when compiled).
PHASES = (
    "tokenizer",
    "engine processes",
    "worker set-up",
    "loading weights",
    "compiling",
    "KV cache",
    "warm-up",
)


@dataclass(frozen=True)
class Phase:
    name: str
    started: float  # time.time() when it began
    detail: str = ""


def record(name: str, detail: str = "", log: logging.Logger = logger) -> None:
    """Append a phase to the file named in ``GENARM_START_PHASES`` (if any) and log it."""
    log.info("Start phase: %s%s", name, f" ({detail})" if detail else "")
    _append({"name": name, "started": time.time(), "detail": detail})


def outcome(detail: str, log: logging.Logger = logger) -> None:
    """What the current phase came to (e.g. graphs loaded vs compiled); logged and kept."""
    log.info("Start phase done: %s", detail)
    _append({"outcome": detail})


def _append(entry: dict) -> None:
    path = os.environ.get(ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")


def read(path: str | Path) -> list[Phase]:
    """The phases recorded so far, outcomes joined to their phase's detail.

    A half-written last line is skipped.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    phases: list[Phase] = []
    for line in lines:
        try:
            entry = json.loads(line)
            if "outcome" in entry and phases:
                last = phases[-1]
                detail = "; ".join(filter(None, [last.detail, entry["outcome"]]))
                phases[-1] = Phase(last.name, last.started, detail)
            else:
                phases.append(Phase(**entry))
        except (ValueError, TypeError, KeyError):
            continue
    return phases


def summary(phases: list[Phase], ended: float) -> str:
    """``loading weights 4.1 s, compiling 20.3 s (…), …``: each phase's duration."""
    parts = []
    for phase, following in zip(phases, [*phases[1:], None], strict=True):
        end = following.started if following is not None else ended
        detail = f" ({phase.detail})" if phase.detail else ""
        parts.append(f"{phase.name} {end - phase.started:.1f} s{detail}")
    return ", ".join(parts)
