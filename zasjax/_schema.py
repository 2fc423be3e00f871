"""The row of a sweep, declared once: every column's name, types and role.

results.csv and runs.csv (their header), the Parquet schema, `load_sweep`'s dtypes, the
normalisation of a row read back (`as_row`) and a configuration's identity (`config_key`)
all derive from `COLUMNS`. An objective's measures add float columns after the
built-in ones (`columns(measures)`).
"""

from __future__ import annotations

from typing import NamedTuple


class Column(NamedTuple):
    """One column: `kind` the Python type of a cell, `arrow` its Arrow type, `pandas` the
    dtype `load_sweep` gives it ("status": the status categorical), `role` "key" (part of a
    configuration's identity), "result", "measure" or "extra" (written by some tables
    only), `nullable` whether a cell may be missing (None), `fill` the value of a row from a
    sweep of an earlier version that lacks the column."""

    name: str
    kind: type
    arrow: str
    pandas: str
    role: str
    nullable: bool = False
    fill: object = None


def _measure(name: str) -> Column:
    return Column(name, float, "float64", "float64", "measure", True)


#: The columns of every sweep, in file order (measures of the built-in objectives last).
COLUMNS: tuple[Column, ...] = (
    Column("init", str, "string", "string", "key"),
    Column("target", str, "string", "string", "key"),
    Column("dim", int, "int64", "int64", "key"),
    Column("depth", int, "int64", "int64", "key"),
    Column("seed", int, "int64", "int64", "key"),
    Column("lr", float, "float64", "float64", "key"),
    Column("optimizer", str, "string", "string", "key"),
    Column("iterations", int, "int64", "Int64", "result", True),
    Column("final_loss", float, "float64", "float64", "result"),
    Column("status", str, "string", "status", "result"),
    Column("steps", int, "int64", "int64", "result"),
    Column("objective", str, "string", "string", "key", fill="whitened"),
    Column("model", str, "string", "string", "key", fill="dense"),
    Column("observations", int, "int64", "Int64", "key", True),
    Column("init_scale", float, "float64", "float64", "key", True),
    *map(_measure, ("reconstruction_error", "unobserved_error", "effective_rank",
                    "nuclear_norm")),
)
#: Columns some tables add: a Parquet table's grid position, whether a table was tuned.
EXTRAS: tuple[Column, ...] = (
    Column("index", int, "int64", "int64", "extra"),
    Column("tuned", bool, "bool_", "boolean", "extra", True),
)
BY_NAME = {c.name: c for c in COLUMNS + EXTRAS}
#: A configuration's identity, in this order (`config_key`).
KEY = tuple(c.name for c in COLUMNS if c.role == "key")
#: The built-in measures (every sweep writes these columns, empty where a run has none).
MEASURES = tuple(c.name for c in COLUMNS if c.role == "measure")
#: Every table has these; the others are filled in for tables of earlier versions.
#: (The nullable key columns and those with a fill came after the first tables.)
REQUIRED = tuple(c.name for c in COLUMNS if c.role in ("key", "result") and c.fill is None
                 and not (c.role == "key" and c.nullable))


def column(name: str) -> Column:
    """The column `name`; a name no table declares is a measure (float, nullable)."""
    return BY_NAME.get(name) or _measure(name)


def columns(measures=()) -> tuple[str, ...]:
    """The column names of a sweep whose objectives measure `measures` (beyond the
    built-in ones), in file order."""
    extra = tuple(m for m in dict.fromkeys(measures) if m not in BY_NAME)
    return tuple(c.name for c in COLUMNS) + extra


def as_row(r: dict, names=None) -> dict:
    """A row (fresh, or read back from CSV or Parquet, where every cell may be text or
    missing) in the types of `COLUMNS`: an empty cell, or a column a sweep of an earlier
    version did not write, is None (or the column's `fill`). `names`: the columns to keep
    (default `columns()` plus any measure `r` has)."""
    names = names or columns(k for k in r if k not in BY_NAME)
    out = {}
    for name in names:
        c = column(name)
        v = r.get(name)
        if v is None or v == "" or (c.kind is not str and isinstance(v, float) and v != v
                                    and c.nullable):
            if not (c.nullable or c.fill is not None or c.role == "measure"):
                raise KeyError(f"column {name!r} has no value")
            out[name] = c.fill
        elif c.kind is bool:
            out[name] = v if isinstance(v, bool) else str(v) == "True"
        else:
            out[name] = c.kind(v)
    return out


def config_key(row: dict) -> tuple:
    """Hashable identity of a configuration (the `KEY` columns, in order), equal for a fresh
    row and one read back."""
    return tuple(as_row(row, KEY)[k] for k in KEY)


def arrow_schema(names, *, index: bool = False, tuned: bool = False):
    """The Arrow schema of a table with columns `names` (and `index`, `tuned`)."""
    import pyarrow as pa

    names = [*names, *(["tuned"] if tuned else []), *(["index"] if index else [])]
    return pa.schema([pa.field(n, getattr(pa, column(n).arrow)()) for n in names])


#: The pandas dtype of every declared column (`load_sweep`).
PANDAS = {c.name: c.pandas for c in COLUMNS + EXTRAS}
#: Values for columns that tables of earlier versions lack.
FILLS = {c.name: c.fill for c in COLUMNS if c.fill is not None}

__all__ = ["Column", "COLUMNS", "EXTRAS", "KEY", "MEASURES", "REQUIRED", "column", "columns",
           "as_row", "config_key", "arrow_schema", "PANDAS", "FILLS"]
