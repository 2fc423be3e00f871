"""MkDocs hooks (`hooks:` in mkdocs.yml): the pages that are generated from the code at
build time, so that they cannot drift from it.

* `reference/api.md`: one `::: zasjax.NAME` entry (mkdocstrings) for every name in
  `zasjax.__all__`, grouped by the module that defines it;
* `reference/cli.md`: the `--help` of every `zasjax` command and of every study, as argparse
  prints it;
* `reproduction.md`: REPRODUCTION.md;
* `notebooks/*.md`: the jupytext notebooks (`notebooks/*.py`) as Markdown with code blocks
  (not executed; the test suite runs them), and their README as the index.

The page texts are plain functions (`api_page`, `cli_page`, ...), which `tests/test_docs.py`
checks without running MkDocs.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"

#: module of zasjax -> section title of the API reference, in reading order; a module not
#: listed gets a section at the end, titled by its docstring's first line.
SECTIONS = {
    "_run": "Running gradient descent",
    "_sweep": "Sweeps",
    "_load": "Results as data",
    "_inits": "Initialisations",
    "_targets": "Targets",
    "_network": "The network",
    "_objectives": "Objectives: yours and the built-in ones",
    "_models": "Parametrizations",
    "_measures": "Measures of the end-to-end matrix and of the layers",
    "_modes": "The exact mode reduction from ZAS",
    "_flow": "Gradient flow",
    "_compare": "Gradient descent against gradient flow",
    "_sharpness": "Sharpness",
    "_diagnostics": "Diagnostics and trajectories",
    "_learning_times": "Learning times",
    "_implicit_bias": "Implicit bias",
    "_theory": "Theorem monitors",
    "_status": "Status",
    "_optimizers": "Optimisers",
    "_resnet": "The nonlinear ResNet",
    "_train": "The nonlinear ResNet",
    "_data": "The nonlinear ResNet",
    "_baselines": "Convex baselines",
    "_compilation": "Process set-up",
    "reproduce": "Reproductions",
    "__init__": "Aliases",
}


def _origins() -> dict[str, str]:
    """Public name -> the module of `zasjax` it is imported from (read from __init__.py)."""
    tree = ast.parse((ROOT / "zasjax" / "__init__.py").read_text())
    origin = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            for alias in node.names:
                origin[alias.asname or alias.name] = node.module or alias.name
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    origin[target.id] = "__init__"
    return origin


def _first_line(module: str) -> str:
    import importlib

    doc = importlib.import_module(f"zasjax.{module}").__doc__ or module
    return doc.strip().splitlines()[0].rstrip(".")


def api_page() -> str:
    """The API reference: every name of `zasjax.__all__`, under its module's section."""
    import zasjax

    origin = _origins()
    sections: dict[str, list[str]] = {}
    for name in zasjax.__all__:
        module = origin.get(name, "__init__")
        title = SECTIONS.get(module) or _first_line(module)
        sections.setdefault(title, []).append(name)
    order = list(dict.fromkeys(SECTIONS.values()))
    lines = ["# API reference", "",
             "Every public name of `zasjax` (`import zasjax as zj`), generated from "
             "`zasjax.__all__` and the docstrings.", ""]
    for title in sorted(sections, key=lambda t: (order.index(t) if t in order else len(order),
                                                 t)):
        lines += [f"## {title}", ""]
        for name in sections[title]:
            lines += [_entry(name, getattr(zasjax, name), origin.get(name)), ""]
    return "\n".join(lines)


def _entry(name: str, obj, module: str | None) -> str:
    """mkdocstrings' entry for a function, class or module; for a constant (which griffe
    cannot always follow, e.g. `A, B = range(2)`), its value and its `#:` comment."""
    import inspect

    if callable(obj) or inspect.ismodule(obj):
        return f"::: zasjax.{name}"
    if isinstance(obj, dict):
        value = "a mapping with keys " + ", ".join(f"`{k}`" for k in obj)
    else:
        value = f"`{obj!r}`"
    comment = _comment(name, module)
    return "\n".join([f"### `{name}` {{ #zasjax.{name} }}", "", f"`zasjax.{name}`: {value}."]
                      + (["", comment] if comment else []))


