"""The one exception type for mistakes a user can make; the CLI prints its message as a single line."""


class I3DError(Exception):
    """Bad input, missing weights, a failed download: anything the user can fix."""
