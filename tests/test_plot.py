"""`zasjax plot`: the figure's data (medians, quartile bands, local exponents, what is left
out) checked against numpy on synthetic sweep folders, its axes, its refusals, and the
sweep's own figure being the same computation."""

import math

import numpy as np
import pytest

from zasjax import _plots, _store
from zasjax._sweep import COLUMNS
from zasjax.cli import main

DEPTHS = (1, 2, 4, 8, 16)
SEEDS = range(7)


def _synthetic(folder, gamma: dict, seed: int):
    """A sweep folder whose iterations grow as 10·L^γ[d] times seed noise; seed 5 diverges
    at depth 16 and seed 6 hits the cap at depths 8 and 16. Returns the iterations array
    [dim][depth, seed] (NaN where not converged)."""
    rng = np.random.default_rng(seed)
    rows, table = [], {}
    for d, g in gamma.items():
        its = np.rint(10 * np.array(DEPTHS)[:, None] ** g
                      * np.exp(rng.normal(0, 0.3, (len(DEPTHS), len(SEEDS))))).astype(float)
        its[4, 5] = its[3, 6] = its[4, 6] = np.nan
        table[d] = its
        for i, L in enumerate(DEPTHS):
            for s in SEEDS:
                status = "converged" if np.isfinite(its[i, s]) else \
                    "diverged" if s == 5 else "max-iters"
                rows.append(dict(init="zas", target="neg-identity", dim=d, depth=L, seed=s,
                                 lr=0.01, optimizer="gd", status=status, steps=1000,
                                 iterations=None if status != "converged" else int(its[i, s]),
                                 final_loss={"converged": 1e-11, "diverged": math.inf,
                                             "max-iters": 0.25 + s}[status],
                                 objective="whitened"))
    folder.mkdir()
    _store.write_csv(folder / "results.csv", rows, COLUMNS)
    _store.write_json(folder / "config.json", {"tune_lr": False})
    return table


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("plot")
    a = _synthetic(root / "a", {1: 1.0, 2: 2.0}, 0)
    b = _synthetic(root / "b", {1: 0.5, 2: 1.5}, 1)
    return root, {"a": a, "b": b}


def test_medians_bands_and_exponents_match_numpy(folders):
    root, tables = folders
    lines = _plots.summarise(_plots.load_folders([root / "a", root / "b"]))
    assert [(ln.key["dim"], ln.key["folder"][-1]) for ln in lines] == [
        (1, "a"), (1, "b"), (2, "a"), (2, "b")]
    for ln in lines:
        its = tables[ln.key["folder"][-1]][ln.key["dim"]]
        np.testing.assert_array_equal(ln.x, DEPTHS)
        ok = [row[np.isfinite(row)] for row in its]
        np.testing.assert_array_equal(ln.count, [len(v) for v in ok])
        np.testing.assert_allclose(ln.median, [np.median(v) for v in ok], rtol=0, atol=0)
        np.testing.assert_allclose(ln.q25, [np.percentile(v, 25) for v in ok], rtol=1e-15)
        np.testing.assert_allclose(ln.q75, [np.percentile(v, 75) for v in ok], rtol=1e-15)
        assert np.all(ln.q25 <= ln.median) and np.all(ln.median <= ln.q75)
        # γ: least squares of log median on log depth over the upper half (depths 4, 8, 16)
        want = np.polyfit(np.log(DEPTHS[2:]), np.log(ln.median[2:]), 1)[0]
        assert ln.exponent == pytest.approx(want, rel=1e-12)
        assert ln.left_out == {"diverged": 1, "max-iters": 2}
        assert ln.label == f"zas, Φ=neg-identity, d={ln.key['dim']}, {ln.key['folder']}"
    # the synthetic growth exponents are recovered (noise σ = 0.3 over 7 seeds)
    assert [round(ln.exponent * 2) / 2 for ln in lines] == [1.0, 0.5, 2.0, 1.5]


def test_all_runs_and_another_column(folders):
    root, _ = folders
    (one, _) = _plots.summarise(_plots.load_folders([root / "a"]), y="final_loss",
                                include_all=True)
    # capped runs are drawn (their loss is finite); a diverged run's loss is not
    assert one.left_out == {"diverged": 1}
    assert one.count.tolist() == [7, 7, 7, 7, 6]
    np.testing.assert_allclose(one.q75, [1e-11, 1e-11, 1e-11, 1e-11,
                                         np.percentile([1e-11] * 5 + [6.25], 75)])
    (conv, _) = _plots.summarise(_plots.load_folders([root / "a"]), y="final_loss")
    assert conv.left_out == {"diverged": 1, "max-iters": 2}


