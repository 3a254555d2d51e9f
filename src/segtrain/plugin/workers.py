"""The one module that starts background work for the dock widgets.

Everything long (training, prediction, building a merge tree, export) runs in a napari worker
(:func:`napari.qt.threading.create_worker`) started by :func:`start_worker`. The helpers here:

- deliver what a generator yields to the GUI at a bounded rate (:class:`Throttle`, by default at
  most every 200 ms, always delivering the latest value and the last one),
- turn any exception from a worker into a one-sentence napari notification
  (:func:`error_message`, :func:`notify_error`), never a traceback, and log library warnings
  instead of notifying them (:func:`_log_warnings_of`),
- stop workers (:func:`stop_worker`, :func:`stop_all`) and release GPU memory when a run ends
  (:func:`release_gpu_memory`),
- let a finished worker go: napari's window keeps every worker as a task otherwise
  (:func:`_napari_task_entries`).

Widgets never call ``create_worker`` themselves.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from napari.qt.threading import FunctionWorker, GeneratorWorker, create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QCoreApplication, QObject, QThread, QThreadPool, QTimer, Signal

from segtrain.errors import SegtrainError
from segtrain.plugin._compat import avoid_triton_llvm_clash, preload_torch_libraries

logger = logging.getLogger(__name__)

DEFAULT_THROTTLE_MS = 200

#: workers started by :func:`start_worker` that have not finished yet
_ACTIVE: set[FunctionWorker | GeneratorWorker] = set()


def error_message(error: BaseException, action: str = "The operation") -> str:
    """One sentence for the user that names the problem (and, where known, the fix)."""
    if isinstance(error, SegtrainError):
        return str(error).strip().splitlines()[0] if str(error).strip() else f"{action} failed."
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    name = type(error).__name__
    if "out of memory" in text.lower() or name in ("OutOfMemoryError", "MemoryError"):
        return (
            f"{action} ran out of memory; reduce the batch size or patch size "
            "(or close other programs) and try again."
        )
    if isinstance(error, (NotADirectoryError, FileExistsError)):
        where = getattr(error, "filename", None) or text
        return f"{action} failed: a file is in the way of the folder {where}; choose another folder."
    if isinstance(error, FileNotFoundError):
        return f"{action} failed: file not found ({error.filename or text})."
    if isinstance(error, PermissionError):
        where = getattr(error, "filename", None) or text
        return f"{action} failed: no permission to write {where}; choose a writable folder."
    if isinstance(error, OSError) and getattr(error, "errno", None) == 30:
        return f"{action} failed: the folder is read-only; choose a writable folder."
    if len(text) > 200:
        text = text[:197] + "..."
    return f"{action} failed: {name}: {text}" if text else f"{action} failed: {name}."


def _notify(show: Callable[[str], None], message: str, status: Any) -> None:
    if status is not None:
        try:
            status.setText(message)
        except RuntimeError:  # the label was deleted with its widget
            pass
    show(message)


def notify_error(message: str, status: Any = None) -> None:
    """Show ``message`` as a napari error notification (and on a status QLabel, if given)."""
    _notify(show_error, message, status)


def notify_info(message: str, status: Any = None) -> None:
    _notify(show_info, message, status)


def notify_warning(message: str, status: Any = None) -> None:
    """A result that is probably wrong: a napari warning (and the status QLabel, if given)."""
    _notify(show_warning, message, status)


def release_gpu_memory() -> None:
    """Free cached GPU memory after a run ends or fails (no-op without torch/CUDA).

    Called in worker threads; no ``gc.collect()`` here: a full collection holds the GIL long
    enough to stall the GUI (the training run collects its own garbage)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    try:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - releasing memory must never raise
        logger.debug("could not empty the CUDA cache", exc_info=True)


def lower_thread_priority(niceness: int = 10) -> bool:
    """Raise the calling thread's nice value (Linux: per thread; threads it starts inherit it).

    Called by workers that start heavy background work, so the GUI thread keeps the CPU it needs.
    Returns False where the platform does not support it.
    """
    if not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), niceness))
    except OSError:
        return False
    return True


class Throttle(QObject):
    """Call ``callback(value)`` at most every ``interval_ms`` with the latest value.

    Lives in the GUI thread: connect a worker's ``yielded`` signal to :meth:`push`. Values that
    arrive faster are coalesced (only the newest is delivered); :meth:`flush` delivers a pending
    value at once (called when the worker finishes, so the last report is never lost).
    """

    _EMPTY = object()

    def __init__(self, callback: Callable[[Any], None], interval_ms: int = DEFAULT_THROTTLE_MS,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.callback = callback
        self.interval_ms = int(interval_ms)
        self._pending: Any = self._EMPTY
        self._last = 0.0
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.flush)

    def push(self, value: Any) -> None:
        self._pending = value
        if self._timer.isActive():
            return
        wait_ms = self.interval_ms - (time.perf_counter() - self._last) * 1000.0
        if wait_ms <= 0:
            self.flush()
        else:
            self._timer.start(int(wait_ms) + 1)

    def flush(self) -> None:
        self._timer.stop()
        if self._pending is self._EMPTY:
            return
        value, self._pending = self._pending, self._EMPTY
        self._last = time.perf_counter()
        self.callback(value)


