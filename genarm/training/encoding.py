"""Preference pairs as token ids: the prompt through the chat template, then each
reply, cut to the training window (``encode``, ``encode_pairs``)."""

from __future__ import annotations

import logging

from genarm.training.preference_data import Messages, PreferencePair

logger = logging.getLogger(__name__)

# (input ids, number of prompt tokens) of one reply: ``encode``'s result.
EncodedReply = tuple[list[int], int]
EncodedPair = tuple[EncodedReply, EncodedReply]


def encode(
    tokenizer,
    messages: Messages,
    response: str,
    max_length: int,
    max_response: int,
    finished: bool = True,
    end_when_cut: bool = False,
) -> EncodedReply:
    """(input ids, number of prompt tokens): prompt via the chat template, then the reply.

    A finished reply ends with the end-of-turn token, so that the ARM also scores
    stopping; an unfinished one (cut off by a token limit) does not: it never
    stopped there. Long prompts lose their oldest tokens; long replies are cut
    at max_response, and a finished reply cut there gets no end of turn either:
    it did not end there (an end of turn put there taught a concise ARM to stop
    mid-sentence, wherever a stopping pair's sentence end lay past the window).
    ``end_when_cut``: end a finished reply cut at the window with end of turn anyway,
    for the judge, which reads its score at that token and was trained so.
    """
    reply = tokenizer(response, add_special_tokens=False)["input_ids"]
    if finished and (len(reply) < max_response or end_when_cut):
        reply = reply[: max_response - 1] + [tokenizer.eos_token_id]
    else:
        reply = reply[:max_response]
    keep = max(8, max_length - len(reply))
    prompt = prompt_ids(tokenizer, messages)[-keep:]
    return prompt + reply, len(prompt)


def prompt_ids(tokenizer, messages: Messages) -> list[int]:
    """The token ids of ``messages`` through the chat template, up to the assistant's turn."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_pairs(
    tokenizer, pairs: list[PreferencePair], max_length: int, max_response: int
) -> list[EncodedPair]:
    """Each pair's (chosen, rejected) as ``encode`` cuts them, each reply ended or not
    as its pair says; warns about pairs that the cut makes the same (``decided``)."""
    lengths = (max_length, max_response)
    encoded = [
        (
            encode(tokenizer, p.messages(), p.chosen, *lengths, finished=p.chosen_finished),
            encode(tokenizer, p.messages(), p.rejected, *lengths, finished=p.rejected_finished),
        )
        for p in pairs
    ]
    undecided = len(encoded) - sum(map(decided, encoded))
    if undecided:
        logger.warning(
            "%d of %d pairs differ only after %d reply tokens: the same once cut, they teach "
            "and score nothing (a longer --max-response-length keeps them)",
            undecided,
            len(encoded),
            max_response,
        )
    return encoded


def decided(pair: EncodedPair) -> bool:
    """Whether a pair's two replies still differ once cut to the window."""
    (chosen, _), (rejected, _) = pair
    return chosen != rejected


def drop_undecided(
    pairs: list[PreferencePair], encoded: list[EncodedPair]
) -> tuple[list[PreferencePair], list[EncodedPair]]:
    """``pairs`` and ``encoded`` without the pairs the window cut to the same replies:
    in training a constant loss, in validation a pair counted as lost."""
    kept = [i for i, pair in enumerate(encoded) if decided(pair)]
    return [pairs[i] for i in kept], [encoded[i] for i in kept]
