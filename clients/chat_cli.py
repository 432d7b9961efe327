"""`genarm chat`: talk to a running GenARM server from the terminal.

    genarm chat                          # interactive, streamed, with /commands
    genarm chat "Write a haiku"          # one-shot: prints just the answer
    echo "Write a haiku" | genarm chat -  # one-shot, prompt from stdin

Imports only the openai SDK (through genarm.clients.client), never torch/vLLM.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

import openai

from genarm.clients.client import API_KEY_ENV, DEFAULT_URL, Arm, GenARMClient
from genarm.clients.weight_args import WeightArgError, parse_weight_items, parse_weight_value
from genarm.reward_weights import RewardWeightError, resolve_reward_weights

HELP = """commands:
  /weight NAME VALUE   set one ARM's reward weight (0 = no guidance from it)
  /weights             show the ARMs and their current weights
  /reset               put every weight back to its starting value
  /clear               start a new conversation (weights are kept)
  /help                this text
  /quit                leave (Ctrl-D works too)"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "prompt",
        nargs="?",
        help="one-shot: send this prompt, print the answer and exit ('-' reads stdin)",
    )
    parser.add_argument(
        "--weight",
        "-w",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="reward weight of one ARM (repeatable); others keep the server's default",
    )
    parser.add_argument("--temperature", "-t", type=float, default=1.0)
    parser.add_argument("--max-tokens", "-n", type=int, default=256)
    parser.add_argument("--seed", type=int, default=None, help="sampling seed")
    parser.add_argument("--system", default=None, help="a system message")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"server root (default {DEFAULT_URL})")
    parser.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV),
        help=f"API key, if the server wants one (default: ${API_KEY_ENV})",
    )
    parser.add_argument("--model", default=None, help="model id (default: the server's)")


class UsageError(ValueError):
    """Something the user typed that cannot be sent (weight arguments included)."""


def check_weight(arms: list[Arm], name: str, value: float) -> None:
    """Catch a typo before it costs a round trip: the server's own rules
    (``genarm.reward_weights``) over the ARMs it lists."""
    try:
        resolve_reward_weights(arms, {name: value})
    except RewardWeightError as err:
        raise UsageError(str(err)) from None


def format_weights(arms: list[Arm], weights: dict[str, float]) -> str:
    width = max((len(arm.name) for arm in arms), default=4)
    lines = []
    for arm in arms:
        line = (
            f"  {arm.name:<{width}}  {weights[arm.name]:+.2f}"
            f"   [{arm.min_weight:g}, {arm.max_weight:g}], default {arm.default_weight:g}"
        )
        if arm.description:
            line += f"  - {arm.description}"
        lines.append(line)
    return "\n".join(lines) if lines else "  (this server has no ARMs: plain base model)"


def error_text(err: Exception) -> str:
    """The server's own words for an SDK error."""
    if isinstance(err, openai.APIStatusError):
        body = err.body if isinstance(err.body, dict) else {}
        message = body.get("message") or (body.get("error") or {}).get("message") or err.message
        return f"{err.status_code}: {message}"
    if isinstance(err, openai.APIConnectionError):
        return f"cannot reach the server ({err.__cause__ or err})"
    return str(err)


