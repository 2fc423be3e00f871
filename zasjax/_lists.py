"""Comma lists and ranges as the command line and the study configs write them."""

from __future__ import annotations

from ._errors import InputError


def parse_ints(text: str, name: str) -> list[int]:
    """`1,2,8` or `a:b` (a..b-1) or a mix: `1,4:8`."""
    out: list[int] = []
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        try:
            if ":" in part:
                a, b = part.split(":")
                out.extend(range(int(a), int(b)))
            else:
                out.append(int(part))
        except ValueError:
            raise InputError(f"--{name} expects integers or ranges a:b separated by commas, "
                             f"got {text!r}") from None
    if not out:
        raise InputError(f"--{name} expects at least one value, got {text!r}")
    return out


def parse_floats(text: str, name: str) -> list[float]:
    try:
        out = [float(p) for p in str(text).split(",") if p.strip()]
    except ValueError:
        raise InputError(f"--{name} expects numbers separated by commas, got {text!r}"
                         ) from None
    if not out:
        raise InputError(f"--{name} expects at least one value, got {text!r}")
    return out


def parse_names(text: str, name: str = "names") -> list[str]:
    out = [p.strip() for p in str(text).split(",") if p.strip()]
    if not out:
        raise InputError(f"--{name} expects at least one name, got {text!r}")
    return out


PARSERS = {int: parse_ints, float: parse_floats, str: parse_names}