class ProgressRelay(QObject):
    """A ``progress(done, total)`` callable safe to call from a worker thread: it drives a napari
    progress bar in the GUI thread (the Qt signal is queued across threads)."""

    progressed = Signal(int, int)

    def __init__(self, desc: str, parent: QObject | None = None):
        super().__init__(parent)
        from napari.utils import progress

        self.bar = progress(total=0, desc=desc)
        self.done = 0
        self.progressed.connect(self._update)

    def __call__(self, done: int, total: int) -> None:
        self.progressed.emit(int(done), int(total))

    def _update(self, done: int, total: int) -> None:
        if self.bar is None:
            return
        self.bar.total = total
        self.bar.update(max(0, done - self.bar.n))
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def start_worker(
    func: Callable,
    *args: Any,
    on_yield: Callable[[Any], None] | None = None,
    on_return: Callable[[Any], None] | None = None,
    on_error: Callable[[str], None] | None = None,
    on_finish: Callable[[], None] | None = None,
    action: str = "The operation",
    status: Any = None,
    throttle_ms: int | None = DEFAULT_THROTTLE_MS,
    progress: bool | dict | None = None,
    start: bool = True,
    stop: threading.Event | None = None,
    **kwargs: Any,
) -> FunctionWorker | GeneratorWorker:
    """Run ``func(*args, **kwargs)`` (a function or a generator function) in a napari worker.

    Parameters
    ----------
    on_yield
        for generators: called in the GUI thread with yielded values, throttled to at most one
        call per ``throttle_ms`` (``None`` = every value); the last value is always delivered.
    on_return
        called in the GUI thread with the return value.
    on_error
        called with the one-sentence message after it was shown as a notification.
    on_finish
        always called last (success, error or stop).
    action
        what the worker does, for error messages ("Training", "Prediction", ...).
    status
        an optional QLabel that also shows the error message.
    progress
        passed to napari as ``_progress`` (a progress bar in the viewer's activity dock).
    stop
        an event ``func`` watches to end early (given to it by the caller too): set by
        :func:`stop_worker`, so closing the viewer stops such work as well.
    """
    avoid_triton_llvm_clash()  # before any worker can import torch
    _keep_pool_threads_free()
    _share_one_dask_pool()
    worker = create_worker(
        func, *args, _start_thread=False, _ignore_errors=True, _progress=progress or None, **kwargs
    )
    _log_warnings_of(worker)
    tasks, task_ids = _napari_task_entries(worker)
    throttle: Throttle | None = None
    if on_yield is not None and isinstance(worker, GeneratorWorker):
        if throttle_ms:
            throttle = Throttle(on_yield, throttle_ms)
            worker.yielded.connect(throttle.push)
        else:
            worker.yielded.connect(on_yield)
    if on_return is not None:
        worker.returned.connect(on_return)

    def _errored(error: BaseException) -> None:
        if throttle is not None:
            throttle.flush()  # what was yielded before the error, then the error
        message = error_message(error, action)
        logger.info("%s", message, exc_info=error)
        notify_error(message, status)
        if on_error is not None:
            on_error(message)

    def _finished() -> None:
        if throttle is not None:
            throttle.flush()
        _ACTIVE.discard(worker)
        for task_id in task_ids:  # napari has marked it completed (its slot ran first)
            tasks.pop(task_id, None)
        if on_finish is not None:
            on_finish()

    worker.errored.connect(_errored)
    worker.finished.connect(_finished)
    worker._segtrain_throttle = throttle  # keep the QObject alive with the worker
    worker._segtrain_stop = stop
    _ACTIVE.add(worker)
    if start:
        worker.start()
    return worker


def _log_warnings_of(worker) -> None:
    """Library warnings raised while ``worker`` runs go to the log
    (:func:`segtrain.warnings_log.log_warning`), not to the user: the worker catches every warning
    while it runs and napari relays each as a notification ("... is deprecated", a RuntimeWarning
    of a library), which reads as a problem the user cannot act on. What the user must know, the
    panels say themselves."""
    from segtrain.warnings_log import log_warning

    relay = getattr(worker, "_relay_warning", None)  # napari's notifying mixin
    if relay is not None:
        try:
            worker.warned.disconnect(relay)
        except (TypeError, RuntimeError):  # not connected (another napari version)
            pass
    worker.warned.connect(lambda args: log_warning(*args))


