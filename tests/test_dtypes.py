"""The caller chooses precision: inits, targets and masks follow JAX's default float."""

import pathlib
import re

import jax.numpy as jnp
import pytest

import zasjax
from zasjax import INITS, TARGETS, make_init, make_target, support_mask


def test_x64_is_on_in_the_tests():
    assert jnp.zeros(()).dtype == jnp.float64


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_targets_default_to_the_default_float(key, name):
    assert make_target(name, key, (3, 3)).dtype == jnp.float64
    assert make_target(name, key, (3, 3), jnp.float32).dtype == jnp.float32


@pytest.mark.parametrize("name", sorted(INITS))
def test_inits_default_to_the_default_float(key, name):
    assert make_init(name, key, (3, 3, 3)).dtype == jnp.float64
    assert make_init(name, key, (3, 3, 3), dtype=jnp.float32).dtype == jnp.float32


def test_support_mask_defaults_to_the_default_float():
    assert support_mask((2, 3, 1)).dtype == jnp.float64
    assert support_mask((2, 3, 1), dtype=jnp.float32).dtype == jnp.float32


def test_library_modules_never_switch_x64():
    # Only entry points (the CLI, the study runner, scripts, tests) may flip global switches.
    root = pathlib.Path(zasjax.__file__).parent
    entry_points = {"_runner.py", "__main__.py"}
    flip = re.compile(r"config\.update\(\s*[\"']jax_enable_x64")
    for path in root.rglob("*.py"):
        if path.name in entry_points or "cli" in path.relative_to(root).parts:
            continue
        assert not flip.search(path.read_text()), f"{path} switches x64 on"
