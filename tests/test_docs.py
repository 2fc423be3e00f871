"""The documentation site's generated pages (docs/hooks.py) cover the whole interface:
every public name, every command, every notebook. Fast: the pages' Markdown is checked
without running MkDocs (`mkdocs build --strict` runs in CI, `.ci/run`)."""

import importlib.util
import re
from pathlib import Path

import pytest

import zasjax
from zasjax.cli import COMMANDS
from zasjax.reproduce import REPRODUCTIONS

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def hooks():
    spec = importlib.util.spec_from_file_location("zasjax_docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_public_name_is_in_the_api_reference(hooks):
    page = hooks.api_page()
    entries = re.findall(r"^::: zasjax\.(\w+)$|\{ #zasjax\.(\w+) \}", page, re.M)
    documented = [a or b for a, b in entries]
    assert sorted(documented) == sorted(zasjax.__all__)  # each once, none missing or extra
    assert "load_sweep" in documented and "sweep" in documented and "reproduce" in documented


def test_public_names_are_what_the_package_binds():
    public = {n for n in vars(zasjax) if not n.startswith("_")} - {"PackageNotFoundError",
                                                                    "version", "cli"}
    assert set(zasjax.__all__) == public


def test_every_command_and_study_is_in_the_cli_reference(hooks):
    page = hooks.cli_page()
    for name in COMMANDS:
        assert f"## zasjax {name}\n" in page and f"usage: zasjax {name} " in page
    for name in REPRODUCTIONS:
        assert f"usage: zasjax reproduce {name} " in page
    assert "--all       draw every run" in page  # the plot command's own option


def test_every_notebook_has_a_page_in_the_navigation(hooks):
    pages = hooks.pages()
    stems = sorted(p.stem for p in (ROOT / "notebooks").glob("*.py"))
    assert stems and all(f"notebooks/{s}.md" in pages for s in stems)
    page = pages["notebooks/quickstart.md"]
    assert page.startswith("# Quickstart") and "```python\nimport os" in page
    assert "](quickstart.md)" in pages["notebooks/index.md"]
    assert pages["reproduction.md"] == (ROOT / "REPRODUCTION.md").read_text()

    class Config:
        nav = [{"Home": "index.md"}, {"Notebooks": []}]

    hooks.on_config(Config)
    assert Config.nav[1]["Notebooks"] == ["notebooks/index.md",
                                          *(f"notebooks/{s}.md" for s in stems)]


def test_the_navigation_names_only_pages_that_exist(hooks):
    yaml = pytest.importorskip("yaml", reason="PyYAML comes with the docs extra "
                                              "(pip install -e '.[docs]')")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def files(nav):
        for entry in nav:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            yield from files(value) if isinstance(value, list) else [value]

    generated = set(hooks.pages())
    missing = [f for f in files(config["nav"])
               if f not in generated and not (ROOT / "docs" / f).is_file()]
    assert missing == []


def test_the_readme_links_resolve_and_its_set_up_is_the_sites():
    # the README is the front page: its links into docs/ (and elsewhere in the repository)
    # must name files that exist, and its two set-up commands are the getting-started page's
    readme = (ROOT / "README.md").read_text()
    links = [t for t in re.findall(r"\]\(([^)#\s]+)[^)]*\)", readme) if "://" not in t]
    assert "docs/getting-started.md" in links
    assert [t for t in links if not (ROOT / t).exists()] == []
    setup = re.search(r"## Set-up: two commands\n\n```bash\n(.*?)```", readme, re.S).group(1)
    assert setup.count("\n") == 2 and "python3 -m pytest\n" in setup
    assert setup in (ROOT / "docs" / "getting-started.md").read_text()
