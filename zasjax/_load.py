"""Results as data: a sweep's (or a study's) folder read back as a typed pandas DataFrame.

A sweep folder holds `config.json` and its tables in one of two formats, whichever the
sweep wrote: `results.csv` / `runs.csv` (small sweeps), or `results.parquet/` /
`runs.parquet/`, each a folder of Parquet part files (`part-*.parquet`, read in file-name
order) for large ones. A study folder (`zasjax reproduce NAME --out DIR`) holds
`summary.json` and the study's CSV (`<study>.csv`; `accuracy.csv` for fig4).

Whatever the format, a column means the same thing and has the same type (`SCHEMA`), so
two sweeps, or a sweep and a study, compare with plain pandas.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ._schema import FILLS, PANDAS, REQUIRED, as_row, columns, config_key
from ._status import NAMES as STATUS_NAMES

#: The columns of a sweep's tables and their pandas dtypes (declared in `_schema`):
#: `iterations` and `observations` are nullable integers (`pd.NA`: never reached ε; not a
#: completion/sensing run); `init_scale` and the measures are NaN where a run has none.
SCHEMA = PANDAS
#: Every sweep table has these; the other columns of `SCHEMA` are filled in when a sweep of
#: an earlier version did not write them (`objective` "whitened", the rest missing).
_FILLS = FILLS


def load_sweep(path: str | os.PathLike, runs: bool = False, arrays: bool = False):
    """The results of the sweep (or study) in folder `path`, as a typed `pandas.DataFrame`.

    Sweep folder: one row per configuration, from `results.parquet/` or `results.csv`
    (Parquet first, if both are there); `runs=True` reads every run instead (every
    learning rate, pruned ones included), from `runs.parquet/` or `runs.csv`. Columns
    follow `SCHEMA`: `dim`, `depth`, `seed`, `steps` (and a Parquet table's `index`) are
    int64; `iterations` and `observations` nullable `Int64` (`pd.NA` where missing); `lr`,
    `final_loss`, `init_scale` and the measures float64 (NaN where missing); `status` a
    categorical over `zasjax.STATUS_NAMES`' names; `init`, `target`, `optimizer` and
    `objective` strings. `df.attrs["config"]` is the folder's `config.json`.

    Study folder (`summary.json` and its CSV): one row per row of the study's CSV, the
    columns `SCHEMA` names typed as above (`status` also allows a study's own values, e.g.
    dmf's "solved"), the others as pandas reads them; `df.attrs["summary"]` is
    `summary.json` and `df.attrs["config"]` its `config` entry (if any).

    `arrays=True` (a sweep run with `save`, e.g. `--save end-to-end`): each saved array
    as a column of numpy arrays aligned with the rows (`end_to_end`: the final end-to-end
    matrix, `(d, d)`, or a diagonal network's β, `(d,)`; `learning_times`: `(k,)`, each
    mode's learning time, `zasjax.learning_times`), None for a row without one.

    Raises `ValueError`, saying what was expected, for a folder that holds neither.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"{os.fspath(path)!r} is not a folder; expected a sweep folder "
                         "(config.json and results.csv or results.parquet/) or a study "
                         "folder (summary.json and its CSV)")
    name = "runs" if runs else "results"
    table = _table_of(folder, name)
    if table is not None:
        df = _typed(_read(table), table, sweep=True)
        df.attrs["config"] = _json(folder / "config.json")
        if arrays:
            _add_arrays(df, folder)
        return df
    if (folder / "summary.json").exists():
        if runs:
            raise ValueError(f"{os.fspath(path)!r} is a study folder: it has one table, not "
                             "runs; call load_sweep without runs=True")
        summary = _json(folder / "summary.json")
        table = _study_table(folder, summary)
        df = _typed(_read(table), table, sweep=False)
        df.attrs["summary"] = summary
        df.attrs["config"] = summary.get("config", {}) if isinstance(summary, dict) else {}
        return df
    if not runs and _table_of(folder, "runs") is not None:
        raise ValueError(f"{os.fspath(path)!r} holds runs but no results table: the sweep has "
                         "not finished (resume it); load_sweep(path, runs=True) reads the "
                         "runs so far")
    raise ValueError(f"{os.fspath(path)!r} holds no {name}.csv or {name}.parquet/ (a sweep "
                     "folder) nor summary.json (a study folder); expected the --out folder "
                     "of `zasjax sweep` or `zasjax reproduce`")


def _add_arrays(df, folder: Path) -> None:
    saved = sorted((folder / "arrays").glob("grid-*/*")) if (folder / "arrays").is_dir() \
        else []
    if not saved:
        raise ValueError(f"{os.fspath(folder)!r} holds no saved arrays; run the sweep with "
                         "save=('end-to-end',) (--save end-to-end, learning-times)")
    names = sorted({p.name for p in saved})
    rows = df.astype(object).where(df.notna(), None).to_dict("records")
    keys = [repr(config_key(as_row(r))) for r in rows]
    for name in names:
        found = {}
        for grid in sorted((folder / "arrays").glob("grid-*")):
            found.update(read_arrays(grid / name))
        df[name.replace("-", "_")] = [found.get(k) for k in keys]


def read_arrays(folder: Path) -> dict[str, object]:
    """Configuration key (text) -> array, of every file `save_arrays` wrote in `folder` (a
    configuration saved twice, by a chunk rerun after a kill, holds the same array)."""
    import numpy as np

    out: dict[str, object] = {}
    if not folder.is_dir():
        return out
    for p in sorted(folder.iterdir()):
        if p.name.startswith("arrays-") and p.suffix == ".npz":
            with np.load(p) as f:
                out.update(zip(f["keys"].tolist(), f["values"]))
    return out


def _table_of(folder: Path, name: str) -> Path | None:
    for candidate in (folder / f"{name}.parquet", folder / f"{name}.csv"):
        if candidate.exists():
            return candidate
    return None


def _study_table(folder: Path, summary) -> Path:
    # The study writes `<study>.csv`, unless it names its own (fig4: accuracy.csv).
    study = summary.get("study") if isinstance(summary, dict) else None
    if study and (folder / f"{study}.csv").exists():
        return folder / f"{study}.csv"
    csvs = sorted(p for p in folder.glob("*.csv") if p.name != "runs.csv")
    if len(csvs) != 1:
        raise ValueError(f"study folder {os.fspath(folder)!r} should hold one CSV "
                         f"(<study>.csv), found {[p.name for p in csvs]}")
    return csvs[0]


def _json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{os.fspath(path)!r} is not readable JSON ({e})") from None


def parts(folder: Path) -> list[Path]:
    """The Parquet part files of a columnar table, in the order they are read: every
    `*.parquet` file in file-name order, leaving out temporary ones (`.name`, `*.tmp`)."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix == ".parquet" and not p.name.startswith("."))


def _read(table: Path):
    import pandas as pd

    if table.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        files = parts(table) if table.is_dir() else [table]
        try:
            pieces = [pq.read_table(p) for p in files]
        except (OSError, pa.ArrowException) as e:
            raise ValueError(f"{os.fspath(table)!r}: a part file is not readable Parquet "
                             f"({e})") from None
        if not pieces:
            return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns()})
        return pa.concat_tables(pieces, promote_options="default").to_pandas()
    # Known columns are read as text (typed below, empty cell = missing); the rest inferred.
    try:
        return pd.read_csv(table, dtype={c: str for c in SCHEMA}, keep_default_na=False,
                           na_values=[""])
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{os.fspath(table)!r} is not a readable CSV ({e})") from None


def _typed(df, table: Path, *, sweep: bool):
    """`df` with the `SCHEMA` columns it has converted (a sweep's: all of them)."""
    import pandas as pd

    if sweep:
        missing = [c for c in REQUIRED if c not in df.columns]
        if missing:
            raise ValueError(f"{os.fspath(table)!r} lacks the column(s) {missing}; expected "
                             f"a sweep's table with at least {list(REQUIRED)}")
        for c in SCHEMA:
            if c not in df.columns and c not in ("index", "tuned"):
                df[c] = _FILLS.get(c)
    out = {}
    for c in df.columns:
        kind = SCHEMA.get(c)
        try:
            out[c] = df[c] if kind is None else _status(df[c], sweep) if kind == "status" \
                else _boolean(df[c]) if kind == "boolean" else df[c].astype(kind)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{os.fspath(table)!r}, column {c!r}: expected {kind} values "
                             f"({e})") from None
    return pd.DataFrame(out, index=pd.RangeIndex(len(df)))


def _status(column, strict: bool):
    import pandas as pd

    seen = [str(v) for v in pd.unique(column.dropna())]
    extra = sorted(set(seen) - set(STATUS_NAMES))
    if strict and extra:
        raise ValueError(f"unknown status {extra}; expected names from {list(STATUS_NAMES)}")
    return column.astype(pd.CategoricalDtype([*STATUS_NAMES, *extra]))


def _boolean(column):
    if column.dtype == object or str(column.dtype) in ("str", "string"):
        text = column.astype("string").str.lower()
        if not text.dropna().isin(["true", "false"]).all():
            raise ValueError("expected True or False")
        column = text.map({"true": True, "false": False}, na_action="ignore")
    return column.astype("boolean")


__all__ = ["load_sweep", "SCHEMA", "REQUIRED", "parts"]
