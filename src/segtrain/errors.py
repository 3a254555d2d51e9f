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


def os_error(error: OSError) -> SegtrainError | None:
    """The one sentence for an operating-system error a user can cause and fix (a full disk, a
    read-only file system, no permission), or None for any other. It names the file involved and
    says nothing about what was or was not kept (the caller knows that, this does not)."""
    import errno
    import re
    from pathlib import Path

    name = error.filename
    if name is None:  # h5py puts the file name in its message only
        found = re.search(r"filename = '([^']+)'", str(error))
        name = found.group(1) if found else None
    where = ""
    if name is not None:
        path = Path(str(name))
        hidden = re.fullmatch(r"\.(.+)\.(tmp|old)-[^.]*", path.name)  # a writer's temporary: name its target
        where = f" writing {path.with_name(hidden.group(1)) if hidden else path}"
    code = error.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        return SegtrainError(f"The disk is full (no space left on the device){where}; free some space or write to "
                             "another disk, then run again.")
    if code == errno.EFBIG:
        return SegtrainError(f"The file is too large for its file system{where}; write to another disk.")
    if code == errno.EROFS:
        return SegtrainError(f"The file system is read-only{where}; choose an output folder you can write to.")
    if code in (errno.EACCES, errno.EPERM):
        return SegtrainError(f"Permission denied{where.replace(' writing', ' for')}; choose files and folders "
                             "you may read and write.")
    return None
