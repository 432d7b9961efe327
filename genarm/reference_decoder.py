"""GenARM decoded with plain transformers (no vLLM): the one reference decoder.

    log π(y | x) = log_softmax( log p_base(y|x) + Σ_i α_i log p_arm_i(y|x) )

``GenARMReference.decode`` runs the base and every ARM on the same tokens, each
with its own KV cache (``kv_cache=True``: incremental, as the research code
decodes) or recomputing the whole sequence at each step (``kv_cache=False``),
for one prompt or a left-padded batch with per-row weights, greedily or by
sampling ``softmax(scores / T)``. A model of the formula is a transformers
causal LM (a folder, ``load_causal_lm`` arguments, or a loaded model) or one
adapter of a PEFT model (``Adapter``). ARM logits are brought to the base's
width by ``genarm.vocab.align_vocab``, as in the vLLM composite model.

The fused step is ``genarm.arm_kernels``': ``fuse_reference`` (float64, then
normalised) by default, ``fuse`` with ``fusion_dtype=torch.float32``.

Its users (the serving engine never imports it):
- the tests' oracle: ``next_token_logprobs`` and ``greedy`` recompute the whole
  sequence in float64, slow on purpose, with nothing cached that could hide a
  bug; every fast path (the engine, the server's logprobs) is tested against it;
- the training evaluation, ``genarm.training.guided`` (KV cache, float32, the
  base and the ARMs as adapters of one PEFT model);
- the research-style baseline, ``benchmarks.research_baseline`` (KV cache,
  batched, with the authors' own formula in place of ``fuse_step``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from genarm.arm_kernels import fuse, fuse_reference
from genarm.vocab import align_vocab

# One request's weights: by ARM name (missing names: 0), in ARM order, or None (all 0).
RowWeights = Mapping[str, float] | Sequence[float] | None


def load_causal_lm(
    model: str | None = None,
    adapter: str | None = None,
    adapter_base: str | None = None,
    dtype: torch.dtype = torch.float32,
):
    """A full model folder, or a PEFT LoRA adapter merged into its base
    (``adapter_base``), as the deployment config describes an ARM."""
    from transformers import AutoModelForCausalLM

    if adapter is None:
        return AutoModelForCausalLM.from_pretrained(model, dtype=dtype).eval()
    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(adapter_base, dtype=dtype)
    return PeftModel.from_pretrained(base, adapter).merge_and_unload().eval()


@dataclass(frozen=True)
class Adapter:
    """One model of the formula as an adapter of a loaded PEFT model.

    ``name``: the adapter to activate; None: the model with its adapters
    disabled (the base the adapters were trained on).
    """

    model: Any
    name: str | None = None

    def active(self):
        """Context in which ``model`` computes this component."""
        if self.name is None:
            if hasattr(self.model, "disable_adapter"):
                return self.model.disable_adapter()
            return contextlib.nullcontext()
        self.model.set_adapter(self.name)
        return contextlib.nullcontext()

    def __call__(self, **inputs):
        with self.active():
            return self.model(**inputs)

    def eval(self) -> Adapter:
        self.model.eval()
        return self


@dataclass
class Generation:
    """One row's result: token ids and their timings (perf_counter seconds)."""

    token_ids: list[int] = field(default_factory=list)
    token_times: list[float] = field(default_factory=list)
    start_time: float = 0.0


def _load(spec, dtype: torch.dtype):
    if isinstance(spec, str | Path):
        return load_causal_lm(model=str(spec), dtype=dtype)
    if isinstance(spec, Mapping):
        return load_causal_lm(**spec, dtype=dtype)
    return spec.eval()


def _device(component) -> torch.device:
    model = component.model if isinstance(component, Adapter) else component
    return next(model.parameters()).device


