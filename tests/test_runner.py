"""The study runner: configs checked on construction, options derived from them, one writer."""

import argparse
import dataclasses
import json
import pathlib

import pytest

import zasjax as zj
from zasjax import reproduce
from zasjax._options import Parser
from zasjax.reproduce import REPRODUCTIONS, _runner, fig2, load

# ---------------------------------------------------------------------------------------------
# A toy study, defined here: the runner finds `run` and `figure` in the config's module.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(_runner.Config):
    n: int = _runner.option(3, "rows")
    names: tuple[str, ...] = _runner.option(("a",), "labels")
    QUICK = dict(n=1)

    def check(self):
        _runner.check_at_least(self, 1, "n")

    @property
    def dtype(self):
        return "float32"


def run(cfg, files=None):
    rows = [dict(i=i, name=cfg.names[0]) for i in range(cfg.n)]
    return _runner.Outcome(dict(total=cfg.n), rows, ("i", "name"), plot=cfg.n)


def figure(outcome, folder):
    (pathlib.Path(folder) / "toy.png").write_text(str(outcome.plot))


def test_runner_owns_folder_metadata_and_files(tmp_path):
    summary = reproduce.run(Config.quick(names=["b"]), tmp_path / "out")
    assert summary["study"] == "test_runner" and summary["quick"] is True
    assert summary["total"] == 1 and {"seconds", "zasjax", "jax", "x64"} <= set(summary["meta"])
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert (tmp_path / "out" / "test_runner.csv").read_text().splitlines() == ["i,name", "0,b"]
    assert (tmp_path / "out" / "toy.png").read_text() == "1"


def test_config_is_checked_frozen_and_stores_tuples():
    cfg = Config(names=["x", "y"])
    assert cfg.names == ("x", "y") and hash(cfg) and cfg.size == "full"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n = 2
    with pytest.raises(ValueError, match="n must be an integer >= 1, got 0"):
        Config(n=0)
    with pytest.raises(ValueError, match="size must be one of"):
        Config(size="tiny")


def test_options_are_the_config_fields():
    parser = Parser()
    names = _runner.add_arguments(parser, Config)
    assert names == ["n", "names"]
    args = parser.parse_args(["--names", "p,q"])
    assert args.names == ("p", "q") and args.n is None  # not given: the base config decides
    with pytest.raises(ValueError, match="--n expects an integer, got 'x'"):  # one line
        parser.parse_args(["--n", "x"])
    assert "(default 3; quick 1)" in parser.format_help()


def test_reproduce_spec_is_the_command_checked_on_construction(tmp_path):
    spec = zj.ReproduceSpec(study="fig2", quick=True, options={"depths": [1, 3]})
    assert spec.out == "runs/fig2" and spec.config == fig2.Config.from_options(
        fig2.Config.quick(), {"depths": (1, 3)})
    cfg, out = _runner.parse("fig2", ["--quick", "--depths", "1,3", "--out", str(tmp_path)])
    assert (cfg, out) == (spec.config, str(tmp_path))
    with pytest.raises(ValueError, match="unknown reproduction 'fig9'"):
        zj.ReproduceSpec(study="fig9")
    with pytest.raises(ValueError, match="study fig2 has no option nope"):
        zj.ReproduceSpec(study="fig2", options={"nope": 1})
    with pytest.raises(ValueError, match="unknown engine"):  # the study's own check
        zj.ReproduceSpec(study="fig2", options={"engine": "magic"})
    with pytest.raises(ValueError, match="unrecognized arguments: --nope"):
        _runner.parse("fig2", ["--nope"])


@pytest.mark.parametrize("name", sorted(REPRODUCTIONS))
def test_every_study_has_a_checked_config_with_a_quick_form(name):
    study = load(name)
    full, quick = study.Config(), study.Config.quick()
    assert (full.size, quick.size) == ("full", "quick") and full != quick
    assert callable(study.run) and callable(study.figure) and study.DESCRIPTION
    parser = argparse.ArgumentParser()
    fields = _runner.add_arguments(parser, study.Config)
    assert set(fields) == {f.name for f in dataclasses.fields(study.Config)} - {"size"}
    # Round trip: the quick config, spelled as options, is the quick config.
    argv = []
    for f in fields:
        value = getattr(quick, f)
        if value is None or isinstance(value, bool):
            continue
        flag = next(a.option_strings[0] for a in parser._actions if a.dest == f)
        argv += [flag, ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
    args = parser.parse_args(argv)
    given = {f: getattr(args, f) for f in fields if getattr(args, f) is not None}
    assert study.Config.from_options(study.Config(), given) == dataclasses.replace(
        quick, size="full")


def test_fig2_depths_option_sets_both_depth_lists():
    cfg = fig2.Config.from_options(fig2.Config(), {"depths": (1, 3)})
    assert cfg.depths == cfg.depths_wide == (1, 3)
    cfg = fig2.Config.from_options(fig2.Config(), {"depths": (1, 3), "depths_wide": (2,)})
    assert cfg.depths_wide == (2,)
    with pytest.raises(ValueError, match="unknown engine"):
        fig2.Config(engine="magic")


def test_experiments_use_the_api_without_argparse():
    root = pathlib.Path(__file__).resolve().parent.parent / "experiments"
    for path in sorted(root.glob("*.py")):
        text = path.read_text()
        assert "argparse" not in text and "reproduce.run(" in text, path.name
