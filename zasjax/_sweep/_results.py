"""Where a sweep's rows go: CSV for small sweeps, Parquet parts for large ones.

Up to `CSV_MAX_ROWS` configurations a sweep writes `runs.csv` (rows appended as they finish)
and `results.csv` (the table, at the end), and keeps its rows in memory. Beyond, it writes
two folders of Parquet files (pyarrow), each written whole and moved into place:

- `runs.parquet/run-<first>-<last>-<n>.parquet`: the rows that finished in one chunk,
  `first`/`last` the least and greatest grid position (`index` column) among them;
- `results.parquet/part-<start>-<end>.parquet`: the table's rows of the grid positions
  `start..end-1` (every rate, or with tuning the best per configuration), written when the
  slice that ran them ends.

A resume takes the covered ranges from the results file names, and reads only the run
files not wholly inside them: the host holds the rows of the slices in flight, never the
grid's. `zasjax.load_sweep` reads either format.
"""

from __future__ import annotations

import bisect
import errno
import glob
import io
import os
import re

import numpy as np

from .. import _store
from .._errors import InputError, OutputError
from .._schema import arrow_schema, as_row, columns, config_key

#: Beyond this many configurations a sweep writes Parquet (a CSV of a million rows is about
#: 150 MB, is rewritten by no one and read whole by every tool).
CSV_MAX_ROWS = 1_000_000
FORMATS = ("auto", "csv", "parquet")
#: Bytes per row, roughly: for the plan's estimate of the results' size.
ROW_BYTES = {"csv": 160, "parquet": 48}
#: A write that fails for one of these is the disk's or the folder's, not a bug.
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG)


def choose_format(size: int, requested: str = "auto") -> str:
    if requested != "auto":
        return requested
    return "csv" if size <= CSV_MAX_ROWS else "parquet"


def existing_format(out: str) -> str | None:
    """The format a sweep folder already holds, if any."""
    if os.path.isdir(os.path.join(out, "runs.parquet")):
        return "parquet"
    if os.path.exists(os.path.join(out, "runs.csv")):
        return "csv"
    return None


def writing(path: str, need: int):
    """A context turning a full disk or an unwritable folder into an `OutputError`: one line
    naming the file and `need`, the bytes the rest of the sweep needs (an estimate)."""
    return _Writing(path, need)


def rows_bytes(rows: int, fmt: str) -> int:
    """Roughly what `rows` rows take in runs and results together."""
    return 2 * rows * ROW_BYTES[fmt]


class _Writing:
    def __init__(self, path, need):
        self.path, self.need = path, need

    def __enter__(self):
        return self

    def __exit__(self, kind, e, tb):
        if isinstance(e, OSError) and not isinstance(e, OutputError) and \
                e.errno in DISK_ERRORS:
            raise OutputError.of(e, self.path, self.need) from None
        return False


class CsvSink:
    """runs.csv, appended per chunk (the sweep keeps every row: it returns them)."""

    fmt = "csv"

    def __init__(self, out: str | None, index, resume: bool, columns=columns()):
        self.index, self.columns = index, tuple(columns)
        self.path = os.path.join(out, "runs.csv") if out else None
        self.rows: dict[int, dict] = {}        # position -> row read back, until handed over
        if self.path and resume and os.path.exists(self.path):
            for r in read_runs(self.path):
                p = index.position(r)
                if p >= 0:
                    self.rows[p] = r
        self.count = len(self.rows)

    def resumed(self) -> dict[int, dict]:
        rows, self.rows = self.rows, {}
        return rows

    def done(self) -> int:
        return self.count

    def uncovered(self, start: int, count: int) -> list[tuple[int, int]]:
        return [(start, count)]

    def append(self, rows: list[dict], positions: list[int]) -> None:
        self.count += len(rows)
        if self.path:
            with writing(self.path, rows_bytes(self.index.size - self.count + len(rows),
                                               self.fmt)):
                _store.append_csv(self.path, rows, self.columns)

    def slice_done(self, ranges, rows: dict[int, dict], table) -> None:
        pass


