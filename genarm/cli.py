"""The `genarm` command. Each subcommand lives in its own module, imported only
when used, so `genarm chat` never pays for importing vLLM or torch."""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module with `add_arguments(parser)` and `run(args) -> int`, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("genarm.server.cli", "start the OpenAI-compatible GenARM server"),
    "chat": ("genarm.clients.chat_cli", "chat with a running server in the terminal"),
    "prepare-demo": ("genarm.training.demo_models", "prepare the embedded demo base model"),
    "prepare-hh-rlhf": ("genarm.training.hh_rlhf", "convert and split HH-RLHF pairs"),
    "make-preferences": ("genarm.training.make_preferences", "build preference pairs by sampling"),
    "train-arm": ("genarm.training.train_arm", "train an autoregressive reward model (LoRA)"),
    "train-judge": (
        "genarm.training.train_judge",
        "train a Bradley-Terry judge (scalar-head LoRA)",
    ),
    "export-judge": (
        "genarm.training.judge_export",
        "write a judge as an HF sequence-classification folder (for reward_models)",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genarm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.set_defaults(_module=module)
        # Arguments are added lazily (below) so that --help of one command does
        # not import every other command's dependencies.
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] in COMMANDS:
        module = importlib.import_module(COMMANDS[argv[0]][0])
        cmd = argparse.ArgumentParser(prog=f"genarm {argv[0]}", description=COMMANDS[argv[0]][1])
        module.add_arguments(cmd)
        args = cmd.parse_args(argv[1:])
        return int(module.run(args) or 0)
    parser.parse_args(argv)  # prints usage / --help and exits
    return 2


if __name__ == "__main__":
    sys.exit(main())
