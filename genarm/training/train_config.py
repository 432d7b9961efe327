"""`genarm train-arm`'s settings: each field is also the command's option of that name
(``genarm.training.options``), and the run's summary records them all."""

from __future__ import annotations

from dataclasses import dataclass

from genarm.training.options import option
from genarm.training.validation import SELECT_BY

VALIDATION = "validation, early stopping and the fluency guard"


@dataclass
class TrainConfig:
    data: str = option(help="preference JSONL (prompt/chosen/rejected)")
    out: str = option(help="adapter output folder (resumes if present)")
    base: str = option(help="HF folder of the model the ARM starts from")
    rank: int = 8
    alpha: int = 16
    # A str: PEFT's regex or "all-linear" (as --init-adapter's config may hold).
    target_modules: list[str] | str = option(
        factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )
    beta: float = option(0.05, help="β_r of the GenARM loss")
    kl_anchor: float = option(
        0.0,
        help="weight of KL(base || ARM) per reply token (over the tokens other than end of "
        "turn) added to the loss: keeps the ARM's choice of words the base's wherever the "
        "pairs do not disagree, so that guidance changes only what they teach (0: off)",
    )
    kl_anchor_stop: bool = option(
        False,
        help="the anchor holds end of turn too (KL over every token): for an ARM whose "
        "objective is not length, so that guided answers finish as the base's do",
    )
    stop_anchor: float = option(
        0.0,
        help="weight of how far the ARM raises log p(end of turn) above the base's inside a "
        "sentence (mean over reply tokens not after . ! or ?) added to the loss: a length "
        "ARM learns to stop at sentence ends without stopping mid-sentence too (0: off)",
    )
    lr: float = 5e-4
    epochs: int = 1
    batch_size: int = 4
    max_length: int = 320
    max_response_length: int = 128
    max_pairs: int | None = None
    seed: int = 0
    bf16: bool | None = option(
        None,
        help="bf16 base with fp32 LoRA weights and autocast (default: where the GPU or CPU "
        "computes bf16 natively; emulated bf16 trains several times slower than float32)",
    )
    save_every: int = option(50, help="checkpoint steps")
    resume: str | None = option(
        None, help="checkpoint folder to resume from (default: OUT/checkpoint)"
    )
    init_adapter: str | None = option(
        None,
        help="start from this trained adapter's weights (and its rank, alpha and target "
        "modules) with a fresh optimizer and schedule: go on training an ARM on new data",
    )
    restart: bool = option(False, help="ignore an existing checkpoint")
    max_minutes: float | None = option(None, help="stop and save after this wall time")
    val_data: str | None = option(
        None, group=VALIDATION, help="validation pairs (default: --val-fraction of the data)"
    )
    val_fraction: float = option(
        0.1,
        group=VALIDATION,
        help="share of the data's prompts kept back for validation (0: no validation)",
    )
    val_max_pairs: int | None = option(
        None, group=VALIDATION, help="validate on at most this many pairs"
    )
    eval_every: int | None = option(
        None, group=VALIDATION, help="steps between validations (default: each epoch)"
    )
    patience: int = option(
        2,
        group=VALIDATION,
        help="validations without a better state before stopping (0: never stop early)",
    )
    select_by: str = option(
        "accuracy",
        group=VALIDATION,
        choices=SELECT_BY,
        help="which validation state is the best one: the highest pairwise accuracy (ties: "
        "lower loss), or the lowest loss (smoother on a few hundred pairs)",
    )
    fluency_prompts: int = option(
        4,
        group=VALIDATION,
        help="validation prompts the fluency guard samples at each validation (0: off)",
    )
    fluency_weights: list[float] = option(
        factory=lambda: [1.0, 3.0],
        group=VALIDATION,
        help="ARM weights the fluency guard samples at (besides unguided)",
    )
    fluency_max_tokens: int = option(64, group=VALIDATION)
    max_perplexity_ratio: float | None = option(
        2.0,
        group=VALIDATION,
        help="a state whose guided replies (first fluency weight) have more than this times "
        "the unguided perplexity under the base is never kept as the best",
    )
    refusal_probes: int = option(
        0,
        group=VALIDATION,
        help="the refusal guard: ask this many of the shipped benign probe questions "
        "(greedy, at 0 and the fluency weights) and report the share refused (0: off)",
    )
    max_refusal_share: float | None = option(
        None,
        group=VALIDATION,
        help="a state that refuses more than this share of the probes at the first fluency "
        "weight is never kept as the best (default: report only)",
    )
