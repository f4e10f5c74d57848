"""Command-line options from a frozen dataclass, each described in one place: the dataclass.

One `--field-name` per field, its help text read from the field's docstring.

The docstring convention is the attribute docstring (a string right below the field), as
`PpoArgs` and the examples' `Args` write them; tyro and simple-parsing read the same.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from typing import Any


def field_docs(cls: type) -> dict[str, str]:
    """Each field's attribute docstring, on one line ({} where the source cannot be read)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):  # e.g. a class without a source file
        return {}
    body = tree.body[0].body
    docs = {}
    for field, after in zip(body, body[1:], strict=False):
        if (isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[field.target.id] = " ".join(after.value.value.split())
    return docs


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Adds `--field-name` for every field of the dataclass `cls`.

    Each takes the field's type and default, and its docstring as help (bool fields become
    `--name/--no-name`).
    """
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        kind = _plain_type(hints[field.name])
        default = field.default
        if default is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        # argparse formats help with %: a literal % in a docstring must not break it.
        text = docs.get(field.name, "").replace("%", "%%")
        text = f"{text} (default: %(default)s)" if text else "(default: %(default)s)"
        flag = f"--{field.name.replace('_', '-')}"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                                help=text)
        else:
            parser.add_argument(flag, type=kind, default=default, help=text)


def _plain_type(hint: Any) -> Any:
    # `X | None` -> X (the default None stays the default).
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint
