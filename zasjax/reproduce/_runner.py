"""The one way a study runs: its config in, `summary.json`, a tidy CSV and figures out.

A study module declares

* `DESCRIPTION`: one line for `zasjax reproduce NAME --help`;
* `Config`: a frozen dataclass derived from `Config` below, checked on construction
  (`check`), whose defaults are the full study and whose `quick()` form is the CI size;
* `run(cfg, files=None) -> Outcome`: the computation, returning the summary, the CSV
  rows and whatever its figure needs (`files`, when given, lets a long study write partial
  results and keep checkpoints in the output folder);
* `figure(outcome, folder)`: its own figure(s).

`run` here owns everything around that: the checks that need the filesystem (before the
output folder is created), the output folder, the dtype (it switches x64 on for a float64
study; library modules never do), timing, the summary's metadata (study, quick, versions,
device) and the files. `ReproduceSpec` is one run as the command gives it (the study,
`--quick`, `--out` and the study's options); the command line is built from its fields and
the config's (`zasjax._options`, as for every command), so an option exists exactly when a
field does and is checked by the same code.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import sys
import time
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

from .. import _store
from .._options import Parser, add_options, cli_fields, given, option, show

SIZES = ("full", "quick")

# name -> module; imported lazily so `zasjax --help` stays fast.
REPRODUCTIONS: dict[str, str] = {
    name: f"zasjax.reproduce.{name}"
    for name in ("fig1", "fig2", "fig3", "shamir", "arora", "zou", "fig4", "dmf", "razin",
                 "woodworth", "incremental")
}


def load(name: str) -> types.ModuleType:
    """The module of study `name`."""
    if name not in REPRODUCTIONS:
        raise ValueError(f"unknown reproduction {name!r}; expected one of {sorted(REPRODUCTIONS)}")
    return importlib.import_module(REPRODUCTIONS[name])


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """Base of every study's configuration.

    `size` says which defaults it started from ("full" or "quick"); it is recorded as the
    summary's `quick` flag. Subclasses put the full study's values in their field
    defaults, the quick form's in `QUICK`, and their checks in `check`. List fields are
    stored as tuples, so a config is hashable and safe to share.
    """

    size: Literal["full", "quick"] = dataclasses.field(default="full",
                                                       metadata={"cli": False})
    #: field -> value of the quick (CI-sized) form.
    QUICK: ClassVar[Mapping[str, Any]] = {}

    def __post_init__(self):
        if self.size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {self.size!r}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        self.check()

    def check(self) -> None:
        """ValueError for a value the study cannot use (override; called on construction)."""

    @classmethod
    def quick(cls, **changes):
        """The CI-sized form of the study, with `changes` on top."""
        return cls(size="quick", **{**cls.QUICK, **changes})

    @classmethod
    def from_options(cls, base, options: Mapping[str, Any]):
        """`base` with the command-line `options` (field -> value) given."""
        return dataclasses.replace(base, **options)

    @property
    def dtype(self) -> str:
        """Array dtype of the study ("float64" or "float32")."""
        return "float64"

    def asdict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# Checks shared by the studies' configs
# ---------------------------------------------------------------------------------------------


def check_at_least(cfg, minimum: int, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if int(value) != value or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_positive(cfg, *names: str, allow_none: bool = False) -> None:
    """Each named field is a finite number > 0 (or a non-empty tuple of them)."""
    for name in names:
        value = getattr(cfg, name)
        if value is None and allow_none:
            continue
        values = value if isinstance(value, tuple) else (value,)
        if not values or not all(v == v and 0 < v < float("inf") for v in values):
            raise ValueError(f"{name} must be finite and > 0, got {value!r}")


def check_depths(cfg, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not value or min(value) < 1:
            raise ValueError(f"{name} must be positive integers, got {value!r}")


def check_known(cfg, name: str, known: Sequence[str]) -> None:
    value = getattr(cfg, name)
    unknown = [v for v in value if v not in known]
    if unknown or not value:
        raise ValueError(f"unknown {name} {unknown}; expected a non-empty list from "
                         f"{list(known)}")


# ---------------------------------------------------------------------------------------------
# Running a study
# ---------------------------------------------------------------------------------------------


class Outcome(NamedTuple):
    """What a study's `run` returns: the summary, the tidy CSV (`csv` defaults to
    `<study>.csv`) and whatever its `figure` draws from."""

    summary: dict
    rows: list
    columns: tuple
    plot: Any = None
    csv: str | None = None


class Files:
    """The output folder of one study run, and the one writer of its summary and CSV."""

    def __init__(self, folder: str | os.PathLike, study: str, cfg: Config):
        self.folder, self.study, self.cfg = Path(folder), study, cfg
        self.started = time.perf_counter()

    def path(self, *parts: str) -> Path:
        return self.folder.joinpath(*parts)

    def write(self, summary: Mapping[str, Any], rows: Sequence[Mapping], columns: Sequence[str],
              csv: str | None = None) -> dict:
        """Atomically write `summary.json` (with the run's metadata) and the CSV; returns
        the summary as written."""
        import jax

        from .._version import __version__

        full = {"study": self.study, "quick": self.cfg.size == "quick", **summary,
                "meta": {"seconds": round(time.perf_counter() - self.started, 2),
                         "zasjax": __version__, "jax": jax.__version__,
                         "device": str(jax.devices()[0].device_kind),
                         "x64": bool(jax.config.jax_enable_x64)}}
        _store.write_csv(self.path(csv or f"{self.study}.csv"), rows, columns)
        _store.write_json(self.path("summary.json"), full)
        return full


def study_of(cfg: Config) -> types.ModuleType:
    """The module that defines `cfg`'s class: its study."""
    module = sys.modules[type(cfg).__module__]
    for name in ("run", "figure"):
        if not callable(getattr(module, name, None)):
            raise TypeError(f"{module.__name__} defines no `{name}`: not a study")
    return module


def use_dtype(name: str) -> None:
    """Switch x64 on for a float64 study (a float32 study names its dtype explicitly)."""
    if name == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)


def run(cfg: Config, out: str | os.PathLike) -> dict:
    """Run the study `cfg` belongs to and write its outputs to `out`; returns the summary.

    Nothing is created until the config and the study's `preflight(cfg)` (checks that need
    the filesystem, e.g. a data folder) have passed, so bad input leaves no folder behind.
    """
    if not isinstance(cfg, Config):
        raise TypeError(f"expected a study config, got {type(cfg).__name__}")
    study = study_of(cfg)
    preflight = getattr(study, "preflight", None)
    if preflight is not None:
        preflight(cfg)
    os.makedirs(out, exist_ok=True)
    use_dtype(cfg.dtype)
    files = Files(out, study.__name__.rsplit(".", 1)[-1], cfg)
    outcome = study.run(cfg, files)
    summary = files.write(outcome.summary, outcome.rows, outcome.columns, outcome.csv)
    study.figure(outcome, files.folder)
    return summary


# ---------------------------------------------------------------------------------------------
# One `zasjax reproduce NAME` run, and its command line derived from the fields
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReproduceSpec:
    """One `zasjax reproduce NAME` run: the study `study` at its full size (or, `quick`, its
    CI size) with the study's own `options` (config field -> value) on top, written to the
    folder `out` (default `runs/<study>`). Checked on construction (`ValueError`), the
    study's config included: `config` is that config. The command's options are these
    fields and the study config's.
    """

    study: str = option(help="the study, a name of `zasjax.reproduce.REPRODUCTIONS`",
                        cli=False)  # on the command line, the subcommand NAME
    quick: bool = option(False, "the small CI-sized version", const=True)
    out: str | None = option(None, "output folder (default runs/NAME)", metavar="DIR")
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict,
                                                   metadata={"cli": False})
    config: Config = dataclasses.field(init=False, repr=False, metadata={"cli": False})

    def __post_init__(self):

        study = load(self.study)  # ValueError: not a study
        options = types.MappingProxyType(dict(self.options))
        known = [f.name for f in cli_fields(study.Config)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"study {self.study} has no option {', '.join(unknown)}; its "
                             f"options are {', '.join(known)}")
        base = study.Config.quick() if self.quick else study.Config()
        object.__setattr__(self, "options", options)
        object.__setattr__(self, "config", study.Config.from_options(base, options))
        if self.out is None:
            object.__setattr__(self, "out", f"runs/{self.study}")


def add_arguments(parser: argparse.ArgumentParser, config: type[Config]) -> list[str]:
    """One option per field of `config` (default None: not given); returns the fields. The
    help shows the full study's default and, where it differs, the quick one."""
    full, quick = config(), config.quick()

    def describe(f) -> str:
        a, b = getattr(full, f.name), getattr(quick, f.name)
        return f"default {show(a)}" + (f"; quick {show(b)}" if a != b else "")

    return add_options(parser, config, describe)


def add_study_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """The options of `zasjax reproduce NAME`: `ReproduceSpec`'s, then the study config's."""

    add_options(parser, ReproduceSpec)
    add_arguments(parser, load(name).Config)


def spec_of(name: str, args: argparse.Namespace) -> ReproduceSpec:
    """The checked `ReproduceSpec` of study `name` from the options parsed into `args`."""

    return ReproduceSpec(study=name, options=given(args, load(name).Config),
                         **given(args, ReproduceSpec))


def preflight(spec: ReproduceSpec) -> None:
    """The checks that need the filesystem (the study's `preflight`, e.g. a data folder,
    and the output folder's), before anything is written; ValueError if one fails."""
    study = study_of(spec.config)
    check = getattr(study, "preflight", None)
    if check is not None:
        check(spec.config)
    _store.check_folder(spec.out)


def parse(name: str, argv: Sequence[str] | None = None) -> tuple[Config, str]:
    """The config and output folder that `zasjax reproduce NAME [options]` asks for, checked
    (the study's `preflight` included) before anything is written. A bad option is a
    `ValueError` of one line; `--help` prints the options and raises `SystemExit(0)`."""

    study = load(name)
    parser = Parser(prog=f"zasjax reproduce {name}",
                    description=getattr(study, "DESCRIPTION", None))
    add_study_arguments(parser, name)
    spec = spec_of(name, parser.parse_args(argv))
    preflight(spec)
    return spec.config, spec.out


def main(name: str, argv: Sequence[str] | None = None) -> dict:
    """`zasjax reproduce NAME [--quick] [--out DIR] [options]`: parse, run, report."""
    cfg, out = parse(name, argv)
    summary = run(cfg, out)
    print(f"wrote {out}/summary.json")
    return summary


__all__ = ["Config", "Outcome", "Files", "ReproduceSpec", "option", "run", "parse", "main",
           "add_arguments", "add_study_arguments", "spec_of", "preflight", "check_at_least",
           "check_positive", "check_depths", "check_known"]
