"""Library warnings raised by the core's work thread go to the log; other threads' warnings keep
their way (napari's notifications, the console)."""

from __future__ import annotations

import logging
import threading
import warnings

from segtrain.warnings_log import warnings_logged


def test_warnings_of_the_working_thread_are_logged_others_shown(monkeypatch, caplog):
    shown = []
    monkeypatch.setattr(warnings, "showwarning", lambda message, *rest: shown.append(str(message)))
    warnings.simplefilter("always")
    inside, go_on = threading.Event(), threading.Event()

    def work():
        with warnings_logged():
            warnings.warn("Checkpoint directory runs/x/checkpoints exists and is not empty.", UserWarning)
            inside.set()
            go_on.wait(10)

    caplog.set_level(logging.INFO, logger="segtrain.library")
    thread = threading.Thread(target=work)
    thread.start()
    assert inside.wait(10)
    warnings.warn("the GUI thread's own warning", UserWarning)  # while the work goes on
    go_on.set()
    thread.join(10)
    warnings.warn("after the work", UserWarning)
    assert shown == ["the GUI thread's own warning", "after the work"]
    assert any("exists and is not empty" in r.getMessage() for r in caplog.records)
