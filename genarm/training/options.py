"""Command-line options generated from a command's config dataclass.

Each field of the dataclass is the option ``--field-name``: its annotation gives the
option's type, its default the option's default (no default: a required option), and
``option(...)`` (a ``dataclasses.field`` with metadata) its help, group, choices,
metavar, nargs or a parser of its own. ``config_from_args`` turns the parsed options
back into the dataclass. One list of fields, where a command used to write each of
them three times (the dataclass, ``add_argument`` and the constructor call).

How a field becomes an option:

- ``bool`` with default False: a flag (``store_true``); with another default (True,
  or None: "decided later"), ``--name`` / ``--no-name``.
- ``list[X]`` (also ``list[X] | str``): one comma-separated option, as ``X`` values;
  with ``nargs`` in its metadata, space-separated values instead.
- ``X | None``: an option of type ``X`` whose default is None.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

_ARGPARSE_KEYS = ("help", "choices", "metavar", "nargs")


def option(
    default: Any = dataclasses.MISSING,
    *,
    factory: Callable[[], Any] | Any = dataclasses.MISSING,
    help: str | None = None,
    group: str | None = None,
    choices: Sequence[str] | None = None,
    metavar: str | None = None,
    nargs: str | None = None,
    parse: Callable[[str], Any] | None = None,
    cli: bool = True,
) -> Any:
    """A dataclass field that is also a command-line option (see the module's doc); typed
    Any, as ``dataclasses.field`` is, so that ``rank: int = option(8)`` type-checks.

    ``group``: the title of the help section it is listed in; ``parse``: the option's
    own type function; ``cli=False``: a field the command does not offer.
    """
    given = dict(help=help, group=group, choices=choices, metavar=metavar, nargs=nargs)
    metadata = {key: value for key, value in given.items() if value is not None}
    if parse is not None:
        metadata["parse"] = parse
    if not cli:
        metadata["cli"] = False
    return dataclasses.field(default=default, default_factory=factory, metadata=metadata)


def add_options(parser: argparse.ArgumentParser, config: type) -> None:
    """Add an option to ``parser`` for each field of the dataclass ``config``."""
    hints = typing.get_type_hints(config)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for field in _option_fields(config):
        title = field.metadata.get("group")
        if title is None:
            target = parser
        elif title in groups:
            target = groups[title]
        else:
            target = groups[title] = parser.add_argument_group(title)
        flag = "--" + field.name.replace("_", "-")
        target.add_argument(flag, **_argument(field, hints[field.name]))


def config_from_args(config: type, args: argparse.Namespace) -> Any:
    """The dataclass ``config`` from options that ``add_options`` added; the fields the
    command does not offer keep their defaults."""
    hints = typing.get_type_hints(config)
    values = {}
    for field in _option_fields(config):
        value = getattr(args, field.name)
        element, comma_list = _value_type(hints[field.name], field)
        if comma_list and isinstance(value, str):
            value = [element(part.strip()) for part in value.split(",") if part.strip()]
        values[field.name] = value
    return config(**values)


def _option_fields(config: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(config) if f.metadata.get("cli", True)]


def _value_type(hint: Any, field: dataclasses.Field) -> tuple[Any, bool]:
    """(the type of the option's values, whether they come as one comma-separated
    string): ``list[X] | str`` and ``list[X]`` are lists of X, ``X | None`` is X."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = [m for m in typing.get_args(hint) if m is not type(None)]
        lists = [m for m in members if typing.get_origin(m) is list]
        hint = lists[0] if lists else members[0]
    if typing.get_origin(hint) is list:
        return typing.get_args(hint)[0], "nargs" not in field.metadata
    return hint, False


def _argument(field: dataclasses.Field, hint: Any) -> dict[str, Any]:
    """``add_argument``'s keyword arguments for one field."""
    kwargs = {key: field.metadata[key] for key in _ARGPARSE_KEYS if key in field.metadata}
    default = field.default
    if field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    element, comma_list = _value_type(hint, field)
    if default is dataclasses.MISSING:
        kwargs["required"] = True
    elif element is bool:
        # False: a flag that turns it on; True or None ("decided later"): --x / --no-x.
        kwargs["action"] = "store_true" if default is False else argparse.BooleanOptionalAction
        kwargs["default"] = default
    elif comma_list:
        kwargs["default"] = ",".join(_comma_item(value) for value in default)
    else:
        kwargs["default"] = default
    parse = field.metadata.get("parse") or (element if element in (int, float) else None)
    if parse is not None and not comma_list:
        kwargs["type"] = parse
    return kwargs


def _comma_item(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
