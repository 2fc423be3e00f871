"""`zasjax sweep` from the command line: outputs, learning-rate tuning, refusals."""

import csv
import json
import os

import numpy as np
import pytest

from zasjax.cli import main

REQUIRED = ["init", "target", "dim", "depth", "seed", "lr", "optimizer", "iterations",
            "final_loss", "status"]


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_sweep_writes_results_config_and_plot(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["sweep", "--init", "zas", "--target", "neg-identity", "--dim", "1",
                 "--depths", "1,2,4:6", "--seeds", "0,1", "--lr", "0.05,30", "--x64",
                 "--max-iters", "2000", "--out", str(out), "--no-progress"])
    assert code == 0
    rows = _rows(out / "results.csv")
    assert list(rows[0])[: len(REQUIRED)] == REQUIRED
    assert len(rows) == 4 * 2 * 2  # depths 1,2,4,5 × seeds × lrs
    by_lr = {lr: [r for r in rows if float(r["lr"]) == lr] for lr in (0.05, 30.0)}
    assert all(r["status"] == "converged" and int(r["iterations"]) > 0 for r in by_lr[0.05])
    assert all(r["status"] == "diverged" and r["iterations"] == "" for r in by_lr[30.0])
    config = json.loads((out / "config.json").read_text())
    assert config["dtype"] == "float64" and config["versions"]["jax"]
    assert "sweep" in config["command"]
    assert (out / "iterations_vs_depth.png").stat().st_size > 1000
    assert "converged" in capsys.readouterr().out


def test_tune_lr_keeps_the_fastest_converging_rate(tmp_path):
    out = tmp_path / "tuned"
    assert main(["sweep", "--depths", "4", "--lr", "0.01,0.05,0.2,50", "--tune-lr", "--x64",
                 "--out", str(out), "--no-progress"]) == 0
    (best,) = _rows(out / "results.csv")
    every = _rows(out / "runs.csv")
    assert len(every) == 4
    converged = [r for r in every if r["status"] == "converged"]
    fastest = min(converged, key=lambda r: int(r["iterations"]))
    assert float(best["lr"]) == float(fastest["lr"])
    assert best["iterations"] == fastest["iterations"]


def test_target_file(tmp_path):
    phi = tmp_path / "phi.npy"
    np.save(phi, np.array([[-1.0, 0.3], [0.0, -0.5]]))
    out = tmp_path / "file"
    assert main(["sweep", "--target-file", str(phi), "--dim", "2", "--depths", "3",
                 "--lr", "0.05", "--x64", "--out", str(out), "--no-progress"]) == 0
    (row,) = _rows(out / "results.csv")
    assert row["target"] == "file" and row["status"] == "converged"


