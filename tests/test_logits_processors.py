"""Both runners' GenARM processors, driven through vLLM's own interfaces.

The same scripted batches go to the V1 processor (``BatchUpdate``: adds into
holes, removals, moves that condense the batch) and to the Model Runner V2
one (``add_request`` into slots that new requests reuse, rows reordered every
step), with fresh random logits each step. Every guided row must match the
float64 reference (exactly where the row needs it, else up to a per-row
constant), and every unguided row must keep the base logits bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality
from vllm.v1.worker.gpu.sample.logits_processor import LogitsContext, LogitsProcRequestState

from genarm.engine.arm_logits_stash import arm_logits_stash
from genarm.engine.deployment_processor import processor_for
from genarm.reward_weights import ArmSpec, extra_args_for

from support import assert_close_to_reference

SPECS = (ArmSpec("arm_a", default_weight=0.0), ArmSpec("arm_b", default_weight=0.0))
VOCAB = 3001
MAX_REQS = 8


@dataclass(frozen=True)
class Request:
    weights: tuple[float, float]
    repetition_penalty: float = 1.0

    @property
    def params(self) -> SamplingParams:
        requested = dict(zip(("arm_a", "arm_b"), self.weights, strict=True))
        return SamplingParams(
            extra_args=extra_args_for(requested), repetition_penalty=self.repetition_penalty
        )

    @property
    def guided(self) -> bool:
        return any(self.weights)


# Each step: the requests in the batch (by id). Ids leave and arrive between steps.
REQUESTS = {
    "guided": Request((1.0, 0.0)),
    "plain": Request((0.0, 0.0)),
    "penalised": Request((0.5, -1.0), repetition_penalty=1.3),
    "second": Request((2.0, 0.25)),
    "late_plain": Request((0.0, 0.0)),
    "negative": Request((-2.0, 3.0)),
    "penalised_plain": Request((0.0, 0.0), repetition_penalty=1.5),
}
STEPS = [
    ["guided", "plain", "penalised"],
    ["guided", "penalised", "second"],  # "plain" leaves, "second" takes its place
    ["second", "late_plain"],  # two leave: the batch condenses; slots are reused
    ["late_plain"],  # nothing guided: the logits come back untouched
    ["late_plain", "negative", "penalised_plain"],  # a once-guided slot, now unguided
    ["negative", "penalised_plain", "guided"],  # an id seen before: a new request
]


def vllm_config(all_exact: bool) -> SimpleNamespace:
    """What the processors read of vLLM's config: the logprobs mode."""
    mode = "processed_logits" if all_exact else "processed_logprobs"
    return SimpleNamespace(model_config=SimpleNamespace(logprobs_mode=mode))


class V1Driver:
    """vLLM V1's persistent batch: adds fill holes, then the last rows move into holes."""

    def __init__(self, all_exact: bool) -> None:
        config = vllm_config(all_exact)
        self.processor = processor_for(SPECS, "v1")(config, torch.device("cpu"), False)
        self.rows: list[str | None] = []

    def step(self, batch: list[str]) -> list[str]:
        removed = [i for i, rid in enumerate(self.rows) if rid is not None and rid not in batch]
        for i in removed:
            self.rows[i] = None
        added = []
        for rid in batch:
            if rid in self.rows:
                continue
            index = self.rows.index(None) if None in self.rows else len(self.rows)
            if index == len(self.rows):
                self.rows.append(None)
            self.rows[index] = rid
            added.append((index, REQUESTS[rid].params, [], []))
        # As vLLM's BatchUpdateBuilder: a hole an add filled is no longer "removed".
        removed = [i for i in removed if self.rows[i] is None]
        moved = []
        while None in self.rows:
            while self.rows and self.rows[-1] is None:
                self.rows.pop()
            if None not in self.rows:
                break
            hole, last = self.rows.index(None), len(self.rows) - 1
            self.rows[hole], self.rows[last] = self.rows[last], None
            moved.append((last, hole, MoveDirectionality.UNIDIRECTIONAL))
        self.processor.update_state(BatchUpdate(len(self.rows), removed, added, moved))
        return list(self.rows)

    def apply(self, logits: torch.Tensor, _order: list[str]) -> torch.Tensor:
        return self.processor.apply(logits)


