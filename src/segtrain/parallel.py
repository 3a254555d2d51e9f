"""Work in another process, for C code that holds Python's GIL while it runs.

waterz agglomerates with the GIL held: run from a thread of the napari process, it freezes the GUI
for as long as it works (seconds on a volume). :func:`in_process` runs such a function in a
separate process (one, kept for the session, started with "spawn" so it shares nothing with Qt);
the calling thread waits without the GIL.
"""

from __future__ import annotations

import atexit
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from segtrain.errors import SegtrainError

_POOL: list[ProcessPoolExecutor] = []


def in_process(func: Callable, *args: Any, **kwargs: Any) -> Any:
    """``func(*args, **kwargs)`` in the session's helper process. ``func`` must be a module-level
    function of the core (importable without Qt), its arguments and result picklable."""
    for attempt in range(2):
        if not _POOL:
            _POOL.append(ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")))
        try:
            return _POOL[0].submit(func, *args, **kwargs).result()
        except BrokenProcessPool:  # the process died (killed, out of memory): a new one, once
            _POOL.pop().shutdown(wait=False)
            if attempt:
                raise SegtrainError(f"The helper process running {func.__name__} stopped unexpectedly "
                                    "(out of memory?); try a smaller volume.") from None
    return None


@atexit.register
def shutdown() -> None:
    """End the helper process (at exit)."""
    while _POOL:
        _POOL.pop().shutdown(wait=False, cancel_futures=True)
