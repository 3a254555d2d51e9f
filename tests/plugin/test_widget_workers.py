"""workers: throttled delivery, one-sentence errors, worker lifecycle."""

from __future__ import annotations

import time

import pytest

from segtrain.errors import InputError
from segtrain.plugin.workers import Throttle, error_message, start_worker


def test_error_messages_are_one_sentence():
    assert error_message(InputError("Bad shape; fix it.")) == "Bad shape; fix it."
    msg = error_message(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), "Training")
    assert "ran out of memory" in msg and "\n" not in msg
    assert "read-only" in error_message(OSError(30, "Read-only file system"), "Export")
    assert error_message(ValueError("x\ny"), "Export") == "Export failed: ValueError: x"


def test_throttle_coalesces_and_delivers_last(qtbot):
    got = []
    throttle = Throttle(got.append, interval_ms=100)
    for i in range(50):
        throttle.push(i)
    assert got == [0]
    qtbot.waitUntil(lambda: got[-1] == 49, timeout=2000)
    assert len(got) == 2


def test_worker_yields_throttled_and_errors_notify(qtbot, error_messages):
    values, done = [], []

    def count():
        for i in range(20):
            time.sleep(0.01)
            yield i

    start_worker(count, on_yield=values.append, on_finish=lambda: done.append(1), throttle_ms=100)
    qtbot.waitUntil(lambda: bool(done), timeout=5000)
    assert values[-1] == 19 and len(values) < 20

    def fail():
        raise InputError("The image has 5 dimensions; give a 2D or 3D image.")

    errors = []
    start_worker(fail, on_error=errors.append, on_finish=lambda: done.append(2))
    qtbot.waitUntil(lambda: 2 in done, timeout=5000)
    assert errors == ["The image has 5 dimensions; give a 2D or 3D image."]
    assert errors[0] in error_messages()


def test_lower_thread_priority_only_affects_the_calling_thread():
    import os
    import threading

    from segtrain.plugin.workers import lower_thread_priority

    if not hasattr(os, "setpriority"):
        pytest.skip("this platform has no per-thread priorities")
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    target = min(before + 5, 19)  # above whatever the test process already runs at
    seen = {}

    def body():
        seen["ok"] = lower_thread_priority(target)
        seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen["ok"] and seen["nice"] == target
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


@pytest.mark.parametrize("viewer_open", [False, True], ids=["no viewer", "viewer open"])
def test_a_finished_worker_lets_go_of_its_arguments_and_result(qtbot, request, viewer_open):
    """A finished worker, with what it was given and what it returned, is garbage: nothing in the
    worker module (its slots, the progress bar, the set of running workers) keeps it, nor, with a
    viewer open, the viewer's task list (napari registers every worker there)."""
    import gc
    import weakref

    from segtrain.plugin.workers import active_workers

    if viewer_open:
        viewer = request.getfixturevalue("make_napari_viewer")()
        tasks = viewer.window._task_status_manager._tasks

    class Payload:
        pass

    arg = Payload()
    arg_ref = weakref.ref(arg)
    made, got = [], []

    def body(value):
        out = Payload()
        made.append(weakref.ref(out))
        return out

    worker = start_worker(body, arg, on_return=lambda r: got.append(type(r).__name__), on_finish=lambda: got.append("done"),
                          progress={"desc": "Working"})  # a progress bar in the activity dock, as the panels show
    worker_ref = weakref.ref(worker)
    del arg, worker
    qtbot.waitUntil(lambda: "done" in got and not active_workers(), timeout=10_000)
    qtbot.wait(50)
    gc.collect()
    assert got == ["Payload", "done"]
    result_ref = made[0]
    assert worker_ref() is None and arg_ref() is None and result_ref() is None
    if viewer_open:
        assert tasks == {}
