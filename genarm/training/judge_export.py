"""`genarm export-judge`: a judge of `genarm train-judge` as a plain HF
sequence-classification folder, the format `reward_models` in a deployment
config serves (and any HF reward-model tooling reads).

    genarm export-judge --judge configs/judges/harmless --out ~/.cache/genarm/judges/harmless

The LoRA adapters are merged into the decoder and the scalar head becomes the
model's one-output ``score`` layer. Two details keep the exported model's
scores the judge's own:

- The judge pools the end-of-turn token that closes the reply. A chat template
  renders a whole conversation with what follows that token too (ChatML adds a
  newline), and a sequence-classification model pools the last token, so the
  exported tokenizer's template drops trailing whitespace.
- HF's sequence-classification models pool the last token that is not the
  padding token. Chat models often pad with their end-of-turn token (SmolLM2
  does), which would move HF's pooling one token back; the export pads with a
  special token that a conversation never contains. (vLLM pools the last token
  and is unaffected.)
- HF's Llama-family ``score`` layer has no bias: the judge's bias (a constant
  that changes no preference) is left out, and reported as ``score_offset``
  (judge score = exported score + score_offset).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def trimmed_chat_template(template: str) -> str:
    """``template`` with trailing whitespace removed from what it renders (what
    follows the reply's end-of-turn token)."""
    return "{%- set rendered -%}" + template + "{%- endset -%}{{ rendered | trim }}"


def unused_pad_id(tokenizer) -> int:
    """A special token id that a rendered conversation does not contain."""
    sample = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]
    rendered = tokenizer.apply_chat_template(sample, tokenize=False)
    used = set(tokenizer(rendered, add_special_tokens=True)["input_ids"])
    used |= {tokenizer.eos_token_id, tokenizer.bos_token_id}
    for token_id in tokenizer.all_special_ids:
        if token_id not in used:
            return token_id
    raise ValueError("every special token appears in a conversation: no id to pad with")


def export_judge(judge_dir: str, out: str, base: str | None = None, dtype: str = "bfloat16"):
    """Write the HF folder; returns a summary (``score_offset`` among it)."""
    from transformers import AutoModelForSequenceClassification

    from genarm.training.judge import Judge

    judge = Judge.load(judge_dir, base=base, bf16=False)  # merge in float32
    decoder = judge.model.decoder.merge_and_unload()
    config = decoder.config
    config.num_labels = 1
    pad_id = unused_pad_id(judge.tokenizer)
    config.pad_token_id = pad_id
    model = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)
    getattr(model, model.base_model_prefix).load_state_dict(decoder.state_dict())
    head = judge.model.head
    with torch.no_grad():
        model.score.weight.copy_(head.weight)
    model = model.to(getattr(torch, dtype))
    model.config.architectures = [type(model).__name__]
    out_path = Path(out).expanduser()
    model.save_pretrained(out_path)
    tokenizer = judge.tokenizer
    tokenizer.chat_template = trimmed_chat_template(tokenizer.chat_template)
    tokenizer.pad_token = tokenizer.convert_ids_to_tokens(pad_id)
    tokenizer.save_pretrained(out_path)
    summary = {
        "judge": str(judge_dir),
        "architecture": type(model).__name__,
        "dtype": dtype,
        "score_offset": float(head.bias.item()),
    }
    (out_path / "genarm_export.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--judge", required=True, help="a train-judge output folder")
    parser.add_argument("--out", required=True, help="the HF folder to write")
    parser.add_argument("--base", help="the judge's base model folder (default: its config's)")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])


def run(args: argparse.Namespace) -> int:
    summary = export_judge(args.judge, args.out, base=args.base, dtype=args.dtype)
    print(json.dumps(summary, indent=2))
    print(f"serve it with: reward_models: [{{name: NAME, model: {args.out}}}]")
    return 0
