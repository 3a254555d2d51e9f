"""The output rule, in one place: every writer in segtrain goes through :func:`atomic_path`.

An output is a new path, or, when the caller was asked to overwrite, the *same kind* of thing:

- a file replaces only a file of the same format (``fmt``: an existing JSON file for a JSON output,
  an HDF5 file for an HDF5 file, ...), never a folder;
- a folder output (zarr, n5) replaces only a folder its writer says is replaceable (``replaceable``:
  a zarr array for a zarr array, a group segtrain marked as its own output of that kind), never a
  folder that holds other things; without ``replaceable`` a folder is never replaced;
- the body writes to a temporary sibling ``.<name>.tmp-<pid>-<random>``; the final move onto the
  target fails when something appeared there meanwhile (Linux ``renameat2(RENAME_NOREPLACE)``,
  else a hard link for files or a lock file for folders), so the existence check and the move are
  one step and a concurrent writer gets one sentence, never a silent replacement;
- with overwrite the old target is first moved aside to ``.<name>.old-<pid>-<random>`` and put back
  if the final move fails; it is removed only once the new one is in place;
- leftovers of a writer that was killed (``.<name>.tmp-<pid>-*`` / ``.<name>.old-<pid>-*`` whose
  process is gone) are removed at the next write to the same target; an ``.old-`` leftover whose
  target is missing is the user's previous output and is moved back instead.

Datasets inside an HDF5 file are written by :func:`segtrain.io.hdf5_io.write_hdf5_dataset` with the
same temporary-name-then-move steps inside the file.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from segtrain.errors import InputError

RENAME_NOREPLACE = 1
AT_FDCWD = -100

#: file formats :func:`file_format` tells apart
FORMATS = ("hdf5", "tiff", "zip", "png", "json", "text", "binary", "empty")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


# --- one atomic step: move without replacing ------------------------------------------------

_RENAMEAT2: list = []


def _renameat2():
    if not _RENAMEAT2:
        try:
            function = ctypes.CDLL(None, use_errno=True).renameat2
            function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            function.restype = ctypes.c_int
        except (AttributeError, OSError):
            function = None
        _RENAMEAT2.append(function)
    return _RENAMEAT2[0]


def rename_noreplace(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Move ``source`` (a file or a folder) to ``target`` in one step that raises
    :class:`FileExistsError` when ``target`` exists, even if it appeared a moment ago."""
    source, target = os.fspath(source), os.fspath(target)
    function = _renameat2()
    if function is not None:
        if function(AT_FDCWD, os.fsencode(source), AT_FDCWD, os.fsencode(target), RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # not a file system without the flag
            raise OSError(code, os.strerror(code), target)
    if not os.path.isdir(source) or os.path.islink(source):
        try:
            os.link(source, target, follow_symlinks=False)  # fails when target exists
        except FileExistsError:
            raise
        except OSError:
            pass  # no hard links on this file system: the lock below
        else:
            os.unlink(source)
            return
    _rename_locked(source, target)


def _rename_locked(source: str, target: str) -> None:
    """Fallback without renameat2: a lock file beside ``target`` held while checking and moving
    (every segtrain writer takes it; the kernel releases it when a writer dies)."""
    import fcntl

    lock = os.path.join(os.path.dirname(target) or ".", f".{os.path.basename(target)}.lock")
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), target)
        os.rename(source, target)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


# --- what kind of thing is there --------------------------------------------------------------

