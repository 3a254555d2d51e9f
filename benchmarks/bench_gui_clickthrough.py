"""Longest GUI-thread stall while a person clicks through the whole loop, per audience.

Runs the end-to-end click-throughs of the tests (tests/helpers/clickthrough.py: `segtrain gui` on
../shared/data, Data -> Train -> Predict -> Segment -> Export -> reopen, clicks and typing only)
while a 10 ms QTimer probe records how late each tick fires. A late tick is time the GUI thread
could not draw or react. Reports, per audience and per step of the loop, the longest stall and
the 99th percentile (target: no stall over 200 ms). The driver's own checks (it compares what is
shown with what the core computes) and File > Open are left out; "start" (opening the app, loading
the files) is reported but not counted in the whole loop.

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/bench_gui_clickthrough.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


class Probe:
    """A QTimer that records how late each tick fires (ms), labelled with the current step."""

    def __init__(self, interval_ms: int = 10):
        from qtpy.QtCore import QTimer

        self.interval = interval_ms / 1000.0
        self.step = "start"
        self.lateness: dict[str, list[float]] = {}
        self._last = None
        self.paused = False
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)

    def pause(self) -> None:
        """The driver checks results itself now (not the app's work): leave it out."""
        self.paused = True

    def resume(self) -> None:
        self.paused, self._last = False, None

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None and not self.paused:
            late = max(0.0, (now - self._last - self.interval) * 1000.0)
            self.lateness.setdefault(self.step, []).append(late)
        self._last = now

    def set_step(self, step: str) -> None:
        self.step = step

    def summary(self) -> dict:
        out = {}
        steps = [s for s in self.lateness if s != "start"]  # "start": opening the app, not a click
        for step in [*self.lateness, "whole loop"]:
            chosen = steps if step == "whole loop" else [step]
            v = np.concatenate([np.asarray(self.lateness[s]) for s in chosen])
            out[step] = {"ticks": int(v.size), "max_ms": round(float(v.max()), 1),
                         "p99_ms": round(float(np.percentile(v, 99)), 1)}
        return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("SEGTRAIN_SHARED_DATA", ROOT.parent / "shared" / "data"))
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    from qtpy.QtWidgets import QApplication

    from helpers.clickthrough import cells_clickthrough, em_clickthrough
    from helpers.gui import GUI

    app = QApplication.instance() or QApplication([])
    data = Path(args.data)
    results = {}
    for name, run, folder in (("cells (2D instances)", cells_clickthrough, data / "cells2d-phase"),
                              ("EM (3D affinities)", em_clickthrough, data / "em3d-fibsem")):
        with tempfile.TemporaryDirectory() as tmp:
            os.chdir(tmp)
            probe = Probe()
            probe.timer.start()
            t0 = time.perf_counter()
            viewer_app = run(folder, GUI(observer=probe), step=probe.set_step)
            seconds = time.perf_counter() - t0
            probe.timer.stop()
            viewer_app.close()
            app.processEvents()
        results[name] = {"seconds": round(seconds, 1), "stalls": probe.summary()}
        print(f"{name}: {seconds:.0f} s")
        for step, figures in results[name]["stalls"].items():
            print(f"  {step:12s} longest stall {figures['max_ms']:7.1f} ms   p99 {figures['p99_ms']:6.1f} ms"
                  f"   ({figures['ticks']} ticks)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