def _comment(name: str, module: str | None) -> str:
    # the `#:` lines just above the name's assignment in its module, if any
    path = ROOT / "zasjax" / f"{(module or '__init__').lstrip('.')}.py"
    if not path.exists():
        return ""
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(rf"^{re.escape(name)}\b.*=", line) or re.match(
                rf"^[A-Z_, ]*\b{re.escape(name)}\b[A-Z_, ]*=", line):
            notes = []
            while i > 0 and lines[i - 1].startswith("#:"):
                i -= 1
                notes.insert(0, lines[i][2:].strip())
            return " ".join(notes)
    return ""


def _help(parser) -> str:
    return parser.format_help().rstrip()


def cli_page() -> str:
    """The command-line reference: `zasjax <cmd> --help` for every command and study."""
    from zasjax.cli import COMMANDS, build_parser
    from zasjax.reproduce import REPRODUCTIONS

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    lines = ["# Command-line reference", "",
             "Generated from the parsers (`zasjax COMMAND --help`); every option is a field "
             "of a checked object, so this is the whole interface.", ""]
    with _columns(100):  # argparse wraps to the terminal: the same width in every build
        lines += ["```text", _help(parser), "```", ""]
        for name in COMMANDS:
            lines += [f"## zasjax {name}", "", "```text", _help(sub.choices[name]), "```", ""]
        lines += ["## Studies: zasjax reproduce NAME", ""]
        for name in REPRODUCTIONS:
            lines += [f"### zasjax reproduce {name}", "", "```text", _study_help(name), "```",
                      ""]
    return "\n".join(lines)


@contextlib.contextmanager
def _columns(n: int):
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(n)
    try:
        yield
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before


def _study_help(name: str) -> str:
    from zasjax.reproduce._runner import parse

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        parse(name, ["--help"])
    return out.getvalue().rstrip()


def notebook_page(path: Path) -> str:
    """A jupytext percent script as Markdown: its Markdown cells, its code in fences."""
    import jupytext

    nb = jupytext.read(path)
    parts = [f"*Source: `notebooks/{path.name}`, a jupytext script: run it with `python "
             f"notebooks/{path.name}`, or open it in Jupyter with jupytext. Its outputs are "
             "not shown here.*"]
    for cell in nb.cells:
        text = cell.source.strip("\n")
        if not text:
            continue
        parts.append(_local_links(text) if cell.cell_type == "markdown"
                     else f"```python\n{text}\n```")
    first, *rest = parts
    # the notebook's own title first, then the source line
    if rest and rest[0].startswith("# "):
        title, _, body = rest[0].partition("\n")
        return "\n\n".join([title, first, body.strip(), *rest[1:]]) + "\n"
    return "\n\n".join([f"# {path.stem}", *parts]) + "\n"


def notebooks_index() -> str:
    """notebooks/README.md, its links to the scripts pointing at their pages."""
    return _local_links((NOTEBOOKS / "README.md").read_text())


def _local_links(text: str) -> str:
    # `(quickstart.py)` -> `(quickstart.md)`: a notebook's page, not its source
    names = "|".join(re.escape(p.stem) for p in NOTEBOOKS.glob("*.py"))
    return re.sub(rf"\]\(({names})\.py\)", r"](\1.md)", text)


def notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.py"))


def pages() -> dict[str, str]:
    """Every generated page: its path in the site -> its Markdown."""
    out = {"reference/api.md": api_page(), "reference/cli.md": cli_page(),
           "reproduction.md": (ROOT / "REPRODUCTION.md").read_text(),
           "notebooks/index.md": notebooks_index()}
    out.update({f"notebooks/{p.stem}.md": notebook_page(p) for p in notebooks()})
    return out


# ---------------------------------------------------------------------------------------------
# MkDocs events
# ---------------------------------------------------------------------------------------------


def on_config(config):
    """The Notebooks section of the navigation lists every notebook, whatever is added."""
    for entry in config.nav or []:
        if isinstance(entry, dict) and "Notebooks" in entry:
            entry["Notebooks"] = ["notebooks/index.md",
                                  *(f"notebooks/{p.stem}.md" for p in notebooks())]
    return config


def on_files(files, config):
    from mkdocs.structure.files import File

    for uri, text in pages().items():
        files.append(File.generated(config, uri, content=text))
    return files