class GenARMReference:
    """A base model and ARMs loaded with transformers, combined per GenARM.

    ``base`` and each ARM: a model folder, a dict of ``load_causal_lm``
    arguments, a loaded model, or an ``Adapter``. ``arms``: a sequence (weights
    then go in that order) or a mapping name -> model (weights by name too).
    """

    # ARMs whose weight is 0 in every row of a call are not run (nothing to add).
    skip_zero_weight_arms = True

    def __init__(
        self,
        base,
        arms: Sequence[Any] | Mapping[str, Any] = (),
        dtype: torch.dtype = torch.float32,
        *,
        fusion_dtype: torch.dtype = torch.float64,
        pad_id: int | None = None,
    ) -> None:
        if fusion_dtype not in (torch.float64, torch.float32):
            raise ValueError(f"fusion_dtype must be float64 or float32, not {fusion_dtype}")
        self.base = _load(base, dtype)
        if isinstance(arms, Mapping):
            self.arm_names = [str(name) for name in arms]
            arms = list(arms.values())
        else:
            self.arm_names = [str(i) for i in range(len(arms))]
        self.arms = [_load(spec, dtype) for spec in arms]
        self.fusion_dtype = fusion_dtype
        if pad_id is None:  # the id under the left padding's mask: any id does
            model = self.base.model if isinstance(self.base, Adapter) else self.base
            pad_id = getattr(model.config, "pad_token_id", None)
            pad_id = getattr(model.config, "eos_token_id", None) if pad_id is None else pad_id
            pad_id = pad_id[0] if isinstance(pad_id, list) else pad_id
        self.pad_id = 0 if pad_id is None else int(pad_id)

    def weight_matrix(
        self, weights: Sequence[RowWeights] | Mapping[str, float] | None, rows: int
    ) -> torch.Tensor:
        """float64 [rows, K]; ``weights``: one entry per row, or one mapping (or None) for all."""
        if weights is None or isinstance(weights, Mapping):
            weights = [weights] * rows
        if len(weights) != rows:
            raise ValueError(f"need weights for {rows} rows, got {len(weights)}")
        alpha = torch.zeros(rows, len(self.arms), dtype=torch.float64)
        for r, row in enumerate(weights):
            if isinstance(row, Mapping):
                for name, value in row.items():
                    if name not in self.arm_names:
                        raise KeyError(f"unknown ARM {name!r}; ARMs: {self.arm_names}")
                    alpha[r, self.arm_names.index(name)] = float(value)
            elif row is not None:
                if len(row) != len(self.arms):
                    raise ValueError(f"need {len(self.arms)} weights, got {len(row)}")
                alpha[r] = torch.tensor([float(w) for w in row], dtype=torch.float64)
        return alpha

    def fuse_step(
        self, base_logits: torch.Tensor, arm_logits: Sequence[torch.Tensor], weights: torch.Tensor
    ) -> torch.Tensor:
        """Scores [B, V] whose softmax is the guided next-token distribution.

        ``arm_logits``: each ARM's own logits (any width); ``weights``: float64 [B, K].
        float64: ``fuse_reference``, normalised (log-probabilities); float32: ``fuse``.
        """
        width = base_logits.shape[-1]
        arms = [align_vocab(logits, width) for logits in arm_logits]
        weights = weights.to(base_logits.device)
        if self.fusion_dtype == torch.float64:
            return torch.log_softmax(fuse_reference(base_logits, arms, weights), dim=-1)
        return fuse(base_logits, arms, weights)

    @torch.inference_mode()
    def decode(
        self,
        prompts: Sequence[Sequence[int]],
        weights: Sequence[RowWeights] | Mapping[str, float] | None = None,
        max_new_tokens: int = 32,
        *,
        temperature: float = 0.0,
        kv_cache: bool = True,
        stop_ids: Collection[int] = (),
        generator: torch.Generator | None = None,
    ) -> list[Generation]:
        """Decode token-id prompts together (left-padded), one ``Generation`` per prompt.

        Greedy at ``temperature <= 0``, else sampled from ``softmax(scores / T)``.
        A row ends after a token of ``stop_ids`` (kept in its ``token_ids``); a
        finished row decodes padding until every row is done, as HF ``generate``.
        """
        rows = len(prompts)
        alpha = self.weight_matrix(weights, rows)
        start = time.perf_counter()
        running = [
            k
            for k in range(len(self.arms))
            if not self.skip_zero_weight_arms or bool(alpha[:, k].any())
        ]
        models = [self.base, *(self.arms[k] for k in running)]
        alpha = alpha[:, running]
        device = _device(self.base)
        width = max(len(p) for p in prompts)
        input_ids = torch.full((rows, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((rows, width), dtype=torch.long)
        for r, p in enumerate(prompts):
            input_ids[r, width - len(p) :] = torch.tensor(list(p))
            mask[r, width - len(p) :] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        caches: list[Any] = [None] * len(models)
        out = [Generation(start_time=start) for _ in range(rows)]
        done = [False] * rows
        for _step in range(max_new_tokens):
            # Each model in turn on the same tokens, with its own cache.
            logits = []
            for m, model in enumerate(models):
                if kv_cache:
                    res = model(
                        input_ids=input_ids,
                        attention_mask=mask,
                        position_ids=positions,
                        past_key_values=caches[m],
                        use_cache=True,
                    )
                    caches[m] = res.past_key_values
                else:
                    res = model(
                        input_ids=input_ids,
                        attention_mask=mask,
                        position_ids=positions,
                        use_cache=False,
                    )
                logits.append(res.logits[:, -1, :])
            scores = self.fuse_step(logits[0], logits[1:], alpha)
            next_ids = _pick(scores, temperature, generator).to(device)
            tokens = next_ids.tolist()
            now = time.perf_counter()
            for r, token in enumerate(tokens):
                if done[r]:
                    next_ids[r] = self.pad_id
                    continue
                out[r].token_ids.append(token)
                out[r].token_times.append(now)
                if token in stop_ids:
                    done[r] = True
            if all(done):
                break
            mask = torch.cat([mask, mask.new_ones((rows, 1))], dim=-1)
            if kv_cache:
                input_ids = next_ids[:, None]
                positions = positions[:, -1:] + 1
            else:
                input_ids = torch.cat([input_ids, next_ids[:, None]], dim=-1)
                positions = torch.cat([positions, positions[:, -1:] + 1], dim=-1)
        return out

    def next_token_logprobs(self, token_ids: Sequence[int], weights: RowWeights) -> torch.Tensor:
        """float64 [V] log-distribution of the next token after ``token_ids`` (no cache)."""
        alpha = self.weight_matrix([weights], 1)
        running = [k for k in range(len(self.arms)) if alpha[0, k] != 0]
        with torch.no_grad():  # not inference_mode: callers may edit the result in place
            ids = torch.tensor([list(token_ids)], device=_device(self.base))
            logits = [
                m(input_ids=ids, use_cache=False).logits[:, -1, :]
                for m in (self.base, *(self.arms[k] for k in running))
            ]
            scores = self.fuse_step(logits[0], logits[1:], alpha[:, running])[0]
        if self.fusion_dtype == torch.float64:
            return scores  # fuse_step normalised it already
        return torch.log_softmax(scores.double(), dim=-1)

    @torch.no_grad()
    def model_logprobs(self, token_ids: Sequence[int]) -> list[torch.Tensor]:
        """Each model's own float64 next-token log-probabilities (base first, then
        the ARMs): log_softmax over its own vocabulary, then cut or -inf-padded to
        the base's width. For checks of other formulas (the research one)."""
        ids = torch.tensor([list(token_ids)], device=_device(self.base))
        logprobs = [
            torch.log_softmax(m(input_ids=ids, use_cache=False).logits[0, -1].double(), dim=-1)
            for m in (self.base, *self.arms)
        ]
        return [align_vocab(lp, logprobs[0].shape[-1]) for lp in logprobs]

    def greedy(
        self,
        prompt_ids: Sequence[int],
        weights: RowWeights,
        max_new_tokens: int,
        stop_ids: Collection[int] = (),
    ) -> list[int]:
        """Greedy decoding of one prompt, recomputing every step; stops after a stop id."""
        gen = self.decode(
            [prompt_ids], [weights], max_new_tokens, kv_cache=False, stop_ids=stop_ids
        )
        return gen[0].token_ids


def _pick(scores: torch.Tensor, temperature: float, generator: torch.Generator | None):
    """[B] next ids: argmax at ``temperature <= 0``, else drawn from softmax(scores / T)."""
    if temperature <= 0:
        return scores.argmax(dim=-1)
    probs = torch.softmax(scores / temperature, dim=-1)
    if generator is not None and probs.device != generator.device:
        probs = probs.to(generator.device)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
