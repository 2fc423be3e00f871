"""Command-line options derived from the fields of frozen, checked dataclasses.

An option is declared once, as a field (`option(...)` carries its help and, where the
type does not say it, how to read it); the command line is built from the fields, and the
dataclass's own checks run on what was given. Studies' configs, `SweepSpec`, `Grid`,
`Processes`, `FlowSpec`, `PlotSpec`, `ReproduceSpec` and `BenchSpec` are all read this way.

Options are not given a default on the command line: a field left out keeps the value the
dataclass (or the caller's base object) gives it. Text is read by the field's `parse`, or
by the package's one list parser (`_lists`) for tuple fields; a bad value is a usage error
of one line, naming the option.

This is the one derivation every `zasjax` command goes through (`sweep`, `flow`, `plot`,
`reproduce`, `bench`): `add_options` builds the options, `given` reads back those given,
and `Parser` turns every usage error into a `ValueError`, which the command reports as one
line with exit status 2, as it does a `ValueError` raised by the object's own checks. A
small derivation of our own rather than tyro or jsonargparse: it is these four functions,
and it reads the package's own list syntax (`1:4`, `1e-3:1:5`).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal


def option(default: Any = dataclasses.MISSING, help: str = "", *, flag: str | None = None,
           parse: Callable[[str, str], Any] | None = None, const: Any = None,
           metavar: str | None = None, repeat: bool = False, cli: bool = True,
           positional: bool = False):
    """A dataclass field with its command-line form.

    `flag` overrides `--field-name`; `parse(text, flag_name)` reads the text (default: from
    the field's type); `const` makes a switch that sets the field to that value; `repeat`
    lets the option be given several times, the field getting the tuple of the values;
    `cli=False` keeps the field off the command line; `positional` makes it an argument
    without a flag (a tuple field: one or more words, `metavar` naming one).
    """
    return dataclasses.field(default=default, metadata=dict(
        help=help, flag=flag, parse=parse, const=const, metavar=metavar, repeat=repeat,
        cli=cli, positional=positional))


def flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def cli_fields(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]


class _Parse:
    """argparse's `type=`: the field's reader, its errors turned into usage errors."""

    def __init__(self, read: Callable[[str, str], Any], name: str, what: str):
        self.read, self.name, self.__name__ = read, name, what

    def __call__(self, text: str):
        try:
            return self.read(text, self.name)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None


def _strip_none(tp):
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _scalar(kind: type) -> Callable[[str, str], Any]:
    def read(text: str, name: str):
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"--{name} expects {'an integer' if kind is int else 'a number'}"
                             f", got {text!r}") from None
    return read


def _list(kind: type) -> Callable[[str, str], tuple]:
    from ._lists import PARSERS

    return lambda text, name: tuple(PARSERS[kind](text, name))


def _argument(f: dataclasses.Field, tp) -> dict:
    """argparse keywords for field `f` of type `tp`."""
    name = flag(f).lstrip("-")
    if f.metadata.get("const") is not None:
        return dict(action="store_const", const=f.metadata["const"])
    if f.metadata.get("parse") is not None:
        return dict(type=_Parse(f.metadata["parse"], name, "value"),
                    metavar=f.metadata.get("metavar"),
                    **({"action": "append"} if f.metadata.get("repeat") else {}))
    tp = _strip_none(tp)
    origin = typing.get_origin(tp)
    if tp is bool:
        return dict(action=argparse.BooleanOptionalAction)
    if origin is Literal:
        return dict(choices=typing.get_args(tp))
    if origin in (tuple, Sequence):
        kind = typing.get_args(tp)[0]
        return dict(type=_Parse(_list(kind), name, f"list of {kind.__name__}"),
                    metavar=f.metadata.get("metavar") or "A,B,...")
    if tp in (int, float):
        return dict(type=_Parse(_scalar(tp), name, tp.__name__),
                    metavar=f.metadata.get("metavar"))
    if tp is str:
        return dict(metavar=f.metadata.get("metavar"))
    raise TypeError(f"no command-line form for field {f.name} of type {tp}")


def _positional(f: dataclasses.Field, tp) -> dict:
    """argparse keywords for the positional field `f` of type `tp`."""
    tp = _strip_none(tp)
    many = typing.get_origin(tp) in (tuple, Sequence)
    kind = typing.get_args(tp)[0] if many else tp
    if kind not in (str, int, float):
        raise TypeError(f"no positional form for field {f.name} of type {tp}")
    keywords = dict(metavar=f.metadata.get("metavar") or f.name.upper(),
                    nargs="+" if many else None)
    if kind is not str:
        keywords["type"] = _Parse(_scalar(kind), f.name, kind.__name__)
    return keywords


def show(value) -> str:
    """A default as the help text shows it."""
    if isinstance(value, tuple):
        return ",".join(show(v) for v in value) if value else "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def add_options(parser, cls, describe: Callable[[dataclasses.Field], str] | None = None,
                skip: tuple[str, ...] = ()) -> list[str]:
    """One option per command-line field of `cls` (not given: None); returns the fields.

    `describe(field)` is the default as the help shows it (default: the class default).
    """
    hints = typing.get_type_hints(cls)
    names = []
    for f in cli_fields(cls):
        if f.name in skip:
            continue
        if f.metadata.get("positional"):
            parser.add_argument(f.name, help=f.metadata.get("help", "").replace("%", "%%"),
                                **_positional(f, hints[f.name]))
            names.append(f.name)
            continue
        if describe is not None:
            default = describe(f)
        elif f.default is not None and f.metadata.get("const") is None:
            default = f"default {show(f.default)}"
        else:
            default = ""
        help = f.metadata.get("help", "") + (f" ({default})" if default else "")
        parser.add_argument(flag(f), dest=f.name, default=None, help=help.replace("%", "%%"),
                            **_argument(f, hints[f.name]))
        names.append(f.name)
    return names


def given(args: argparse.Namespace, names) -> dict[str, Any]:
    """The options among `names` (field names, or a dataclass: its command-line fields)
    given on the command line (field -> value)."""
    if isinstance(names, type):
        names = [f.name for f in cli_fields(names)]
    return {n: tuple(v) if isinstance(v, list) else v
            for n in names if (v := getattr(args, n, None)) is not None}


def replace(obj, options: Mapping[str, Any]):
    """`obj` with `options` (field -> value), checked again by its constructor."""
    return dataclasses.replace(obj, **options)


class Parser(argparse.ArgumentParser):
    """argparse, whose usage errors are `ValueError`s of one line: the caller reports them
    as it reports a failed check (`zasjax: error: ...`, exit 2), and nothing exits the
    process. `--help` still ends in argparse's `SystemExit(0)`, after printing."""

    def error(self, message: str) -> typing.NoReturn:
        raise ValueError(" ".join(message.split()))
