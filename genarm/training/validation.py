"""Held-out validation for `genarm train-arm`: the split and early stopping.

A reward model that fits its training pairs can still rank unseen pairs no
better than the base (and, as a guide, break the text): so a run keeps some
pairs back, measures pairwise accuracy on them at every evaluation, and keeps
the state that ranked them best rather than the last one. "Best" is the highest
accuracy by default, or the lowest validation loss (``select_by="loss"``): on a
few hundred pairs accuracy moves in steps of 1/n and can sit flat within its
noise while the loss, a smooth function of every pair's margin, still falls.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass

from genarm.training.preference_data import PreferencePair

SELECT_BY = ("accuracy", "loss")  # what makes an evaluation the best (Evaluation.score)


def _prompt_key(pair: PreferencePair) -> str:
    return json.dumps(pair.messages(), sort_keys=True)


def split_pairs(
    pairs: list[PreferencePair], fraction: float, seed: int
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(train, validation): about ``fraction`` of the prompts go to validation.

    Split by prompt, not by pair: several pairs drawn from one prompt (as
    `make-preferences --pairs-per-prompt` makes them) would otherwise let the
    validation set repeat what training saw. Order within each part follows
    ``pairs``; the same seed gives the same split.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    keys = list(dict.fromkeys(_prompt_key(p) for p in pairs))
    random.Random(seed).shuffle(keys)
    count = round(fraction * len(keys))
    if fraction > 0 and count == 0 and len(keys) > 1:
        count = 1  # a requested split is never silently empty
    held = set(keys[:count])
    train = [p for p in pairs if _prompt_key(p) not in held]
    return train, [p for p in pairs if _prompt_key(p) in held]


def share_won(margins: list[float]) -> float:
    """Fraction of pairs whose chosen reply wins (a tie does not); 0 for no pairs."""
    return sum(margin > 0 for margin in margins) / max(1, len(margins))


def pair_kind(pair: PreferencePair) -> str:
    """Which decision a pair teaches: ``stop`` (the chosen reply ends where the
    rejected one goes on, as make-preferences' stopping pairs), ``keep-going`` (the
    reverse), or ``whole`` (two replies that both ended, or were both cut)."""
    if pair.chosen_finished != pair.rejected_finished:
        return "stop" if pair.chosen_finished else "keep-going"
    return "whole"


def accuracy_by_kind(pairs: list[PreferencePair], margins: list[float]) -> dict[str, float]:
    """Share of pairs with a positive margin, over all of them (``all``) and per
    ``pair_kind`` where the pairs are of more than one kind: a stopping ARM's total
    hides a trade between ending at sentence ends and ending mid-sentence."""
    kinds = [pair_kind(p) for p in pairs]
    groups = {"all": margins}
    if len(set(kinds)) > 1:
        for kind in sorted(set(kinds)):
            groups[kind] = [m for m, k in zip(margins, kinds, strict=True) if k == kind]
    return {name: share_won(group) for name, group in groups.items()}


@dataclass
class Evaluation:
    """One validation pass: where in training, and how well it ranked the pairs."""

    step: int
    epoch: float
    accuracy: float
    loss: float
    eligible: bool = True  # False: the fluency or refusal guard rejected this state
    by_kind: dict[str, float] | None = None  # accuracy per pair_kind, where pairs mix kinds
    fluency: dict | None = None
    refusals: dict[str, float] | None = None  # per weight: share of refusal probes refused

    def score(self, select_by: str = "accuracy") -> tuple[float, float]:
        """Higher is better: accuracy first, then the lower validation loss; or, with
        ``select_by="loss"``, the lower loss first, then accuracy."""
        _check_select_by(select_by)
        if select_by == "loss":
            return (-self.loss, self.accuracy)
        return (self.accuracy, -self.loss)


def _check_select_by(select_by: str) -> None:
    if select_by not in SELECT_BY:
        raise ValueError(f"select_by must be one of {SELECT_BY}, got {select_by!r}")


@dataclass
class EarlyStopping:
    """Tracks the best evaluation; ``should_stop`` after ``patience`` evaluations
    in a row that did not beat it. ``patience`` 0 never stops early."""

    patience: int = 2
    best: Evaluation | None = None
    since_best: int = 0
    select_by: str = "accuracy"  # or "loss" (see Evaluation.score)

    def __post_init__(self) -> None:
        _check_select_by(self.select_by)  # an unknown selection fails before training

    def update(self, evaluation: Evaluation) -> bool:
        """Record ``evaluation``; True when it is the new best (save that state)."""
        improved = evaluation.eligible and (
            self.best is None or evaluation.score(self.select_by) > self.best.score(self.select_by)
        )
        if improved:
            self.best, self.since_best = evaluation, 0
        else:
            self.since_best += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.since_best >= self.patience

    def state(self) -> dict:
        best = asdict(self.best) if self.best else None
        return {"patience": self.patience, "best": best, "since_best": self.since_best}

    @classmethod
    def from_state(
        cls, state: dict | None, patience: int, select_by: str = "accuracy"
    ) -> EarlyStopping:
        """Resume; the patience and selection of the new run apply."""
        if not state:
            return cls(patience, select_by=select_by)
        best = Evaluation(**state["best"]) if state["best"] else None
        return cls(patience, best, state["since_best"], select_by)
