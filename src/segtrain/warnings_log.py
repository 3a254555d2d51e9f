"""Library warnings raised while the core works go to the log, not to the user.

Lightning and PyTorch warn about things the user cannot act on ("Checkpoint directory ... exists
and is not empty" on every resume, deprecations inside Lightning): printed by the CLI and shown as
napari notifications (napari turns every warning into one), they read as problems. Within
:func:`warnings_logged`, warnings raised *in the calling thread* are logged on the logger
``segtrain.library`` at INFO level (silent unless logging is configured); warnings of other
threads (the GUI's own) keep their usual way. What the user must know, the core says in its
reports and errors, never as a Python warning.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from collections.abc import Iterator

LOG = logging.getLogger("segtrain.library")

_LOCK = threading.Lock()
_THREADS: dict[int, int] = {}  # thread id -> nesting depth
_previous: list = []  # the showwarning our hook replaced (the newest)


def log_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Log one warning (``warnings.showwarning``'s arguments) on :data:`LOG`: also what the GUI's
    background workers raise (:func:`segtrain.plugin.workers.start_worker` connects it)."""
    LOG.info("%s:%s: %s: %s", filename, lineno, getattr(category, "__name__", category), message)


def _route(message, category, filename, lineno, file=None, line=None) -> None:
    if threading.get_ident() in _THREADS:
        log_warning(message, category, filename, lineno)
    elif _previous:
        _previous[0](message, category, filename, lineno, file, line)


@contextlib.contextmanager
def warnings_logged() -> Iterator[None]:
    """Log the warnings this thread raises meanwhile (see the module's note)."""
    ident = threading.get_ident()
    with _LOCK:
        if warnings.showwarning is not _route:
            _previous[:] = [warnings.showwarning]
            warnings.showwarning = _route
        _THREADS[ident] = _THREADS.get(ident, 0) + 1
    try:
        yield
    finally:
        with _LOCK:
            _THREADS[ident] -= 1
            if not _THREADS[ident]:
                del _THREADS[ident]
            if not _THREADS and warnings.showwarning is _route and _previous:
                # kept in _previous: a catch_warnings() of another thread that began meanwhile puts
                # _route back when it ends, and _route must then still hand warnings on
                warnings.showwarning = _previous[0]
