"""The one error type the command line reports as the user's to fix."""


class InputError(ValueError):
    """Input the caller can fix (an option, a file, an output folder), found at any stage of
    a run. `zasjax` reports it as a usage error: one line, exit status 2. Checks made before
    any work raise plain `ValueError`, which the command line treats the same way."""