@pytest.mark.parametrize("args,message", [
    (["--depths", "0,2"], "every depth must be >= 1"),
    (["--init", "zaz"], "unknown init 'zaz'"),
    (["--target", "minus-one"], "unknown target 'minus-one'"),
    (["--lr", "-0.1"], "learning rate must be a finite number > 0"),
    (["--lr", "0"], "learning rate must be a finite number > 0"),
    (["--eps", "0"], "eps must be a finite number > 0"),
    (["--depths", "a,b"], "--depths expects integers"),
    (["--seeds", "3:1"], "--seeds expects at least one value"),
    (["--optimizer", "lbfgs"], "unknown optimizer"),
    (["--preset", "fig9"], "unknown preset"),
])
def test_bad_input_is_refused_with_one_line_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "never"
    assert main(["sweep", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_target_file_of_the_wrong_shape_is_refused(tmp_path, capsys):
    phi = tmp_path / "phi.npy"
    np.save(phi, np.eye(3))
    out = tmp_path / "never"
    assert main(["sweep", "--target-file", str(phi), "--dim", "2", "--out", str(out)]) == 2
    assert "expected (2, 2)" in capsys.readouterr().err
    assert not out.exists()


def test_existing_sweep_is_not_overwritten_without_resume(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["sweep", "--depths", "2", "--lr", "0.1", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    before = (out / "runs.csv").read_text()
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    assert (out / "runs.csv").read_text() == before
    assert main([*args, "--resume"]) == 0  # nothing left to compute; the table is rewritten
    assert _rows(out / "results.csv")[0]["status"] == "converged"
    assert main(["sweep", "--depths", "3", "--lr", "0.1", "--out", str(out), "--resume",
                 "--no-progress"]) == 2
    assert "different sweep" in capsys.readouterr().err
    assert os.path.exists(out / "config.json")


def test_engines_full_and_modes_write_the_same_results(tmp_path):
    args = ["sweep", "--init", "zas", "--target", "neg-identity,gaussian", "--dim", "2",
            "--depths", "1,3,8", "--seeds", "0,1", "--lr", "0.01,0.02", "--x64", "--no-progress"]
    for engine in ("full", "modes"):
        assert main([*args, "--engine", engine, "--out", str(tmp_path / engine)]) == 0
    full, modes = (_rows(tmp_path / e / "results.csv") for e in ("full", "modes"))
    columns = ("init", "target", "dim", "depth", "seed", "lr", "status", "iterations", "steps")
    assert [[r[c] for c in columns] for r in full] == [[r[c] for c in columns] for r in modes]
    assert main([*args, "--engine", "modes", "--init", "xavier", "--out",
                 str(tmp_path / "refused")]) == 2
    assert not (tmp_path / "refused").exists()


# ---------------------------------------------------------------------------------------------
# Every command: options derived from its spec, one-line refusals, help, no SystemExit
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv,message", [
    # a value the spec's checks refuse
    (["sweep", "--depths", "0", "--out", "{tmp}/out"], "every depth must be >= 1"),
    (["flow", "--target", "gaussian", "--depth", "0", "--out", "{tmp}/out"],
     "--depth must be >= 1"),
    (["plot", "{tmp}/out", "--out", "{tmp}/fig.png", "--x", "seed", "--y", "seed"],
     "--x and --y are both 'seed'"),
    (["reproduce", "fig1", "--quick", "--lr", "-1", "--out", "{tmp}/out"],
     "lr must be finite and > 0"),
    (["bench", "--quick", "--sweep-depth", "0", "--json", "{tmp}/out/b.json"],
     "--sweep-depth must be >= 1"),
    # text that is no value of the option's type
    (["sweep", "--eps", "tiny", "--out", "{tmp}/out"], "--eps expects a number"),
    (["flow", "--target", "gaussian", "--depth", "deep", "--out", "{tmp}/out"],
     "--depth expects an integer"),
    (["plot", "--out", "{tmp}/fig.png"], "the following arguments are required: DIR"),
    (["reproduce", "fig1", "--max-iters", "many", "--out", "{tmp}/out"],
     "--max-iters expects an integer"),
    (["bench", "--per-depth-samples", "some"], "--per-depth-samples expects an integer"),
    # not an option or a choice of the command
    (["reproduce", "fig9"], "invalid choice: 'fig9'"),
    (["reproduce", "fig1", "--seeds", "3", "--out", "{tmp}/out"],
     "unrecognized arguments: --seeds 3"),
    (["bench", "--slow"], "unrecognized arguments: --slow"),
    (["flow", "--engine", "fast"], "argument --engine: invalid choice: 'fast'"),
])
def test_every_command_refuses_a_bad_value_with_one_line(tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main(argv) == 2  # returned: nothing escapes `main`
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("zasjax: error: ") and message in err and err.count("\n") == 1, err
    assert captured.out == "" and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [["sweep"], ["flow"], ["plot"], ["reproduce"],
                                  ["reproduce", "dmf"], ["bench"], []])
def test_help_of_every_command(capsys, argv):
    assert main([*argv, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: {' '.join(['zasjax', *argv])} ")


def test_version_is_returned_not_raised(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("zasjax ")


def test_every_command_derives_its_options_from_a_public_spec():
    # An option exists exactly when a field does: each command's options, from its parser,
    # are the command-line fields of its spec(s).
    import argparse

    import zasjax as zj
    from zasjax._options import cli_fields, flag
    from zasjax._sweep._distributed import Processes
    from zasjax.cli import build_parser
    from zasjax.cli.sweep import SweepCommand

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    studies = next(a for a in sub.choices["reproduce"]._actions
                   if isinstance(a, argparse._SubParsersAction))
    specs = {"sweep": (zj.Grid, zj.SweepSpec, SweepCommand, Processes), "flow": (zj.FlowSpec,),
             "plot": (zj.PlotSpec,), "bench": (zj.BenchSpec,),
             "reproduce fig2": (zj.ReproduceSpec, zj.reproduce.load("fig2").Config)}
    for name, classes in specs.items():
        command, _, study = name.partition(" ")
        parser = studies.choices[study] if study else sub.choices[command]
        options = {a.option_strings[0] if a.option_strings else a.dest
                   for a in parser._actions if a.dest != "help"}
        fields = {flag(f) if not f.metadata.get("positional") else f.name
                  for cls in classes for f in cli_fields(cls)}
        assert options == fields, name