def _napari_task_entries(worker) -> tuple[dict | None, list]:
    """The entries napari made for ``worker`` in its window's task list: ``(tasks, ids)``.

    napari (>= 0.6.5, PR #8211) registers every worker it creates while a viewer is open as a task
    of that viewer's window, with ``worker.quit`` as the task's cancel callback (to warn when the
    window closes while work runs), and never removes it. Each finished worker, with its arguments
    (predictions, merge trees, proofreaders, export volumes) and the slots connected to it, then
    stays alive as long as the window: tens of MB a round of the loop. :func:`start_worker` drops
    the entries when the worker finishes (napari has marked them completed by then). Private napari
    attributes: if they change, nothing is dropped and nothing breaks."""
    from napari import current_viewer

    viewer = current_viewer()  # the viewer create_worker registered the worker with
    manager = getattr(getattr(viewer, "window", None), "_task_status_manager", None)
    tasks = getattr(manager, "_tasks", None)
    if not isinstance(tasks, dict):
        return None, []
    ids = [key for key, item in tasks.items()
           if getattr(getattr(item, "_cancel_callback", None), "__self__", None) is worker]
    return tasks, ids


class LatestOnly:
    """Runs ``func(*args)`` in a worker for the newest request only: a request made while one runs
    waits, and a newer request replaces it (a slider moved faster than the work it triggers).
    ``on_return`` gets, in the GUI thread, the result of a request no newer one has replaced."""

    def __init__(self, func: Callable, on_return: Callable[[Any], None], action: str, status: Any = None):
        self.func = func
        self.on_return = on_return
        self.action = action
        self.status = status
        self.worker = None
        self._pending: tuple | None = None

    def submit(self, *args: Any) -> None:
        if self.worker is not None:
            self._pending = args
            return
        self.worker = start_worker(self.func, *args, on_return=self._returned, on_finish=self._finished,
                                   action=self.action, status=self.status)

    def _returned(self, result: Any) -> None:
        if self._pending is None:  # else already out of date
            self.on_return(result)

    def _finished(self) -> None:
        self.worker = None
        if self._pending is not None:
            args, self._pending = self._pending, None
            self.submit(*args)

    def busy(self) -> bool:
        return self.worker is not None or self._pending is not None


def _import_heavy() -> None:
    """Thread body: import what the panels and the first Start need: the panels' modules (with
    scipy.ndimage, the post-processing and proofreading; no widget is made), matplotlib (the plots),
    PyTorch, Lightning, segmentation-models-pytorch and segtrain's training and prediction code.

    At normal priority: an import holds the GIL, and a thread of lowered priority that holds it is
    descheduled on a loaded machine while the GUI thread waits for the GIL (measured: seconds-long
    stalls while panels opened, and a first Start that waited over a minute for the imports).

    Full garbage collections during the imports took 50-300 ms each, holding the GIL (seven such
    pauses while the panels opened): the collector waits while the imports run, and what exists
    before and after them is frozen (:mod:`segtrain.plugin.collector`)."""
    import gc

    from segtrain.plugin import collector

    collecting = gc.isenabled()
    try:
        import importlib

        gc.disable()  # no full collection in the middle of the imports (they make most of the objects)
        collector.freeze()  # napari's objects: never scanned again (segtrain.plugin.collector)
        preload_torch_libraries()  # libtorch's dlopen without the GIL, before anything imports torch
        with MATPLOTLIB_IMPORT:  # first, and never beside the GUI thread's own import of it
            from matplotlib.backends import backend_agg
            from matplotlib.figure import Figure

            figure = Figure(figsize=(1, 1))
            figure.add_subplot(111).set_xlabel("step")
            backend_agg.FigureCanvasAgg(figure).draw()  # fonts and text rendering, loaded once
        for panel in ("segment", "proofread", "export", "predict", "runs", "train", "data"):  # scipy.ndimage,
            importlib.import_module(f"segtrain.plugin.widgets.{panel}")  # post-processing, proofreading: no widget made
        import segtrain.predict  # noqa: F401
        import segtrain.train  # noqa: F401
        import lightning.pytorch  # noqa: F401 - what a run imports before its first step
        import segmentation_models_pytorch  # noqa: F401
        import torch.utils.tensorboard  # noqa: F401 - the run's logger (tensorboard, protobuf): ~330 modules
    except Exception:  # noqa: BLE001 - the real import later reports any problem
        logger.debug("warming up the imports failed", exc_info=True)
    finally:
        collector.freeze()  # the imported modules' objects too
        if collecting:
            gc.enable()


