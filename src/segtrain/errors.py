"""Errors a user can cause.

Every such error is a :class:`SegtrainError` whose message is one sentence naming the problem and
the fix. The CLI prints it and exits non-zero; the GUI shows it as a napari notification. Anything
else that escapes is a bug.
"""


class SegtrainError(Exception):
    """A problem with the user's input, files or settings (not a bug)."""


class InputError(SegtrainError, ValueError):
    """An input array, file or argument is not what the operation needs."""


class ConfigError(SegtrainError, ValueError):
    """A configuration file or value is invalid."""