class ChatSession:
    """A conversation and its current weights."""

    def __init__(self, client: GenARMClient, args: argparse.Namespace, arms: list[Arm]) -> None:
        self.client = client
        self.args = args
        self.arms = arms
        self.start_weights = {arm.name: arm.default_weight for arm in arms}
        requested = parse_weight_items(args.weight)
        for name, value in requested.items():
            check_weight(arms, name, value)
        self.start_weights.update(requested)
        self.weights = dict(self.start_weights)
        self.messages: list[dict[str, str]] = []
        self.clear()

    def clear(self) -> None:
        self.messages = (
            [{"role": "system", "content": self.args.system}] if self.args.system else []
        )

    def ask(self, text: str, write: Callable[[str], Any]) -> str:
        """Send one user turn; ``write`` gets each streamed piece. Keeps the turn on success."""
        messages = [*self.messages, {"role": "user", "content": text}]
        pieces = []
        kwargs: dict[str, Any] = {
            "temperature": self.args.temperature,
            "max_tokens": self.args.max_tokens,
        }
        if self.args.seed is not None:
            kwargs["seed"] = self.args.seed
        for piece in self.client.chat_stream(messages, self.weights, **kwargs):
            pieces.append(piece)
            write(piece)
        answer = "".join(pieces)
        self.messages = [*messages, {"role": "assistant", "content": answer}]
        return answer

    def command(self, line: str, out: TextIO) -> bool:
        """Run one /command; False means quit."""
        parts = line.split()
        name, rest = parts[0].lower(), parts[1:]
        if name in ("/quit", "/exit", "/q"):
            return False
        if name == "/help":
            print(HELP, file=out)
        elif name == "/weights":
            print(format_weights(self.arms, self.weights), file=out)
        elif name == "/weight":
            if len(rest) != 2:
                raise UsageError("usage: /weight NAME VALUE")
            value = parse_weight_value(rest[1])
            check_weight(self.arms, rest[0], value)
            self.weights[rest[0]] = value
            print(f"{rest[0]} = {value:g}", file=out)
        elif name == "/reset":
            self.weights = dict(self.start_weights)
            print(format_weights(self.arms, self.weights), file=out)
        elif name == "/clear":
            self.clear()
            print("(new conversation)", file=out)
        else:
            raise UsageError(f"unknown command {name}; /help lists them")
        return True


def interactive(session: ChatSession, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    tty = stdin.isatty()
    if tty:
        try:
            import readline  # noqa: F401 - line editing and history for input()
        except ImportError:
            pass
    print(f"genarm chat with {session.client.model} at {session.args.url}", file=out)
    print(format_weights(session.arms, session.weights), file=out)
    print("type /help for commands, /quit to leave", file=out)

    def write(piece: str) -> None:
        out.write(piece)
        out.flush()

    while True:
        try:
            line = input("> ") if tty else _read_line(stdin, out)
        except (EOFError, KeyboardInterrupt):
            print(file=out)
            return 0
        line = line.strip()
        if not line:
            continue
        try:
            if line.startswith("/"):
                if not session.command(line, out):
                    return 0
                continue
            session.ask(line, write)
            print("\n", file=out)
        except (UsageError, WeightArgError) as e:
            print(f"error: {e}", file=err)
        except openai.OpenAIError as e:
            print(f"\nerror: {error_text(e)}", file=err)
        except KeyboardInterrupt:
            print("\n(interrupted)", file=out)  # the partial answer is not kept


def _read_line(stdin: TextIO, out: TextIO) -> str:
    # input() would write its prompt even when scripted; keep "> " so a
    # transcript reads like the session, then echo nothing back.
    out.write("> ")
    out.flush()
    line = stdin.readline()
    if not line:
        raise EOFError
    return line


def run(args: argparse.Namespace) -> int:
    client = GenARMClient(args.url, args.api_key, args.model, max_retries=0, timeout=600)
    try:
        arms = client.arms()
        _ = client.model
        session = ChatSession(client, args, arms)
    except (UsageError, WeightArgError) as e:
        print(f"genarm chat: {e}", file=sys.stderr)
        return 2
    except (openai.OpenAIError, ValueError) as e:
        print(f"genarm chat: {error_text(e)}", file=sys.stderr)
        return 1
    try:
        if args.prompt is None:
            return interactive(session, sys.stdin, sys.stdout, sys.stderr)
        prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
        try:
            session.ask(prompt, lambda piece: (sys.stdout.write(piece), sys.stdout.flush()))
        except openai.OpenAIError as e:
            print(f"\ngenarm chat: {error_text(e)}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        sys.stdout.write("\n")
        return 0
    finally:
        client.close()