def test_local_exponent_is_the_upper_half_fit():
    x = np.array([1.0, 2, 4, 8, 16, 32])
    y = np.where(x < 8, 100.0, 3 * x**1.5)  # a flat start must not bias the end's exponent
    assert _plots.local_exponent(x, y) == pytest.approx(1.5, rel=1e-12)
    assert _plots.local_exponent([1, 2], [5, 20]) == pytest.approx(2.0)
    assert math.isnan(_plots.local_exponent([4], [7]))
    assert math.isnan(_plots.local_exponent([1, 2], [0, 0]))


def test_axes_are_log_only_where_positive_over_a_decade(folders, monkeypatch):
    root, _ = folders
    saved = []
    monkeypatch.setattr(_plots, "save", lambda fig, path: saved.append(fig))
    df = _plots.load_folders([root / "a"])
    _plots.draw(_plots.summarise(df), "unused.png")
    _plots.draw(_plots.summarise(df, x="seed"), "unused.png")
    _plots.draw(_plots.summarise(df, x="depth", y="dim"), "unused.png")
    scales = [(f.axes[0].get_xscale(), f.axes[0].get_yscale()) for f in saved]
    # depths 1..16 and iterations over decades: log-log; seeds start at 0; dims 1..2 span
    # less than a decade
    assert scales == [("log", "log"), ("linear", "log"), ("log", "linear")]
    legend = [t.get_text() for t in saved[0].axes[0].get_legend().get_texts()]
    assert legend[0] == "zas, Φ=neg-identity, d=1 (not drawn: 1 diverged, 2 max-iters)"
    notes = [t.get_text() for t in saved[0].axes[0].texts]
    assert notes == [f"γ={ln.exponent:.2f}" for ln in _plots.summarise(df)]


def test_the_command_draws_two_folders(folders, tmp_path, capsys):
    root, _ = folders
    out = tmp_path / "both.png"
    assert main(["plot", str(root / "a"), str(root / "b"), "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 5 and printed[-1] == f"wrote {out}"
    assert printed[0].startswith("zas, Φ=neg-identity, d=1, ") and "γ = " in printed[0]


@pytest.mark.parametrize("argv, message", [
    (["{root}/absent"], "is not a folder"),
    (["{root}"], "holds no results.csv"),
    (["{root}/a", "{root}/a/"], "listed twice"),
    (["{root}/a", "--x", "init"], "x column 'init' is not numeric"),
    (["{root}/a", "--y", "nope"], "y column 'nope' is not in the results"),
    (["{root}/a", "--y", "depth"], "--x and --y are both 'depth'"),
    (["{root}/a", "--out", "{tmp}/fig.txt"], "expected a file name ending in one of"),
    (["{root}/a", "--out", "{tmp}/no/fig.png"], "does not exist"),
])
def test_bad_input_is_one_line_and_writes_nothing(folders, tmp_path, capsys, argv, message):
    root, _ = folders
    argv = [a.format(root=root, tmp=tmp_path) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "fig.png")]
    assert main(["plot", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("zasjax: error: ") and message in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_sweeps_figure_is_the_plot_of_its_folder(tmp_path, monkeypatch):
    drawn = []
    real = _plots.draw
    monkeypatch.setattr(_plots, "draw", lambda lines, path, **kw: (drawn.append(lines),
                                                                   real(lines, path, **kw)))
    out = tmp_path / "tuned"
    assert main(["sweep", "--depths", "1:4", "--seeds", "0,1", "--lr", "0.05,0.2", "--tune-lr",
                 "--x64", "--max-iters", "500", "--out", str(out), "--no-progress"]) == 0
    assert (out / "iterations_vs_depth.png").stat().st_size > 1000
    (lines,) = drawn
    (want,) = _plots.summarise(_plots.load_folders([out]))
    (got,) = lines  # one line: a tuned sweep's rates are results, not an axis
    assert got.label == want.label == "zas, Φ=neg-identity, d=1"
    for field in ("x", "median", "q25", "q75", "count"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field))


def test_the_plot_spec_is_public_and_checked_on_construction(tmp_path):
    import zasjax as zj

    spec = zj.PlotSpec(folders=[tmp_path], out="fig.svg", include_all=True)
    assert spec.folders == (str(tmp_path),) and (spec.x, spec.y) == ("depth", "iterations")
    with pytest.raises(ValueError, match="at least one sweep folder"):
        zj.PlotSpec(out="fig.png")
    with pytest.raises(ValueError, match="--out FILE is required"):
        zj.PlotSpec(folders=[tmp_path])