def file_format(path: str | os.PathLike) -> str:
    """The format of an existing file, from its first bytes: one of :data:`FORMATS`."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(65536)
    if not head:
        return "empty"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if head[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return "tiff"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"\x89PNG"):
        return "png"
    if b"\0" in head:
        return "binary"
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return "binary"
    try:
        json.loads(text)
    except ValueError:
        return "text"
    return "json"


def _describe(path: Path) -> str:
    if path.is_symlink() and not path.exists():
        return "a broken link"
    if path.is_dir():
        return "a folder"
    try:
        return f"{_article(file_format(path))} file"
    except OSError:
        return "a file segtrain cannot read"


def check_replaceable(target: Path, fmt: str | None = None, folder: bool = False,
                      replaceable: Callable[[Path], bool] | None = None, what: str | None = None) -> None:
    """Raise :class:`InputError` unless the existing ``target`` is the same kind of thing as the
    output: a file of format ``fmt`` (any file when None) for a file output, a folder that
    ``replaceable`` accepts for a folder output."""
    if not folder:
        if target.is_dir():
            raise InputError(f"{target} is a folder; segtrain never writes a file over a folder: give a new file "
                             "name.")
        if not target.exists():
            raise InputError(f"{target} is a broken link; segtrain does not write through it: remove it or choose "
                             "another name.")
        if fmt is not None:
            try:
                found = file_format(target)
            except OSError as error:
                raise InputError(f"{target} exists and cannot be read to tell what it is ({error.strerror}); "
                                 "choose another name.") from None
            accepted = {fmt, "empty"} | ({"json"} if fmt == "text" else set())
            if found not in accepted:
                raise InputError(f"{target} is {_describe(target)}, not {_article(fmt)} file; segtrain replaces a file "
                                 "only with one of the same format: choose another name.")
        if replaceable is None or replaceable(target):
            return
    elif not target.is_dir():
        raise InputError(f"{target} is {_describe(target)}, not a folder segtrain wrote; choose another name.")
    if replaceable is None or not replaceable(target):
        raise InputError(f"{target} {'is a folder that ' if folder else ''}holds other things, not only "
                         f"{what or 'an output'} segtrain wrote; segtrain never replaces it: choose a new name, or "
                         "remove it yourself.")


_NAMES = {"hdf5": "an HDF5", "tiff": "a TIFF", "zip": "a zip/npz", "png": "a PNG", "json": "a JSON",
          "text": "a text", "binary": "a binary", "empty": "an empty"}


def _article(fmt: str) -> str:
    return _NAMES.get(fmt, f"a {fmt}")


# --- leftovers of killed writers --------------------------------------------------------------

def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leftover_pattern(name: str) -> re.Pattern:
    """``.<name>.tmp-<pid>-<random>`` / ``.<name>.old-<pid>-<random>`` (group 1: tmp|old, 2: pid)."""
    return re.compile(rf"^\.{re.escape(name)}\.(tmp|old)-(\d+)(?:-[A-Za-z0-9_]+)?$")


def temporary_name(name: str, kind: str = "tmp") -> str:
    return f".{name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"


def is_temporary_name(name: str) -> bool:
    """Whether ``name`` is a writer's temporary or set-aside copy (``.<x>.tmp-...``, ``.<x>.old-...``):
    never data, whatever a reader finds beside it."""
    return name.startswith(".") and (".tmp-" in name or ".old-" in name)


def dead_leftovers(names: Iterable[str], target_name: str) -> list[tuple[str, str]]:
    """``(name, "tmp" | "old")`` for each of ``names`` (a folder's entries, an HDF5 group's keys)
    that a killed writer of ``target_name`` left: names of that target only, whose process is gone."""
    pattern = leftover_pattern(target_name)
    return [(name, match.group(1)) for name in sorted(names)
            if (match := pattern.match(name)) and not _alive(int(match.group(2)))]


def dead_temporaries(names: Iterable[str]) -> list[str]:
    """The writers' temporaries among ``names`` (``.<any name>.tmp-<pid>...``) whose process is gone:
    a live writer's temporary (another process saving into the same folder) is not listed."""
    pattern = re.compile(r"^\..+\.tmp-(\d+)(?:-[A-Za-z0-9_]+)?$")
    return [name for name in sorted(names) if (match := pattern.match(name)) and not _alive(int(match.group(1)))]


def remove_leftovers(target: Path) -> list[Path]:
    """Remove what killed writers of ``target`` left beside it (:func:`dead_leftovers`); an
    ``.old-`` copy of a missing target is moved back. Returns what was removed or restored."""
    parent = target.parent
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    done = []
    for name, kind in dead_leftovers(names, target.name):
        path = parent / name
        try:
            if kind == "old" and not os.path.lexists(target):
                rename_noreplace(path, target)  # the killed writer had moved the old target aside
            else:
                _remove(path)
        except OSError:
            continue
        done.append(path)
    return done


