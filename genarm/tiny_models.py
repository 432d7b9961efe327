"""Test and benchmark scaffolding, not part of serving: nothing in the engine or
the server imports this module.

Tiny random models that share a trained BPE tokenizer: the test suite's and
the benchmarks' stand-ins for real checkpoints (nothing is downloaded).

Shapes may differ between models (weak-to-strong); CPU attention in vLLM needs
head_dim 32 or more, hence the defaults.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@dataclass(frozen=True)
class TinyShape:
    hidden_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    intermediate_size: int | None = None
    extra_vocab: int = 0  # pad the embedding/lm_head beyond the tokenizer


def _training_text() -> list[str]:
    files = sorted(glob.glob("/usr/share/common-licenses/*"))
    files = [f for f in files if Path(f).is_file()][:20]
    if files:
        return files
    # Fallback corpus: this package's own sources.
    return sorted(str(p) for p in Path(__file__).parent.rglob("*.py"))


def make_tokenizer(vocab_size: int = 1024):
    """A byte-level BPE tokenizer trained on local text, with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train(_training_text(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        bos_token="<|im_start|>",
        pad_token="<|endoftext|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def llama_config(tokenizer, shape: TinyShape, **extra):
    """The LlamaConfig of a tiny model with ``shape`` over ``tokenizer``."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer) + shape.extra_vocab,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size or 2 * shape.hidden_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        max_position_embeddings=8192,  # room for the lifecycle tests' long answers
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )


def make_llama(path: str | Path, tokenizer, shape: TinyShape, seed: int, dtype=None) -> Path:
    """Save a random LlamaForCausalLM with ``shape`` and ``tokenizer`` at ``path``."""
    import torch
    from transformers import LlamaForCausalLM

    path = Path(path)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama_config(tokenizer, shape, tie_word_embeddings=False))
    # Larger logits than the default init make the distributions peaked enough
    # that weights visibly change greedy outputs.
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_model_set(root: str | Path, shapes: dict[str, TinyShape], vocab_size: int = 1024):
    """Build one random model per name under ``root`` (all with one tokenizer).

    Returns {name: folder}. Seeds follow the names' order, so a set is reproducible.
    """
    root = Path(root)
    tokenizer = make_tokenizer(vocab_size)
    return {
        name: make_llama(root / name, tokenizer, shape, seed=i)
        for i, (name, shape) in enumerate(shapes.items())
    }


def make_reward_model(
    path: str | Path, tokenizer, objectives: list[str], seed: int, shape: TinyShape | None = None
) -> Path:
    """Save a random LlamaForSequenceClassification with one output per objective.

    A single output is left unnamed (the server calls it ``score``); several are
    named in ``id2label``, as a multi-objective reward model names its heads.
    """
    import torch
    from transformers import LlamaForSequenceClassification

    shape = shape or TinyShape(num_hidden_layers=2)
    path = Path(path)
    torch.manual_seed(seed)
    labels = {} if len(objectives) == 1 else {"id2label": dict(enumerate(objectives))}
    cfg = llama_config(tokenizer, shape, num_labels=len(objectives), **labels)
    model = LlamaForSequenceClassification(cfg)
    with torch.no_grad():  # scores of a few units, so that weights visibly matter
        model.score.weight.mul_(8.0)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# Three shapes, as in weak-to-strong guidance: the ARMs differ from the base in
# layers, hidden size, heads and KV heads (head_dim stays 32 for CPU attention).
TINY_SHAPES = {
    "base": TinyShape(
        hidden_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2
    ),
    "arm_a": TinyShape(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2
    ),
    # A padded lm_head (64 ids past the tokenizer), which the engine must accept.
    "arm_b": TinyShape(
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        extra_vocab=64,
    ),
}


def tiny_config_dict(
    models: dict[str, Path], arms: tuple[str, ...] = ("arm_a", "arm_b"), **engine
) -> dict:
    """A deployment config (as a dict) over the tiny models, fp32 for exactness."""
    return {
        "base": {"model": str(models["base"])},
        "arms": [
            {
                "name": name,
                "model": str(models[name]),
                "default_weight": 0.0,
                "min_weight": -5.0,
                "max_weight": 5.0,
                "description": f"tiny random ARM {name}",
            }
            for name in arms
        ],
        "engine": {
            "dtype": "float32",
            "max_model_len": 512,
            "max_num_seqs": 32,
            "kv_cache_gib": 0.5,
            # Eager: no compilation per engine start; test_engine_compiled covers compiled.
            "enforce_eager": True,
            **engine,
        },
    }