class V2Driver:
    """Model Runner V2: requests own slots (lowest free first); rows are in any order."""

    def __init__(self, all_exact: bool) -> None:
        config = vllm_config(all_exact)
        states = LogitsProcRequestState(
            device=torch.device("cpu"),
            max_num_reqs=MAX_REQS,
            vocab_size=VOCAB,
            all_token_ids=None,
            prompt_len=None,
            prefill_len=None,
            total_len=None,
        )
        self.processor = processor_for(SPECS, "v2")(config, states)
        self.slots: dict[str, int] = {}
        self.order = np.random.default_rng(0)

    def step(self, batch: list[str]) -> list[str]:
        for rid in [r for r in self.slots if r not in batch]:
            del self.slots[rid]  # V2 has no removal call: the slot is simply reused
        for rid in batch:
            if rid not in self.slots:
                free = min(set(range(MAX_REQS)) - set(self.slots.values()))
                self.slots[rid] = free
                self.processor.add_request(free, REQUESTS[rid].params)
        self.processor.apply_staged_writes()
        return [batch[i] for i in self.order.permutation(len(batch))]

    def apply(self, logits: torch.Tensor, order: list[str]) -> torch.Tensor:
        slots = np.array([self.slots[rid] for rid in order], dtype=np.int32)
        mapping = torch.from_numpy(slots).long()
        ctx = LogitsContext(
            expanded_idx_mapping=mapping,
            idx_mapping=mapping,
            idx_mapping_np=slots,
            expanded_local_pos=torch.zeros(len(order), dtype=torch.long),
            input_ids=torch.zeros(len(order), dtype=torch.long),
            pos=torch.zeros(len(order), dtype=torch.long),
            seq_lens_upper_bound_np=np.ones(len(order), dtype=np.int32),
        )
        return self.processor.apply(logits, ctx)


def expect_exact(request: Request, runner: str, all_exact: bool) -> bool:
    """V1 runs before vLLM's repetition penalty, V2 after it (nothing later cares)."""
    return all_exact or (runner == "v1" and request.repetition_penalty != 1.0)


@pytest.mark.parametrize("all_exact", [False, True], ids=["logprobs", "raw-logits-mode"])
@pytest.mark.parametrize("runner", ["v1", "v2"])
def test_processor_matches_reference_over_changing_batches(runner, all_exact):
    driver = (V1Driver if runner == "v1" else V2Driver)(all_exact)
    gen = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, ())))
    for step, batch in enumerate(STEPS):
        order = driver.step(batch)
        base = torch.randn(len(order), VOCAB, generator=gen) * 4
        base[:, 7] = -torch.inf  # a token vLLM masked before the processor
        arms = [torch.randn(len(order), VOCAB, generator=gen) * 4 for _ in SPECS]
        arms[1][:, 11] = -torch.inf  # ruled out by an ARM, under every kind of weight
        arm_logits_stash.put(arms)
        logits = base.clone()
        out = driver.apply(logits, order)
        for row, rid in enumerate(order):
            request, context = REQUESTS[rid], f"{runner} step {step} row {row} ({rid})"
            if not request.guided:
                assert torch.equal(out[row], base[row]), context
                continue
            weights = torch.tensor([request.weights])
            exact = expect_exact(request, runner, all_exact)
            rows = slice(row, row + 1)
            arm_rows = [arm[rows] for arm in arms]
            assert_close_to_reference(out[rows], base[rows], arm_rows, weights, context, exact)


def test_v2_slot_reuse_forgets_the_previous_weights():
    driver = V2Driver(all_exact=False)
    driver.processor.add_request(0, REQUESTS["negative"].params)
    driver.processor.add_request(0, REQUESTS["plain"].params)  # the next occupant
    driver.processor.apply_staged_writes()
    driver.slots = {"plain": 0}
    arm_logits_stash.put([torch.randn(1, VOCAB) for _ in SPECS])
    base = torch.randn(1, VOCAB)
    assert torch.equal(driver.apply(base.clone(), ["plain"]), base)


def test_v2_processor_class_pickles_with_its_runner():
    import pickle

    made = processor_for(SPECS, "v2")
    again = pickle.loads(pickle.dumps(made))
    assert again.runner == "v2" and again.specs == SPECS
    assert pickle.loads(pickle.dumps(processor_for(SPECS))).runner == "v1"
