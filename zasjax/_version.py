"""The version of the installed package, read from its metadata.

On the ground floor, so the package's own modules (the sweep's and the studies' metadata)
import it from here and never from `zasjax/__init__.py`, which imports them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("zasjax")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

__all__ = ["__version__"]
