"""`zj.load_sweep`: a sweep's (or study's) folder read back as a typed DataFrame, from CSV
or from a folder of Parquet parts, every column's type and value as the sweep returned it."""

import json
import math

import numpy as np
import pandas as pd
import pytest

import zasjax as zj
from zasjax import _store
from zasjax._load import SCHEMA
from zasjax._status import NAMES
from zasjax._sweep import COLUMNS, config_key

GRID = dict(targets=("neg-identity", "gaussian"), dims=(1,), depths=(1, 2, 3),
            seeds=(0, 1, 2), lrs=(0.05, 0.5), max_iters=300)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A real sweep folder (converged, diverged and capped rows) and the rows it returned."""
    out = tmp_path_factory.mktemp("load") / "sweep"
    rows = zj.sweep(zj.Grid(**GRID), out=str(out), progress=False)
    assert {r["status"] for r in rows} == {"converged", "diverged", "max-iters"}
    return out, rows


def _same(value, expected) -> bool:
    if expected is None:
        return value is pd.NA or (isinstance(value, float) and math.isnan(value))
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(value, float) and math.isnan(value)
    return value == expected and type(value) is type(expected)


def _python(value):
    # numpy scalars as Python values, so a type mismatch shows (int64 -> int, float64 -> float)
    return value.item() if isinstance(value, np.generic) else value


def _check_types(df):
    for column, kind in SCHEMA.items():
        if column not in df.columns:
            continue
        if kind == "status":
            assert isinstance(df[column].dtype, pd.CategoricalDtype), column
            assert list(df[column].cat.categories) == list(NAMES)
        elif kind == "string":
            assert isinstance(df[column].dtype, pd.StringDtype), (column, df[column].dtype)
        else:
            assert df[column].dtype == kind, (column, df[column].dtype)


def _check_rows(df, rows):
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == len(rows)
    for i, row in enumerate(rows):
        for c in COLUMNS:
            value = _python(df[c].iloc[i])
            assert _same(value, row[c]), (i, c, value, row[c])


def test_results_round_trip_every_column(swept):
    out, rows = swept
    df = zj.load_sweep(out)
    _check_types(df)
    _check_rows(df, rows)
    assert df.attrs["config"] == json.loads((out / "config.json").read_text())
    assert df.attrs["config"]["grids"][0]["depths"] == [1, 2, 3]
    # missing iterations are <NA>, exactly the rows that did not converge
    assert (df["iterations"].isna() == (df["status"] != "converged")).all()


def test_runs_are_every_run(swept):
    out, rows = swept
    runs = zj.load_sweep(out, runs=True)
    _check_types(runs)
    order = sorted(range(len(runs)), key=lambda i: config_key(
        {c: _python(runs[c].iloc[i]) for c in ("init", "target", "dim", "depth", "seed", "lr",
                                               "optimizer", "objective")}))
    by_key = sorted(rows, key=config_key)
    _check_rows(runs.iloc[order].reset_index(drop=True), by_key)


def _write_parquet(folder, rows, parts):
    """`rows` as a columnar table of `parts` part files, as large sweeps write them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir()
    kinds = {"int64": pa.int64(), "Int64": pa.int64(), "float64": pa.float64(),
             "string": pa.string(), "status": pa.string()}
    schema = pa.schema([("index", pa.int64())] + [(c, kinds[SCHEMA[c]]) for c in COLUMNS])
    for k, chunk in enumerate(np.array_split(np.arange(len(rows)), parts)):
        table = pa.Table.from_pylist([{"index": int(i), **rows[i]} for i in chunk], schema)
        pq.write_table(table, folder / f"part-{k:05d}.parquet")
    (folder / ".part-99999.parquet").write_bytes(b"being written")  # ignored: temporary
    (folder / "part-99999.parquet.tmp").write_bytes(b"being written")