# --- the writer -------------------------------------------------------------------------------

def _check_parent(target: Path) -> Path:
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.exists():
        raise InputError(f"Folder {parent} does not exist; create it or choose another location.")
    if not parent.is_dir():
        raise InputError(f"Cannot write {target.name} into {parent}: it is a file, not a folder; choose a folder.")
    if not os.access(parent, os.W_OK):
        raise InputError(f"Folder {parent} is not writable; choose a folder you can write to.")
    return parent


def check_output(target: str | os.PathLike, overwrite: bool = False, *, fmt: str | None = None,
                 folder: bool = False, replaceable: Callable[[Path], bool] | None = None,
                 what: str | None = None) -> Path:
    """The checks :func:`atomic_path` makes before any work, for a command to make them early."""
    target = Path(target)
    _check_parent(target)
    if os.path.lexists(target):
        check_replaceable(target, fmt, folder, replaceable, what)  # the same kind of thing, else never
        if not overwrite:
            raise InputError(f"{target} already exists; choose another name or allow overwriting (--overwrite).")
    return target


def _lost_race(target: Path) -> InputError:
    return InputError(f"{target} was created by another writer while this one was writing; nothing was "
                      "replaced and this result was not kept: choose another name, or run again with --overwrite.")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, overwrite: bool = False, *, fmt: str | None = None,
                folder: bool = False, replaceable: Callable[[Path], bool] | None = None,
                what: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success move it onto ``target`` (the output
    rule in the module docstring).

    ``fmt``: the format of the file written (see :func:`file_format`; None: any file, for a
    writer's own files); ``folder``: the body writes a folder (zarr, n5), replaced with overwrite
    only where ``replaceable(existing)`` is true; ``what`` names the output in the sentence.
    Raises :class:`InputError` when the target exists and may not be replaced, when it appeared
    while writing, or when its folder cannot be written. The temporary is removed if the body raises.
    """
    target = Path(target)
    parent = _check_parent(target)
    remove_leftovers(target)
    check_output(target, overwrite, fmt=fmt, folder=folder, replaceable=replaceable, what=what)
    tmp = parent / temporary_name(target.name)
    try:
        yield tmp
        if not os.path.lexists(tmp):
            raise FileNotFoundError(errno.ENOENT, "the writer wrote nothing", str(tmp))
        if tmp.is_dir() != folder:
            raise InputError(f"{target}: the writer produced a {'folder' if tmp.is_dir() else 'file'} where a "
                             f"{'folder' if folder else 'file'} was expected.")
        _move_into_place(tmp, target, overwrite, fmt, folder, replaceable, what)
    finally:
        _remove_settled(tmp)


def _move_into_place(tmp: Path, target: Path, overwrite: bool, fmt, folder, replaceable, what) -> None:
    if not (overwrite and os.path.lexists(target)):
        try:
            rename_noreplace(tmp, target)
        except FileExistsError:
            raise _lost_race(target) from None
        return
    check_replaceable(target, fmt, folder, replaceable, what)  # still the kind of thing it was
    backup = target.parent / temporary_name(target.name, "old")
    try:
        rename_noreplace(target, backup)
    except FileNotFoundError:  # removed meanwhile: nothing to keep
        backup = None
    try:
        rename_noreplace(tmp, target)
    except BaseException as error:
        if backup is not None:
            rename_noreplace(backup, target)  # the old target back in place
        if isinstance(error, FileExistsError):
            raise _lost_race(target) from None
        raise
    if backup is not None:
        _remove(backup)


def _remove_settled(tmp: Path, wait_s: float = 2.0) -> None:
    """Remove ``tmp``, again while writers still in flight recreate it: a store written by several
    threads (zarr writes chunks concurrently) may still be writing chunks when a failed write
    reaches here."""
    deadline = time.monotonic() + wait_s
    while tmp.exists() or tmp.is_symlink():
        try:
            _remove(tmp)
        except OSError:  # a writer added a file while the folder was being removed: again
            pass
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