class ParquetSink:
    """runs.parquet/ and results.parquet/; the rows of the slices in flight only."""

    fmt = "parquet"

    def __init__(self, out: str, index, resume: bool, tuned: bool, columns=columns()):
        self.index, self.tuned, self.columns = index, tuned, tuple(columns)
        self.runs = os.path.join(out, "runs.parquet")
        self.results = os.path.join(out, "results.parquet")
        for folder in (self.runs, self.results):
            os.makedirs(folder, exist_ok=True)
            for tmp in glob.glob(os.path.join(folder, ".*.tmp")):
                os.unlink(tmp)  # a write a killed process left
        self.covered: list[tuple[int, int]] = _merge(
            [(int(a), int(b)) for a, b in (_name_range(p, "part") for p in
                                           os.listdir(self.results)) if a is not None])
        self.rows: dict[int, dict] = {}
        self.count = 0
        if resume:
            for name in sorted(os.listdir(self.runs)):
                lo, hi = _name_range(name, "run")
                if lo is None or self._inside(lo, hi + 1):
                    continue
                for r in read_parquet(os.path.join(self.runs, name)):
                    p = int(r.pop("index"))
                    if not self._covers(p):
                        self.rows[p] = as_row(r, self.columns)
        self.done_before = sum(b - a for a, b in self.covered) + len(self.rows)

    def _covers(self, p: int) -> bool:
        i = bisect.bisect_right(self.covered, (p, float("inf"))) - 1
        return i >= 0 and self.covered[i][0] <= p < self.covered[i][1]

    def _inside(self, lo: int, hi: int) -> bool:
        i = bisect.bisect_right(self.covered, (lo, float("inf"))) - 1
        return i >= 0 and self.covered[i][0] <= lo and hi <= self.covered[i][1]

    def resumed(self) -> dict[int, dict]:
        rows, self.rows = self.rows, {}
        return rows

    def done(self) -> int:
        return self.done_before

    def uncovered(self, start: int, count: int) -> list[tuple[int, int]]:
        """The sub-ranges of start..start+count-1 no results file holds yet."""
        out, p, end = [], start, start + count
        i = max(bisect.bisect_right(self.covered, (start, float("inf"))) - 1, 0)
        for a, b in self.covered[i:]:
            if a >= end:
                break
            if b <= p:
                continue
            if a > p:
                out.append((p, a - p))
            p = max(p, b)
        if p < end:
            out.append((p, end - p))
        return out

    def append(self, rows: list[dict], positions: list[int]) -> None:
        self.count += 1
        name = f"run-{min(positions):012d}-{max(positions):012d}-{os.getpid()}-{self.count}"
        path = os.path.join(self.runs, name + ".parquet")
        with writing(path, rows_bytes(self.index.size - self.done_before, self.fmt)):
            write_parquet(path, [{**r, "index": p} for r, p in zip(rows, positions)],
                          self.columns)

    def slice_done(self, ranges, rows: dict[int, dict], table) -> None:
        """Write the results of `ranges` ((start, count), every row of them in `rows`), then
        forget those rows."""
        for start, count in ranges:
            part = [{**rows[p], "index": p} for p in range(start, start + count)]
            part = table(part)
            path = os.path.join(self.results,
                                f"part-{start:012d}-{start + count:012d}.parquet")
            with writing(path, rows_bytes(self.index.size - self.done_before, self.fmt)):
                write_parquet(path, [{**r, "tuned": self.tuned} for r in part], self.columns)
            self.covered = _merge(self.covered + [(start, start + count)])
            self.done_before += count
            for p in range(start, start + count):
                rows.pop(p, None)


