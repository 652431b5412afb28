"""The one exception type users see.

Raise :class:`DejavuError` at public boundaries with a message that names the file or argument,
what was expected and what came; the CLI prints it as one line (no traceback) and exits 2.
"""


class DejavuError(Exception):
    """A user-facing error: bad input, missing file, absent GPU. The message is the whole story."""
