"""Command-line options generated from the commands' config dataclasses
(``genarm.training.options``): every field an option, parsed back into the config."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from genarm.training.judge import JudgeConfig
from genarm.training.options import add_options, config_from_args, option
from genarm.training.preferences_config import PreferencesConfig
from genarm.training.train_config import VALIDATION, TrainConfig

REQUIRED = ["--data", "d", "--out", "o", "--base", "b"]


def parsed(config: type, argv: list[str]):
    parser = argparse.ArgumentParser()
    add_options(parser, config)
    return config_from_args(config, parser.parse_args(argv))


def test_defaults_parse_back_to_the_dataclass_defaults():
    assert parsed(TrainConfig, REQUIRED) == TrainConfig(data="d", out="o", base="b")
    assert parsed(JudgeConfig, REQUIRED) == JudgeConfig(data="d", out="o", base="b")
    required = ["--base", "b", "--out", "o"]
    assert parsed(PreferencesConfig, required) == PreferencesConfig(base="b", out="o")


def test_each_kind_of_field_becomes_its_kind_of_option():
    argv = [*REQUIRED, "--target-modules", " q_proj, v_proj,", "--fluency-weights", "2,0.5"]
    argv += ["--kl-anchor-stop", "--no-bf16", "--max-pairs", "7", "--select-by", "loss"]
    cfg = parsed(TrainConfig, argv)
    assert cfg.target_modules == ["q_proj", "v_proj"] and cfg.fluency_weights == [2.0, 0.5]
    assert cfg.kl_anchor_stop is True and cfg.bf16 is False and cfg.max_pairs == 7
    assert cfg.select_by == "loss"
    with pytest.raises(SystemExit):
        parsed(TrainConfig, [*REQUIRED, "--select-by", "perplexity"])
    with pytest.raises(SystemExit):
        parsed(TrainConfig, ["--data", "d", "--out", "o"])  # --base is required
    argv = ["--base", "b", "--out", "o", "--reward", "concise", "enthusiastic"]
    cfg = parsed(PreferencesConfig, [*argv, "--stop-graded", "30,5"])
    assert cfg.reward == ["concise", "enthusiastic"] and cfg.stop_graded == (30.0, 5.0)
    with pytest.raises(SystemExit):
        parsed(PreferencesConfig, [*argv, "--stop-graded", "30,0"])


def test_groups_and_hidden_fields():
    parser = argparse.ArgumentParser()
    add_options(parser, TrainConfig)
    group = next(g for g in parser._action_groups if g.title == VALIDATION)
    flags = [a.option_strings[0] for a in group._group_actions]
    assert flags[0] == "--val-data" and flags[-1] == "--max-refusal-share"
    parser = argparse.ArgumentParser()
    add_options(parser, JudgeConfig)
    dests = {a.dest for a in parser._actions}
    assert "max_response_length" not in dests and "grm_weight" in dests
    judge = parsed(JudgeConfig, REQUIRED)
    assert judge.max_response_length == JudgeConfig(data="", out="", base="").max_response_length


def test_an_option_is_a_dataclass_field_with_metadata():
    @dataclasses.dataclass
    class Example:
        count: int = option(3, help="how many", metavar="N")
        names: list[str] = option(factory=lambda: ["a", "b"])

    (count, names) = dataclasses.fields(Example)
    assert count.metadata == {"help": "how many", "metavar": "N"} and Example().count == 3
    assert Example().names == ["a", "b"] and Example().names is not Example().names
    parser = argparse.ArgumentParser()
    add_options(parser, Example)
    assert parser.parse_args([]).names == "a,b"  # the option's string, as it is typed
    assert config_from_args(Example, parser.parse_args(["--names", "c"])).names == ["c"]
