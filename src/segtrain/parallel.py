"""Work in another process, for C code that holds Python's GIL while it runs.

waterz agglomerates with the GIL held: run from a thread of the napari process, it freezes the GUI
for as long as it works (seconds on a volume). :func:`in_process` runs such a function in a
separate process (one, kept for the session); the calling thread waits without the GIL.

The helper is a plain subprocess of this module (``python -m segtrain.parallel``), not a
multiprocessing child: "spawn" and "forkserver" re-import the user's ``__main__`` in the child,
and napari users often start the viewer from a script without an ``if __name__ == "__main__":``
guard; the child then re-ran their script (a second viewer, a second training) and the caller
waited for ever. "fork" would copy Qt's threads and locks. Requests and results travel as pickles
over the child's stdin and a private copy of its stdout (waterz's C++ code prints to the real
stdout, which the child sends to its stderr).
"""

from __future__ import annotations

import atexit
import os
import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from segtrain.errors import SegtrainError

_HEADER = struct.Struct("<Q")


def _send(stream: BinaryIO, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def _receive(stream: BinaryIO) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("the helper process ended")
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the helper process ended")
    return pickle.loads(data)


class _Helper:
    """One helper process and the lock that gives it one request at a time."""

    def __init__(self) -> None:
        package_root = str(Path(__file__).resolve().parents[1])  # the folder holding segtrain/
        env = dict(os.environ)
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join([package_root, *paths])  # this segtrain, wherever it lies
        self.process = subprocess.Popen([sys.executable, "-m", "segtrain.parallel"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env=env, close_fds=True)
        self.lock = threading.Lock()

    def call(self, func: Callable, args: tuple, kwargs: dict) -> tuple[str, Any]:
        with self.lock:
            _send(self.process.stdin, (func, args, kwargs))
            return _receive(self.process.stdout)

    def close(self) -> None:
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()


_HELPER: list[_Helper] = []
_START = threading.Lock()


def _helper() -> _Helper:
    with _START:
        if not _HELPER:
            _HELPER.append(_Helper())
        return _HELPER[0]


def in_process(func: Callable, *args: Any, **kwargs: Any) -> Any:
    """``func(*args, **kwargs)`` in the session's helper process. ``func`` must be a module-level
    function of the core (importable without Qt), its arguments and result picklable. Its
    exceptions are raised here."""
    for attempt in range(2):
        helper = _helper()
        try:
            kind, value = helper.call(func, args, kwargs)
        except (EOFError, OSError):  # the process died (killed, out of memory; a broken pipe is an OSError): a new one, once
            with _START:
                if _HELPER and _HELPER[0] is helper:
                    _HELPER.pop().close()
            if attempt:
                raise SegtrainError(f"The helper process running {func.__name__} stopped unexpectedly "
                                    "(out of memory?); try a smaller volume.") from None
            continue
        if kind == "error":
            raise value
        return value
    raise AssertionError("unreachable: the second attempt returns or raises")


@atexit.register
def shutdown() -> None:
    """End the helper process (at exit)."""
    with _START:
        while _HELPER:
            _HELPER.pop().close()


def _serve() -> None:
    """The helper's loop: read a request from stdin, answer on a private copy of stdout."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C stops the caller; this process ends with its pipe
    requests = sys.stdin.buffer
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # C code's prints go to stderr, not into the answers
    while True:
        try:
            func, args, kwargs = _receive(requests)
        except EOFError:
            return
        try:
            answer = ("ok", func(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 - raised in the caller
            answer = ("error", error)
        try:
            _send(answers, answer)
        except (pickle.PicklingError, TypeError, AttributeError):
            _send(answers, ("error", SegtrainError(f"{type(answer[1]).__name__}: {answer[1]}")))


if __name__ == "__main__":
    _serve()
