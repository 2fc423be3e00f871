"""`SweepSpec`: checked on construction, the CLI's options derived from its fields, the
resume identity its canonical JSON."""

import argparse
import dataclasses
import json

import jax
import pytest

import zasjax as zj
from zasjax._errors import InputError
from zasjax._options import cli_fields, flag
from zasjax._sweep import AUTO_LRS
from zasjax._sweep._distributed import Processes
from zasjax.cli import sweep as sweep_cli
from zasjax.cli.sweep import SweepCommand

GRID = zj.Grid(depths=(1, 3), seeds=(0, 1), lrs=(0.05,), max_iters=3000)


@pytest.mark.parametrize("changes,message", [
    (dict(chunk=0), "chunk must be an integer >= 1"),
    (dict(chunk=True), "chunk must be an integer >= 1"),
    (dict(bucket_ratio=0.5), r"\(bucket_ratio\) must be a finite number >= 1"),
    (dict(engine="exact"), "unknown engine 'exact'"),
    (dict(engine="modes", grids=zj.Grid(inits=("xavier",))), "modes"),
    (dict(dtype="float16x"), "dtype must be one of"),
    (dict(devices=0), "--devices expects a number >= 1 or 'auto'"),
    (dict(matmul="fast"), "unknown matmul 'fast'"),
    (dict(batching="serial"), "unknown batching 'serial'"),
    (dict(max_batch=0), "max_batch must be an integer >= 1"),
    (dict(grids=()), "grids must be one or more zasjax Grids"),
])
def test_a_spec_checks_itself_on_construction(changes, message):
    with pytest.raises(ValueError, match=message):
        zj.SweepSpec(**{"grids": GRID, **changes})
    spec = zj.SweepSpec(grids=GRID)
    if "grids" not in changes:  # `replace` checks the same way
        with pytest.raises(ValueError, match=message):
            spec.replace(**changes)


@pytest.mark.parametrize("kwargs,message", [
    (dict(processes=2, distributed=True), "--processes starts its own workers"),
    (dict(processes=0), "--processes must be >= 1"),
    (dict(coordinator="h:1"), "needs --num-processes and --process-id too"),
    (dict(coordinator="h", num_processes=2, process_id=0), "expects HOST:PORT"),
    (dict(coordinator="h:1", num_processes=2, process_id=2), "--process-id must be in 0..1"),
    (dict(coordinator="h:1", num_processes=2, process_id=0, distributed=True), "not both"),
])
def test_processes_check_themselves(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Processes(**kwargs)


def test_a_target_too_large_for_the_dtype_is_refused():
    grid = zj.Grid(targets=("file",), target_matrix=[[1e30]])
    zj.SweepSpec(grids=grid, dtype="float64")
    with pytest.raises(ValueError, match="too large for float32"):
        zj.SweepSpec(grids=grid, dtype="float32")


def test_identity_is_the_canonical_json_of_what_changes_a_row():
    spec = zj.SweepSpec(grids=GRID, dtype="float64")
    assert json.loads(spec.canonical()) == spec.identity()
    assert set(spec.identity()) == {"grids", "tune_lr", "dtype", "preset", "engine"}
    # How the work is done is not identity; what is computed is.
    assert spec.replace(chunk=7, bucket_ratio=1.0, max_batch=2, progress=True).canonical() \
        == spec.canonical()
    for change in (dict(dtype="float32"), dict(tune_lr=True), dict(engine="modes"),
                   dict(grids=dataclasses.replace(GRID, eps=1e-9))):
        assert spec.replace(**change).canonical() != spec.canonical(), change
    json.dumps(spec.to_json())  # every field is JSON


def _parser():
    parser = argparse.ArgumentParser()
    sweep_cli.add_arguments(parser)
    return parser


def test_every_field_is_an_option_and_every_option_a_field():
    parser = _parser()
    flags = {s for a in parser._actions for s in a.option_strings}
    classes = (zj.Grid, zj.SweepSpec, Processes, SweepCommand)
    for cls in classes:
        for f in cli_fields(cls):
            assert flag(f) in flags, (cls.__name__, f.name)
    declared = {flag(f) for cls in classes for f in cli_fields(cls)}
    bool_negations = {"--no-cache", "--no-progress"}
    assert flags - declared - bool_negations == {"-h", "--help"}


def test_the_command_line_builds_the_spec_a_library_user_writes(tmp_path):
    args = _parser().parse_args(["--init", "zas,xavier", "--depths", "1:4", "--lr", "0.1,0.2",
                                 "--x64", "--chunk", "7", "--opt-arg", "b2=0.9", "--opt-arg",
                                 "b1=0.5", "--optimizer", "adam", "--no-progress",
                                 "--out", str(tmp_path / "o")])
    job = sweep_cli.prepare(args)
    grid = zj.Grid(inits=("zas", "xavier"), depths=(1, 2, 3), lrs=(0.1, 0.2),
                   optimizer="adam", hyper=(("b1", 0.5), ("b2", 0.9)))
    assert job.spec == zj.SweepSpec(grids=grid, dtype="float64", chunk=7, progress=False)
    tuned = sweep_cli.prepare(_parser().parse_args(["--tune-lr", "--depths", "2", "--x64",
                                                    "--out", str(tmp_path / "t")]))
    assert tuned.spec.grids[0].lrs == AUTO_LRS and tuned.spec.tune_lr


def test_a_folder_resumes_under_its_identity_only(tmp_path):
    out = str(tmp_path / "sweep")
    spec = zj.SweepSpec(grids=GRID, dtype="float64", cache=False)
    rows = zj.sweep(spec, out)
    config = json.loads((tmp_path / "sweep" / "config.json").read_text())
    assert config["identity"] == spec.identity() and config["spec"]["chunk"] == 1000
    with pytest.raises(InputError, match="already holds a sweep"):
        zj.sweep(spec, out)
    # Another chunk and batching: the same sweep, resumed, the same rows.
    assert zj.sweep(spec.replace(chunk=11, max_batch=1), out, resume=True) == rows
    with pytest.raises(InputError, match="different sweep"):
        zj.sweep(spec.replace(grids=dataclasses.replace(GRID, eps=1e-9)), out, resume=True)
    # A Grid with the spec's fields as keywords is the same sweep.
    assert zj.sweep(GRID, dtype="float64", cache=False) == rows


def test_float64_without_x64_is_refused_before_anything_runs(tmp_path):
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match="64-bit mode"):
            zj.sweep(zj.SweepSpec(grids=GRID, dtype="float64"), str(tmp_path / "never"))
    assert not (tmp_path / "never").exists()
