"""`genarm make-preferences` on tiny random models: sampling with vLLM, the rewards and
reward models that rank the samples, and the pairs made from them."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from training_data import judge_as_make_preferences_loads_it, write_samples

from genarm.training.pairing import ranked_pairs
from genarm.training.preference_data import PreferencePair, load_pairs, write_pairs
from genarm.training.prompts import demo_prompts, split_prompts
from genarm.training.refusals import refuses
from genarm.training.rewards import concise, enthusiastic

from support import shutdown_llm

pytest_plugins = ["training_fixtures"]


def test_prompt_set_is_large_varied_and_split():
    prompts = demo_prompts()
    assert len(prompts) >= 300 and len(set(prompts)) == len(prompts)
    train, held_out = split_prompts(seed=0)
    assert not set(train) & set(held_out) and len(train) + len(held_out) == len(prompts)
    assert split_prompts(seed=0) == (train, held_out)


def test_prompts_are_package_data():
    from genarm.training.prompts import PROMPTS_FILE

    rows = [json.loads(line) for line in PROMPTS_FILE.read_text().splitlines()]
    assert len(rows) == len(demo_prompts()) and all(r["prompt"].strip() for r in rows)
    assert len({r["subject"] for r in rows}) >= 40


def test_rewards_pull_in_their_directions():
    assert concise("Short answer.", True) > concise("A much longer answer " * 5, True)
    assert concise("Short", False) < concise("Short but finished well.", True)
    assert enthusiastic("This is great fun!", True) > enthusiastic("This is a fact.", True)
    texts = ["one two three", "one", "one two"]
    (pair,) = ranked_pairs("q", texts, [concise(t, True) for t in texts])
    assert (pair.chosen, pair.rejected) == ("one", "one two three")
    assert ranked_pairs("q", ["a b", "c d"], [concise("a b", True), concise("c d", True)]) == []


def test_ranked_pairs_take_widest_gaps_first_with_each_sample_once():
    texts = ["a", "b", "c", "d", "e"]
    scores = [5.0, 1.0, 4.0, 0.0, 3.0]
    got = [(p.chosen, p.rejected) for p in ranked_pairs("q", texts, scores, max_pairs=3)]
    assert got == [("a", "d"), ("c", "b")]  # "e" is left without a partner
    assert len(ranked_pairs("q", texts, scores, max_pairs=3, min_gap=3.5)) == 1
    assert ranked_pairs("q", ["x", "x"], [1.0, 0.0]) == []  # identical texts teach nothing
    finished = [False, True, True, True, True]  # "a" was cut off: it is never chosen
    got = ranked_pairs("q", texts, scores, max_pairs=3, eligible=finished)
    assert [(p.chosen, p.rejected) for p in got] == [("c", "d"), ("e", "b")]


def test_hierarchical_rule_keeps_only_pairs_the_holistic_judge_does_not_mind():
    """ALaRM's rule: the aspect (shorter) decides; a pair whose rejected reply the
    holistic reward prefers by more than the margin is dropped, and the next
    widest candidate takes its place."""
    texts = ["short but broken", "short and good", "long and good", "long and rambling"]
    concise_scores = [-3.0, -3.5, -20.0, -30.0]
    judge = [-4.0, 1.0, 1.5, 0.0]  # the broken short reply is much worse than both long ones
    pairs = ranked_pairs("q", texts, concise_scores, max_pairs=2, holistic=judge, margin=1.0)
    assert [(p.chosen, p.rejected) for p in pairs] == [
        ("short and good", "long and rambling"),
    ]
    # Without the rule the broken reply is the first chosen one.
    (first, _) = ranked_pairs("q", texts, concise_scores, max_pairs=2)
    assert first.chosen == "short but broken"
    # A wide margin lets every aspect pair through; a negative one demands holistic agreement.
    assert len(ranked_pairs("q", texts, concise_scores, 2, holistic=judge, margin=10.0)) == 2
    strict = ranked_pairs("q", texts, concise_scores, 2, holistic=judge, margin=-0.5)
    assert [(p.chosen, p.rejected) for p in strict] == [("short and good", "long and rambling")]


def test_length_matched_pairs_compare_equal_lengths(tiny_models):
    from transformers import AutoTokenizer

    from genarm.training.pairing import length_matched

    tok = AutoTokenizer.from_pretrained(tiny_models["base"])
    pair = PreferencePair("q", "a short answer", "a much longer answer " * 10)
    matched = length_matched(pair, tok)
    chosen = tok(pair.chosen, add_special_tokens=False)["input_ids"]
    rejected = tok(matched.rejected, add_special_tokens=False)["input_ids"]
    assert len(rejected) == len(chosen) + 1 and pair.rejected.startswith(matched.rejected)
    assert matched.chosen == pair.chosen and matched.rejected_finished is False
    unchanged = PreferencePair("q", "a short answer", "no")
    assert length_matched(unchanged, tok) == unchanged


def from_samples(tiny_models, samples: Path, out: Path, *options: str) -> list[str]:
    """make-preferences' arguments to pair saved samples (no sampling), into ``out``."""
    base = str(tiny_models["base"])
    return [
        "make-preferences",
        "--base",
        base,
        "--from-samples",
        str(samples),
        "--out",
        str(out),
        *options,
    ]