def _name_range(name: str, prefix: str):
    m = re.fullmatch(rf"{prefix}-(\d+)-(\d+)(-.*)?\.parquet", name)
    return (int(m[1]), int(m[2])) if m else (None, None)


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def write_parquet(path: str, rows: list[dict], names=columns()) -> None:
    """Rows (dicts with the columns `names`, `index`, optionally `tuned`) as one Parquet
    file, whole."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema(names, index="index" in rows[0], tuned="tuned" in rows[0])
    table = pa.Table.from_pylist(rows, schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    _store.atomic_write_bytes(path, buf.getvalue())


def read_parquet(path: str) -> list[dict]:
    """Rows of one Parquet file, as the sweep wrote them (None for missing cells)."""
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def read_runs(path: str) -> list[dict]:
    """Rows of `runs.csv`; ValueError naming the file if it is not a sweep's runs.csv."""
    try:
        return [as_row(r) for r in _store.read_csv(path)]
    except (KeyError, ValueError, TypeError, UnicodeDecodeError) as e:
        raise InputError(f"{path!r} is not a readable runs.csv ({type(e).__name__}: {e}); "
                         "move it away to start afresh") from None


#: The arrays `--save` can keep of every configuration.
ARRAYS = ("end-to-end", "learning-times")


def save_arrays(folder: str, rows: list[dict], positions, values) -> None:
    """One array per configuration, `values: (k, ...)` of `rows` at the grid `positions`,
    as one file of `folder`, written whole (`arrays-<first>-<last>-<pid>-<n>.npz`, with
    each row's `config_key` as text): the arrays grow by files as the rows grow by chunks,
    and a resume adds files. `zasjax._load.read_arrays` reads them back."""
    positions = np.asarray(positions, np.int64)
    _save_count[0] += 1
    name = (f"arrays-{positions.min():012d}-{positions.max():012d}-{os.getpid()}-"
            f"{_save_count[0]}.npz")
    buf = io.BytesIO()
    np.savez(buf, index=positions, values=np.asarray(values),
             keys=np.asarray([repr(config_key(r)) for r in rows], dtype=str))
    path = os.path.join(folder, name)
    with writing(path, buf.tell()):
        _store.atomic_write_bytes(path, buf.getvalue())


_save_count = [0]


#: A summary's group: one line of the table `zasjax sweep` prints, one point of its figure.
SUMMARY_KEYS = ("init", "target", "dim", "depth", "observations")


def summarise(rows) -> list[dict]:
    """Per (init, target, dim, depth, observations): rows, counts per status, the converged
    iterations' quartiles, the learning rates' range, and (deep matrix factorization) the
    median reconstruction error and effective rank. `rows`: dicts, one group's at a time or
    all at once."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k) for k in SUMMARY_KEYS), []).append(r)
    return [_summary(key, rs) for key, rs in groups.items()]


def _summary(key: tuple, rows: list[dict]) -> dict:
    import numpy as np

    from .._status import NAMES

    its = np.asarray([r["iterations"] for r in rows if r["status"] == "converged"], float)
    q = np.percentile(its, [25, 50, 75]) if len(its) else [np.nan] * 3
    lrs = [r["lr"] for r in rows]
    out = dict(zip(SUMMARY_KEYS, key), rows=len(rows),
               **{s: sum(r["status"] == s for r in rows) for s in NAMES if s != "running"},
               q25=float(q[0]), median=float(q[1]), q75=float(q[2]), lr_min=min(lrs),
               lr_max=max(lrs))
    for m in ("reconstruction_error", "effective_rank"):
        values = [r[m] for r in rows if r.get(m) is not None]
        out[m] = float(np.median(values)) if values else None
    return out


def parquet_summaries(out: str) -> list[dict]:
    """`summarise` of a Parquet sweep's results, one (init, target, dim, depth) block in
    memory at a time (its result files are adjacent in name order)."""
    import pyarrow.parquet as pq

    folder = os.path.join(out, "results.parquet")
    names = sorted(n for n in os.listdir(folder)
                   if n.startswith("part-") and n.endswith(".parquet"))
    summaries, block, held = [], None, []
    columns = [*SUMMARY_KEYS, "status", "iterations", "lr", "reconstruction_error",
               "effective_rank"]
    for name in names:
        rows = pq.read_table(os.path.join(folder, name), columns=columns).to_pylist()
        key = tuple(rows[0][k] for k in SUMMARY_KEYS[:4])
        if key != block and held:
            summaries += summarise(held)
            held = []
        block = key
        held += rows
    return summaries + (summarise(held) if held else [])