_WARM_UP: list[threading.Thread] = []

#: held while matplotlib is first imported, by the warm-up thread and by the panels' plots: two
#: threads importing matplotlib at once get "partially initialized module" errors (its modules
#: import each other), which left `segtrain gui` without its panels
MATPLOTLIB_IMPORT = threading.Lock()


#: how long a Python thread may hold the GIL while another waits for it, in the GUI process
GIL_SWITCH_INTERVAL_S = 0.001


def share_the_gil_often() -> None:
    """Let a background thread hold the GIL for at most 1 ms (Python's default: 5 ms) while the
    GUI thread waits for it. A Qt layout or a napari event calls into Python hundreds of times, and
    each call waits for the GIL while a worker runs Python code (the warm-up's imports, building
    a network): a convoy of 5 ms waits froze the window 0.3-0.5 s when a panel opened during the
    warm-up. Only lowered, never raised (a user's setting below 1 ms is kept)."""
    if sys.getswitchinterval() > GIL_SWITCH_INTERVAL_S:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


def warm_up_imports() -> None:
    """Import PyTorch and Lightning in a background thread, once per process, so that the first
    Start or Predict does not wait seconds for them (nor stall the GUI thread importing them). A
    plain daemon thread: it touches no Qt object, so closing the app early is harmless."""
    if _WARM_UP or "segtrain.train.run" in sys.modules:
        return
    share_the_gil_often()
    avoid_triton_llvm_clash()  # before torch is imported
    thread = threading.Thread(target=_import_heavy, name="segtrain-warm-up", daemon=True)
    _WARM_UP.append(thread)
    # started once the event loop runs again: the panels being made now (all of them in the
    # tabbed dock) import their modules on the GUI thread first, never beside this thread
    QTimer.singleShot(0, thread.start)


_DASK_POOL: list = []


def _share_one_dask_pool() -> None:
    """dask's threaded scheduler keeps a thread pool per calling thread; Qt's pool threads come
    and go, so every export made a new pool of threads that stayed (a leak over a long session).
    The GUI process gives dask one pool for all."""
    if _DASK_POOL:
        return
    import dask
    from concurrent.futures import ThreadPoolExecutor

    _DASK_POOL.append(ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="segtrain-dask"))
    dask.config.set(pool=_DASK_POOL[0])


def _keep_pool_threads_free() -> None:
    """napari's workers run in Qt's global thread pool, which Qt also uses for its own short jobs
    (e.g. converting an image while painting the window) and waits for while holding the GIL. With
    every pool thread busy with a Python worker that waits for the GIL, that wait never ends (seen
    on 2-core machines: a frozen window). Keep as many threads free as the machine has cores."""
    pool = QThreadPool.globalInstance()
    needed = len(_ACTIVE) + 1 + max(2, QThread.idealThreadCount())
    if pool.maxThreadCount() < needed:
        pool.setMaxThreadCount(needed)


def warm_up_done() -> bool:
    """Whether the background import :func:`warm_up_imports` started has finished (or was never
    started)."""
    return not any(thread.is_alive() or (thread.ident is None and QCoreApplication.instance() is not None)
                   for thread in _WARM_UP)


def stop_worker(worker: FunctionWorker | GeneratorWorker | None) -> None:
    """Ask a worker to stop (generators stop at their next yield; functions that watch a stop
    event given to :func:`start_worker` end when they see it; other functions cannot be cut)."""
    if worker is None:
        return
    event = getattr(worker, "_segtrain_stop", None)
    if event is not None:
        event.set()
    try:
        worker.quit()
    except RuntimeError:  # already deleted
        pass


def active_workers() -> list[FunctionWorker | GeneratorWorker]:
    return list(_ACTIVE)


def _stop_workers_at_exit() -> None:
    """At interpreter exit (a script that opened the panels ends, napari quits, a test session
    ends) stop the workers still running and wait for them. A worker that finishes after Qt's
    objects were torn down aborts the process ("wrapped C/C++ object of type WorkerBaseSignals has
    been deleted"): seen when a script ended while the Train panel was still finding the device."""
    if _ACTIVE:
        stop_all(wait_s=60)


atexit.register(_stop_workers_at_exit)


def stop_all(wait_s: float = 5.0) -> None:
    """Stop every running worker and wait up to ``wait_s`` for them (used at close and in tests)."""
    workers = list(_ACTIVE)
    for worker in workers:
        stop_worker(worker)
    deadline = time.perf_counter() + wait_s
    app = QCoreApplication.instance()
    while any(w in _ACTIVE for w in workers) and time.perf_counter() < deadline:
        if app is not None:
            app.processEvents()
        time.sleep(0.01)