DIALOGUE = [
    {"role": "user", "content": "Hi there."},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "Name a fruit."},
]


class OneEngine:
    """``create_llm`` for runs that all ask for the same engine: it starts one and hands
    it out again, its prefix cache emptied, so that each run computes its prompts
    afresh as a run in a process of its own does. Starting the engine is what costs."""

    def __init__(self, create_llm):
        self.create_llm, self.cfg, self.llm = create_llm, None, None

    def __call__(self, cfg, **overrides):
        assert not overrides
        if self.llm is None:
            self.cfg, self.llm = cfg, self.create_llm(cfg)
        assert cfg == self.cfg, "the runs ask for different engines"
        self.llm.reset_prefix_cache()
        return self.llm

    def shutdown(self) -> None:
        if self.llm is not None:
            shutdown_llm(self.llm)


@pytest.fixture(scope="module")
def sampled(tiny_models, tmp_path_factory) -> dict[str, Path]:
    """The make-preferences runs that sample with vLLM, through the CLI in this process,
    on one engine: ``first`` and ``second`` are the same command (the held-out
    instructions, seed 0), ``dialogues`` samples the prompts of a pairs file."""
    import genarm.engine
    from genarm.cli import main

    root = tmp_path_factory.mktemp("make_preferences")
    source = [
        PreferencePair(DIALOGUE, "An apple.", "No."),
        PreferencePair("Name a colour.", "Red.", "No."),
        PreferencePair(DIALOGUE, "A pear.", "Go away."),  # the same dialogue again
    ]
    write_pairs(root / "source.jsonl", source)
    common = ["make-preferences", "--base", str(tiny_models["base"]), "--samples", "3"]
    common += ["--max-tokens", "12"]
    held_out = ["--reward", "concise", "enthusiastic", "--seed", "0", "--split", "held-out"]
    held_out += ["--max-prompts", "4"]
    commands = {
        "first": held_out,
        "second": held_out,
        "dialogues": ["--prompts-from", str(root / "source.jsonl"), "--reward", "concise"],
    }
    engine = OneEngine(genarm.engine.create_llm)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(genarm.engine, "create_llm", engine)
        try:
            for name, command in commands.items():
                assert main([*common, *command, "--out", str(root / name)]) == 0
        finally:
            engine.shutdown()
    return {name: root / name for name in commands}


@pytest.mark.engine
def test_make_preferences_is_reproducible_and_splits_prompts(sampled):
    """The CLI end to end on vLLM: same seed, same samples and pairs; --split held-out
    samples the held-out instructions only."""
    outs = [sampled["first"], sampled["second"]]
    rows = [json.loads(line) for line in (outs[0] / "samples.jsonl").read_text().splitlines()]
    train, held_out = split_prompts(seed=0)
    assert [row["prompt"] for row in rows] == held_out[:4]
    assert all(len(row["samples"]) == 3 for row in rows)
    for name in ("samples.jsonl", "concise.jsonl", "enthusiastic.jsonl"):
        assert (outs[0] / name).read_text() == (outs[1] / name).read_text(), name
    pairs = load_pairs(outs[0] / "concise.jsonl")
    assert pairs and all(p.prompt in held_out and p.prompt not in train for p in pairs)
    for pair in pairs:  # each pair is its prompt's best vs worst sample under the reward
        samples = next(row["samples"] for row in rows if row["prompt"] == pair.prompt)
        scores = sorted(concise(text, done) for text, done in samples)
        chosen = next(concise(t, d) for t, d in samples if t == pair.chosen)
        rejected = next(concise(t, d) for t, d in samples if t == pair.rejected)
        assert (chosen, rejected) == (scores[-1], scores[0])


