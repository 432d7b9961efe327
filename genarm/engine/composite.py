"""The composite model vLLM serves: a base LLM and its ARMs in lock-step.

vLLM sees one model. Inside, every sub-model is vLLM's own class for its
architecture (resolved through vLLM's registry), built from a copy of the
engine config whose ``hf_config`` is that sub-model's, so each gets its own
attention layers and therefore its own paged KV cache. ``forward`` runs all of
them on the same tokens and concatenates their hidden states; ``compute_logits``
splits them again, returns the base logits to vLLM and leaves the ARM logits in
``arm_logits_stash`` for the logits processor, which runs next in the same
process and step over the same rows.

The composite is switched on by ``hf_overrides`` on the base model's own folder
(see ``genarm.engine.build``): ``architectures: [GenARMForCausalLM]``,
``genarm_base_architectures`` (the base's own) and ``genarm_arms`` (name, path
and weight bounds of each ARM).
"""

from __future__ import annotations

import copy
import itertools
import string
from collections.abc import Iterable

import torch
from torch import nn

from genarm.engine.arm_logits_stash import arm_logits_stash
from genarm.vocab import align_vocab

ARCHITECTURE = "GenARMForCausalLM"
BASE_PREFIX = "base"


def arm_prefix(index: int) -> str:
    """Module prefix of the index-th ARM.

    vLLM requires exactly one integer in an attention layer's name (the layer
    index), so ARMs are lettered: arm_a, arm_b, ...
    """
    letters = string.ascii_lowercase
    if index >= len(letters) ** 2:
        raise ValueError(f"at most {len(letters) ** 2} ARMs are supported")
    suffix = (
        letters[index] if index < len(letters) else letters[index // 26 - 1] + letters[index % 26]
    )
    return f"arm_{suffix}"


def _sub_vllm_config(vllm_config, hf_config, quantized: bool):
    """A shallow copy of the engine config that describes one sub-model.

    Shared parts (cache, compilation, parallel configs) stay shared on purpose:
    attention layers register into the one forward context and KV-cache plan.
    """
    sub = copy.copy(vllm_config)
    model_config = copy.copy(vllm_config.model_config)
    model_config.hf_config = hf_config
    model_config.hf_text_config = hf_config
    sub.model_config = model_config
    if not quantized:
        # A GPTQ/AWQ base leaves the ARMs in the engine's float dtype.
        sub.quant_config = None
    return sub


def _load_hf_config(path: str):
    from vllm.transformers_utils.config import get_config

    return get_config(path, trust_remote_code=False)


def _build_sub_model(vllm_config, hf_config, prefix: str, quantized: bool) -> nn.Module:
    from vllm.model_executor.models.registry import ModelRegistry

    from genarm.engine.compile_cache import sub_model_hf_config, sub_model_scope

    # Compiled and cached as itself, not as the composite: see compile_cache.
    hf_config = sub_model_hf_config(hf_config, prefix)
    sub_config = _sub_vllm_config(vllm_config, hf_config, quantized)
    model_cls, _ = ModelRegistry.resolve_model_cls(
        list(hf_config.architectures or []), model_config=sub_config.model_config
    )
    with sub_model_scope(sub_config, prefix):
        return model_cls(vllm_config=sub_config, prefix=prefix)


class GenARMForCausalLM(nn.Module):
    """Base model plus ARMs, run in lock-step; see the module docstring."""

    def __init__(self, *, vllm_config, prefix: str = "") -> None:
        super().__init__()
        from vllm.model_executor.model_loader.default_loader import DefaultModelLoader

        hf_config = vllm_config.model_config.hf_config
        arms = list(getattr(hf_config, "genarm_arms", None) or [])
        if not arms:
            raise ValueError(f"{ARCHITECTURE} needs at least one ARM in hf_config.genarm_arms")

        base_config = copy.copy(hf_config)
        base_config.architectures = list(hf_config.genarm_base_architectures)
        self.base = _build_sub_model(vllm_config, base_config, BASE_PREFIX, quantized=True)

        self.arm_prefixes = [arm_prefix(i) for i in range(len(arms))]
        arm_configs = [_load_hf_config(arm["path"]) for arm in arms]
        for name, arm_config in zip(self.arm_prefixes, arm_configs, strict=True):
            self.add_module(name, _build_sub_model(vllm_config, arm_config, name, quantized=False))

        self.hidden_sizes = [hf_config.hidden_size] + [c.hidden_size for c in arm_configs]
        self.vocab_size = vllm_config.model_config.get_vocab_size()
        # vLLM's loader streams the base folder, then each of these with its prefix.
        self.secondary_weights = [
            DefaultModelLoader.Source(arm["path"], None, prefix=f"{name}.")
            for name, arm in zip(self.arm_prefixes, arms, strict=True)
        ]

    def _sub_models(self) -> list[nn.Module]:
        return [self.base] + [getattr(self, name) for name in self.arm_prefixes]

    def embed_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.base.embed_input_ids(input_ids)

    def forward(
        self,
        input_ids: torch.Tensor | None,
        positions: torch.Tensor,
        intermediate_tensors=None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        if inputs_embeds is not None:
            raise NotImplementedError("GenARM runs on token ids, not input embeddings")
        hidden = [model(input_ids, positions) for model in self._sub_models()]
        return torch.cat(hidden, dim=-1)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        parts = torch.split(hidden_states, self.hidden_sizes, dim=-1)
        base_logits = self.base.compute_logits(parts[0])
        arm_logits = [
            self._to_base_vocab(getattr(self, name).compute_logits(part))
            for name, part in zip(self.arm_prefixes, parts[1:], strict=True)
        ]
        arm_logits_stash.put(arm_logits)
        return base_logits

    def _to_base_vocab(self, logits: torch.Tensor | None) -> torch.Tensor | None:
        """Bring ARM logits to the base's width (padded lm_heads may differ).

        Columns past the ARM's own vocabulary get -inf: with a nonzero weight,
        the fusion forbids tokens an ARM cannot score.
        """
        return None if logits is None else align_vocab(logits, self.vocab_size)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        """Route the loader's stream to each sub-model by prefix.

        The stream is the base folder first, then each ARM folder, so grouping
        consecutive names keeps it lazy (no sub-model's weights held twice).
        """
        prefixes = tuple(f"{name}." for name in self.arm_prefixes)

        def owner(item: tuple[str, torch.Tensor]) -> str:
            name = item[0]
            for prefix in prefixes:
                if name.startswith(prefix):
                    return prefix[:-1]
            return BASE_PREFIX

        loaded: set[str] = set()
        for module_name, group in itertools.groupby(weights, key=owner):
            module = getattr(self, module_name)
            strip = 0 if module_name == BASE_PREFIX else len(module_name) + 1
            names = module.load_weights((name[strip:], tensor) for name, tensor in group)
            loaded |= {f"{module_name}.{name}" for name in names}
        return loaded