def test_parquet_parts_read_in_order_and_preferred(swept, tmp_path):
    out, rows = swept
    folder = tmp_path / "big"
    folder.mkdir()
    _write_parquet(folder / "results.parquet", rows, 3)
    _store.write_csv(folder / "results.csv", rows[:1], COLUMNS)  # stale: Parquet wins
    (folder / "config.json").write_text('{"tune_lr": false}')
    df = zj.load_sweep(folder)
    assert df["index"].dtype == "int64" and df["index"].tolist() == list(range(len(rows)))
    _check_types(df)
    _check_rows(df.drop(columns="index"), rows)
    assert df.attrs["config"] == {"tune_lr": False}
    from_csv = zj.load_sweep(out)
    pd.testing.assert_frame_equal(df.drop(columns="index"), from_csv)


def test_runs_parquet_and_an_empty_table(swept, tmp_path):
    _, rows = swept
    _write_parquet(tmp_path / "runs.parquet", rows, 2)
    _check_rows(zj.load_sweep(tmp_path, runs=True).drop(columns="index"), rows)
    (tmp_path / "results.parquet").mkdir()
    empty = zj.load_sweep(tmp_path)
    assert len(empty) == 0 and list(empty.columns) == list(COLUMNS)
    _check_types(empty)


def test_a_study_folder_loads_its_table(tmp_path):
    from zasjax.reproduce import _runner, shamir

    rows = [dict(init="zas", depth=4, seed=0, lr=0.25, iterations=17, status="converged",
                 final_loss=1e-11, chosen=True),
            dict(init="xavier", depth=4, seed=1, lr=0.5, iterations=None, status="max-iters",
                 final_loss=0.5, chosen=False)]
    files = _runner.Files(tmp_path, "shamir", shamir.Config.quick())
    files.write({"growth": 1.5, "config": {"depths": [4]}}, rows, shamir.COLUMNS)
    df = zj.load_sweep(tmp_path)
    assert list(df.columns) == list(shamir.COLUMNS)
    assert df["depth"].dtype == "int64" and df["iterations"].dtype == "Int64"
    assert df["iterations"].tolist()[0] == 17 and df["iterations"].isna().tolist() == [False,
                                                                                        True]
    assert df["status"].tolist() == ["converged", "max-iters"]
    assert isinstance(df["status"].dtype, pd.CategoricalDtype)
    assert df["chosen"].dtype == bool and df["chosen"].tolist() == [True, False]
    assert df.attrs["summary"]["study"] == "shamir" and df.attrs["config"] == {"depths": [4]}
    with pytest.raises(ValueError, match="study folder"):
        zj.load_sweep(tmp_path, runs=True)


def test_what_is_not_a_sweep_is_refused(swept, tmp_path):
    out, rows = swept
    with pytest.raises(ValueError, match="not a folder"):
        zj.load_sweep(tmp_path / "absent")
    with pytest.raises(ValueError, match="results.csv or results.parquet"):
        zj.load_sweep(tmp_path)
    _store.write_csv(tmp_path / "runs.csv", rows[:2], COLUMNS)
    with pytest.raises(ValueError, match="not finished.*runs=True"):
        zj.load_sweep(tmp_path)
    _store.write_csv(tmp_path / "results.csv", rows[:2], COLUMNS[:5])
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['lr'"):
        zj.load_sweep(tmp_path)
    _store.write_csv(tmp_path / "results.csv", [{**rows[0], "status": "exploded"}], COLUMNS)
    with pytest.raises(ValueError, match="'status'.*unknown status \\['exploded'\\]"):
        zj.load_sweep(tmp_path)
    _store.write_csv(tmp_path / "results.csv", [{**rows[0], "depth": "deep"}], COLUMNS)
    with pytest.raises(ValueError, match="column 'depth': expected int64"):
        zj.load_sweep(tmp_path)
    (tmp_path / "results.csv").unlink()
    (tmp_path / "results.parquet").mkdir()
    (tmp_path / "results.parquet" / "part-0.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="not readable Parquet"):
        zj.load_sweep(tmp_path)