@pytest.mark.engine
def test_make_preferences_samples_the_dialogues_of_a_pairs_file(sampled):
    """--prompts-from: the prompts of a preference file (HH-RLHF's multi-turn dialogues
    too), each once in file order, sampled as chat conversations and kept as messages."""
    out = sampled["dialogues"]
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [row["prompt"] for row in rows] == [DIALOGUE, "Name a colour."]
    assert all(len(row["samples"]) == 3 for row in rows)
    assert not (out / "held_out_prompts.json").exists()  # no instruction split was used
    pairs = load_pairs(out / "concise.jsonl")
    sampled_prompts = {json.dumps(row["prompt"]) for row in rows}
    assert pairs and {json.dumps(pair.prompt) for pair in pairs} <= sampled_prompts


@pytest.mark.engine
def test_make_preferences_pairs_saved_samples_under_the_holistic_rule(
    tiny_models, tiny_judge, tmp_path
):
    """--from-samples re-pairs an earlier run's samples without sampling;
    --holistic-judge scores each sample with the judge and applies the rule."""
    from genarm.cli import main

    groups = {
        f"Question number {i}?": [
            ["yes", True],
            ["no no no no", True],
            ["yes yes", True],
            ["no", False],
        ]
        for i in range(3)
    }
    samples = write_samples(tmp_path / "samples.jsonl", groups)
    out = tmp_path / "pairs"
    command = from_samples(
        tiny_models, samples, out, "--reward", "concise", "--pairs-per-prompt", "2"
    )
    assert main([*command, "--holistic-judge", str(tiny_judge)]) == 0
    judge = judge_as_make_preferences_loads_it(tiny_judge)
    rows = [json.loads(line) for line in (out / "holistic_scores.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == list(groups)
    pairs = load_pairs(out / "concise.jsonl")
    for row in rows:
        texts = [t for t, _ in groups[row["prompt"]]]
        want = judge.score_many([(row["prompt"], t) for t in texts])
        assert row["scores"] == pytest.approx(want, abs=1e-5)
        scores = [concise(t, d) for t, d in groups[row["prompt"]]]
        done = [d for _, d in groups[row["prompt"]]]
        expected = ranked_pairs(
            row["prompt"], texts, scores, 2, holistic=want, margin=0.5, finished=done
        )
        assert [p for p in pairs if p.prompt == row["prompt"]] == expected
    assert pairs
    by_prompt = {r["prompt"]: r["scores"] for r in rows}
    for pair in pairs:
        texts = [t for t, _ in groups[pair.prompt]]
        score = dict(zip(texts, by_prompt[pair.prompt], strict=True))
        assert score[pair.rejected] - score[pair.chosen] <= 0.5
    assert not (out / "samples.jsonl").exists()  # nothing was sampled


def test_make_preferences_writes_refusal_pairs_from_saved_samples(tiny_models, tmp_path):
    from genarm.cli import main

    groups = {
        f"Question number {i}?": [["I'm sorry, I cannot.", True], ["yes", True], ["no", False]]
        for i in range(3)
    }
    samples = write_samples(tmp_path / "samples.jsonl", groups)
    out = tmp_path / "pairs"
    assert main(from_samples(tiny_models, samples, out, "--refusal-pairs", "1")) == 0
    pairs = load_pairs(out / "refusal.jsonl")
    assert [p.prompt for p in pairs] == list(groups)
    assert {p.chosen for p in pairs} == {"yes"}
    assert all(refuses(p.rejected) for p in pairs)
    assert not (out / "concise.jsonl").exists()  # no --reward: only the refusal pairs


def test_sentence_ends_and_stopping_pairs():
    from genarm.training.pairing import keep_going_pair, spread, stopping_pair
    from genarm.training.sentences import ends_sentence, mid_sentence_breaks, sentence_ends

    text = 'Apples are red. They grow (mostly). 1. Wash them! "Eat them." Done'
    ends = sentence_ends(text, min_words=1)
    # After "red.", "(mostly).", "them!" and the quoted sentence; not the list's "1."
    assert [text[:e].split()[-1] for e in ends] == ["red.", "(mostly).", "them!", 'them."']
    assert sentence_ends(text, min_words=4) == ends[1:]  # "They grow (mostly)." is word 5
    assert sentence_ends("No end here", 1) == [] and sentence_ends("Last one.", 1) == []
    # Before the next word is known (a reply being written): the same ends, and no others.
    assert [ends_sentence(text[:e] + " ") for e in ends] == [True] * 4
    assert not any(ends_sentence(t) for t in ("Apples are", "They grow (mostly", "1.", "2. "))
    pair = stopping_pair("q", text, ends[0])
    assert (pair.chosen, pair.rejected) == ("Apples are red.", "Apples are red. They")
    assert pair.chosen_finished and not pair.rejected_finished
    assert spread(list(range(10)), 2) == [2, 6] and spread([1, 2], 3) == [1, 2]
    # Inside a sentence: after every word another follows, but for sentence ends
    # (the list's "1." is no sentence end: stopping there is a cut too).
    breaks = mid_sentence_breaks(text)
    words = ["Apples", "are", "They", "grow", "1.", "Wash", '"Eat']
    assert [text[:b].split()[-1] for b in breaks] == words
    assert not set(breaks) & set(ends)
    pair = keep_going_pair("q", text, breaks[1])
    assert (pair.chosen, pair.rejected) == ("Apples are red.", "Apples are")
    assert not pair.chosen_finished and pair.rejected_finished


@pytest.mark.engine
def test_stopping_pairs_from_saved_samples_under_the_holistic_rule(
    tiny_models, tiny_judge, tmp_path
):
    """--stopping-pairs: the same sample stopped at a sentence end vs one word more,
    and as many keep-going pairs inside sentences; with a judge, a sentence end
    counts only if stopping there scores no lower than the whole sample minus the
    margin."""
    from genarm.cli import main
    from genarm.training.pairing import spread
    from genarm.training.sentences import mid_sentence_breaks, sentence_ends

    groups = {
        f"Question {i}?": [
            ["Yes it is. It is because of light. Blue light scatters more. The end.", True],
            ["No. Short.", True],
            ["Well, one two three four five. Six seven eight nine ten. And more", False],
        ]
        for i in range(2)
    }
    samples = write_samples(tmp_path / "samples.jsonl", groups)
    out = tmp_path / "pairs"
    stopping = ["--reward", "concise", "--stopping-pairs", "2", "--stop-min-words", "3"]
    assert main(from_samples(tiny_models, samples, out, *stopping)) == 0
    written = load_pairs(out / "concise.jsonl")
    pairs = [p for p in written if p.chosen_finished]  # the stopping pairs
    keep_going = [p for p in written if not p.chosen_finished]
    assert written == pairs + keep_going
    expected = [
        (prompt, text[:end])
        for prompt, group in groups.items()
        for text, _ in group
        for end in spread(sentence_ends(text, 3), 2)
    ]
    assert [(p.prompt, p.chosen) for p in pairs] == expected
    for pair in pairs:
        assert pair.rejected.startswith(pair.chosen + " ")
        assert len(pair.rejected.split()) == len(pair.chosen.split()) + 1
    expected = [
        (prompt, text[:at])
        for prompt, group in groups.items()
        for text, _ in group
        for at in spread(mid_sentence_breaks(text), 2)
    ]
    assert [(p.prompt, p.rejected) for p in keep_going] == expected
    for pair in keep_going:
        assert pair.rejected_finished and pair.chosen.startswith(pair.rejected + " ")
        assert len(pair.chosen.split()) == len(pair.rejected.split()) + 1

    # The judge's drop from the whole sample to the reply stopped there, per pair;
    # the margin sits in the widest gap between drops (clear of batching noise).
    judge = judge_as_make_preferences_loads_it(tiny_judge)
    drops = []
    for pair in pairs:
        full = next(t for t, _ in groups[pair.prompt] if t.startswith(pair.chosen))
        whole, stopped = judge.score_many([(pair.prompt, full), (pair.prompt, pair.chosen)])
        drops.append(whole - stopped)
    ordered = sorted(drops)
    _, at = max((ordered[i + 1] - ordered[i], i) for i in range(len(ordered) - 1))
    margin = (ordered[at] + ordered[at + 1]) / 2
    judged = tmp_path / "judged"
    judged_command = from_samples(tiny_models, samples, judged, *stopping)
    judged_command += ["--holistic-judge", str(tiny_judge), "--holistic-margin", repr(margin)]
    assert main(judged_command) == 0
    kept = load_pairs(judged / "concise.jsonl")
    want = [pair for pair, drop in zip(pairs, drops, strict=True) if drop <= margin]
    want += keep_going  # never judged: a cut inside a sentence is no complete answer
    assert [(p.prompt, p.chosen) for p in kept] == [(p.prompt, p.chosen) for p in want]
    assert len(keep_going) < len(kept) < len(written)


def test_graded_stopping_pairs_prefer_stopping_more_the_more_was_said(tiny_models, tmp_path):
    """--stop-graded: each sentence end gives one pair, "stop" with probability
    σ((words - CENTER) / SCALE) and "go on one word" otherwise; seeded."""
    from genarm.cli import main
    from genarm.training.pairing import says_stop

    rng = random.Random(0)

    def share(words: int) -> float:
        return sum(says_stop(words, 20, 4, rng) for _ in range(2000)) / 2000

    assert share(8) < 0.1 and 0.45 < share(20) < 0.55 and share(32) > 0.9
    text = " ".join(f"Sentence {i} has five words." for i in range(12)) + " And"
    samples = write_samples(tmp_path / "samples.jsonl", {"Q?": [[text, False]] * 4})

    def pairs(out: str, *graded: str) -> list[PreferencePair]:
        command = from_samples(tiny_models, samples, tmp_path / out, "--reward", "concise")
        command += ["--stopping-pairs", "12", "--stop-min-words", "1", "--keep-going-pairs", "0"]
        assert main([*command, *graded]) == 0
        return load_pairs(tmp_path / out / "concise.jsonl")

    plain = pairs("plain")
    assert len(plain) == 48 and all(p.chosen_finished for p in plain)
    assert pairs("always", "--stop-graded=-1000,1") == plain
    graded = pairs("graded", "--stop-graded", "30,5")
    assert graded == pairs("again", "--stop-graded", "30,5")
    stop = [len(p.chosen.split()) for p in graded if p.chosen_finished]
    go_on = [len(p.rejected.split()) for p in graded if not p.chosen_finished]
    # Each sentence end once, either way round; stopping drawn mostly at the late ones.
    assert sorted(stop + go_on) == sorted(len(p.chosen.split()) for p in plain)
    assert stop and go_on and sum(stop) / len(stop) > sum(go_on) / len(go_on) + 10
    for pair in graded:
        if not pair.chosen_finished:
            assert pair.chosen.startswith(pair.rejected + " ") and pair.rejected_finished


def test_make_preferences_labels_samples_with_a_reward_model(tiny_reward_models, tmp_path):
    """--reward-model: the samples ranked by an HF reward model's combined score (as
    /v1/rewards combines it: the weights given over the mean), best vs worst."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from genarm.cli import main
    from genarm.server.reward_models import conversation_ids

    groups = {
        f"Question {i}?": [[f"Answer {j} to {i}: " + "yes " * (i + j), True] for j in range(4)]
        for i in range(3)
    }
    samples = write_samples(tmp_path / "samples.jsonl", groups)
    path = tiny_reward_models["three"]
    command = ["make-preferences", "--base", path, "--out", str(tmp_path / "pairs")]
    command += ["--from-samples", str(samples), "--reward-model", path]
    assert main([*command, "--objective-weights", "helpful=2,concise=-1"]) == 0
    pairs = load_pairs(tmp_path / "pairs" / "three.jsonl")

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    weights = [2.0, 1 / 3, -1.0]  # helpful, harmless (the mean's share), concise
    assert len(pairs) == len(groups)
    for pair, (prompt, group) in zip(pairs, groups.items(), strict=True):
        scores = []
        for text, _ in group:
            ids = conversation_ids(tokenizer, [{"role": "user", "content": prompt}], text)
            with torch.no_grad():
                outputs = model(torch.tensor([ids])).logits[0].tolist()
            scores.append(sum(w * o for w, o in zip(weights, outputs, strict=True)))
        texts = [text for text, _ in group]
        assert pair.prompt == prompt
        assert pair.chosen == texts[scores.index(max(scores))]
        assert pair.rejected == texts[scores.index(min(scores))]
    with pytest.raises(SystemExit, match="not one of"):
        main([*command, "--objective-weights", "nope=1"])


def test_reward_model_outputs_batched_as_one_at_a_time(tiny_reward_models):
    """make-preferences --reward-model scores its samples in batches (right padding,
    sorted by length): each output as the sequence scored alone, in the input's
    order, a batch holding the model's pad token inside a sequence too (it goes
    one at a time)."""
    from transformers import AutoModelForSequenceClassification

    from genarm.training.model_scores import head_outputs

    model = AutoModelForSequenceClassification.from_pretrained(tiny_reward_models["three"])
    model.eval()
    pad = model.config.pad_token_id
    assert pad is not None
    rng = random.Random(0)
    tokens = [t for t in range(model.config.vocab_size) if t != pad]
    sequences = [rng.choices(tokens, k=rng.randint(2, 40)) for _ in range(11)]
    sequences[4] = [*sequences[4][:3], pad, *sequences[4][3:]]
    expected = []
    for ids in sequences:
        with torch.no_grad():
            expected.append(model(torch.tensor([ids])).logits[0].tolist())
    got = head_outputs(model, sequences, batch_size=4)
    torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), atol=1e-4, rtol=0)
