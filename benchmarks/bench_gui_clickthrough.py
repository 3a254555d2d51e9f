"""Longest GUI-thread stall while a person opens the panels and clicks through the whole loop.

First, in plain napari (a fresh process: nothing of segtrain imported yet), each panel is opened
from the Plugins > segtrain menu, one after the other a second and a half apart, as a person does
("open Data", "open Train", ...; the menu entry's action is triggered). Then the end-to-end
click-throughs of the tests (tests/helpers/clickthrough.py: `segtrain gui` on ../shared/data,
Data -> Train -> Predict -> Segment -> Export -> reopen, clicks and typing only), per audience.
Meanwhile a 10 ms QTimer probe records how late each tick fires: a late tick is time the GUI thread
could not draw or react; a stall over 150 ms is blamed on a stack (the GUI thread's own work, or
the thread that held the GIL: `Sampler`). Reports per step the longest stall and the 99th percentile (goal: no
stall over 300 ms on a quiet machine), and how long the first Start spent preparing (from the
click to the first training step). The driver's own checks (it compares what is shown with what
the core computes) and File > Open are left out; "start" (`segtrain gui` opening the app with all
its panels and loading the files) is reported but not counted in the whole loop.

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/bench_gui_clickthrough.py [--json out.json]

``--tile 2x2`` also clicks through the EM loop on the em3d volume tiled 2 x 2 in y, x (4x the
voxels; the ground truth's objects get distinct ids per tile) and prints the ratio of the longest
stalls, larger / shared: work on the GUI thread that grows with the data shows up as a ratio well
above 1 (goal: at most 1.5).
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


def _stacks() -> dict[int, str]:
    """Every thread's innermost three frames ('file:line function', innermost first), by thread id,
    read by faulthandler: no frame object is held, so nothing of another thread (a QPainter in a
    slot's locals) is ever freed in the sampling thread."""
    import faulthandler
    import re
    import tempfile

    with tempfile.TemporaryFile() as f:
        faulthandler.dump_traceback(f, all_threads=True)
        f.seek(0)
        text = f.read().decode(errors="replace")
    stacks: dict[int, list[str]] = {}
    current = None
    for line in text.splitlines():
        head = re.match(r"(?:Current thread|Thread) (0x[0-9a-f]+)", line)
        frame = re.match(r'\s+File "(.*)", line (\d+) in (.*)', line)
        if head:
            current = stacks.setdefault(int(head.group(1), 16), [])
        elif frame and current is not None and len(current) < 3:
            current.append(f"{Path(frame.group(1)).name}:{frame.group(2)} {frame.group(3)}")
    return {ident: " <- ".join(frames) for ident, frames in stacks.items()}


class Sampler:
    """What stalls the GUI thread: a thread that samples the GUI thread's stack every 20 ms. A late
    tick is blamed on the GUI thread's most frequent stack during the stall (its own work: a slot,
    making a layer) or, when no sample was taken meanwhile (another thread held the GIL in C code:
    an import, a library call), on the other threads' stacks when the GUI thread got it back."""

    def __init__(self, interval_s: float = 0.02):
        import threading

        self.gui_thread = threading.get_ident()
        self.samples: list[tuple[float, str]] = []
        self.running = True
        self.thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)
        self.thread.start()

    def _run(self, interval_s: float) -> None:
        while self.running:
            self.samples.append((time.perf_counter(), _stacks().get(self.gui_thread, "")))
            del self.samples[:-500]
            time.sleep(interval_s)

    def blame(self, since: float, until: float) -> str:
        import threading
        from collections import Counter

        inside = Counter(where for t, where in list(self.samples) if since <= t <= until)
        stacks = _stacks()
        names = {t.ident: t.name for t in threading.enumerate()}
        others = " | ".join(f"{names.get(ident, hex(ident))}: {where}" for ident, where in stacks.items()
                            if ident not in (self.gui_thread, self.thread.ident) and where)
        if not inside:
            return "GIL held elsewhere; " + (others or "no other Python thread")
        where = inside.most_common(1)[0][0]
        if where.startswith(("gui.py", "qt_main_window.py")):  # in Qt's event loop: C++ work or waiting for the GIL
            return f"GUI thread in Qt: {where}; others: {others or 'none'}"
        return "GUI thread: " + where


class Probe:
    """A QTimer that records how late each tick fires (ms), labelled with the current step; stalls
    over 150 ms are blamed on a stack (:class:`Sampler`)."""

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
        self.sampler = Sampler()
        self.culprits: dict[str, list[tuple[float, str]]] = {}

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
            if late > 150:
                self.culprits.setdefault(self.step, []).append(
                    (round(late), self.sampler.blame(self._last + self.interval, now)))
        self._last = now

    def set_step(self, step: str) -> None:
        self.step = step

    def summary(self, skip=("start",)) -> dict:
        """Per step, and for the "whole loop" of all steps but ``skip`` (by default "start":
        opening the app, not a click), the longest stall and the 99th percentile."""
        out = {}
        steps = [s for s in self.lateness if s not in skip]
        for step in [*self.lateness, "whole loop"]:
            chosen = steps if step == "whole loop" else [step]
            v = np.concatenate([np.asarray(self.lateness[s]) for s in chosen])
            out[step] = {"ticks": int(v.size), "max_ms": round(float(v.max()), 1),
                         "p99_ms": round(float(np.percentile(v, 99)), 1),
                         "culprits": sorted(self.culprits.get(step, []), reverse=True)[:3]}
        return out


PANELS = ["Data", "Train", "Predict", "Segment", "Proofread", "Export", "Runs"]


def open_from_plugins_menu(probe: Probe, gui) -> None:
    """Plain napari, then each segtrain panel from Plugins > segtrain."""
    import napari

    probe.set_step("napari opens")
    viewer = napari.Viewer(show=True)
    gui.wait(2.0)
    menu = viewer.window.plugins_menu
    menu.aboutToShow.emit()  # napari fills its menus when they open
    sub = next(a.menu() for a in menu.actions() if a.menu() is not None and a.text() == "segtrain")
    sub.aboutToShow.emit()
    actions = {a.text(): a for a in sub.actions()}
    for name in PANELS:
        probe.set_step(f"open {name}")
        actions[name].trigger()
        gui.wait(1.5)
    probe.set_step("idle")
    viewer.close()
    gui.process()


class StartTimer:
    """Wraps GUI.wait_until: how long the first Start spent preparing (the click is just before
    the wait for "the first step")."""

    def __init__(self, gui, timeout: float = 300.0):
        self.seconds: list[float] = []
        original = gui.wait_until

        def wait_until(condition, timeout=timeout, what=""):
            t0 = time.perf_counter()
            original(condition, timeout, what)
            if what == "the first step":
                self.seconds.append(round(time.perf_counter() - t0, 1))

        gui.wait_until = wait_until


def tiled_em3d(folder: Path, tiles: tuple[int, int], out: Path) -> Path:
    """A copy of the em3d folder (train-image.h5, train-gt.lzf.h5) with both volumes tiled
    ``tiles`` = (y, x) times; each tile's objects get their own ids."""
    import h5py

    out.mkdir(parents=True, exist_ok=True)
    for name in ("train-image.h5", "train-gt.lzf.h5"):
        with h5py.File(folder / name, "r") as f:
            key = next(iter(f))
            data = f[key][()]
        if name.startswith("train-gt"):
            step = int(data.max()) + 1
            rows = [np.concatenate([np.where(data > 0, data + step * (i * tiles[1] + j), 0) for j in range(tiles[1])],
                                   axis=-1) for i in range(tiles[0])]
            data = np.concatenate(rows, axis=-2).astype(data.dtype)
        else:
            data = np.tile(data, (1, *tiles))
        with h5py.File(out / name, "w") as f:
            f.create_dataset(key, data=data, compression="lzf" if "lzf" in name else None)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("SEGTRAIN_SHARED_DATA", ROOT.parent / "shared" / "data"))
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--panels-only", action="store_true", help="only open the panels from the Plugins menu")
    parser.add_argument("--audience", choices=("cells", "em"), help="click through this audience's loop only")
    parser.add_argument("--tile", help="also click through the EM loop on the em3d volume tiled YxX times (e.g. 2x2)")
    parser.add_argument("--wait-timeout", type=float, default=300.0,
                        help="seconds the driver waits for each step (training, prediction...) before failing; "
                        "raise it on a loaded machine")
    args = parser.parse_args(argv)
    from qtpy.QtWidgets import QApplication

    from helpers.clickthrough import cells_clickthrough, em_clickthrough
    from helpers.gui import GUI

    app = QApplication.instance() or QApplication([])
    data = Path(args.data)
    results = {}
    probe = Probe()
    probe.timer.start()
    gui = GUI(observer=probe)
    t0 = time.perf_counter()
    open_from_plugins_menu(probe, gui)
    probe.timer.stop()
    results["panels from the Plugins menu"] = {"seconds": round(time.perf_counter() - t0, 1),
                                               "stalls": probe.summary(skip=("napari opens", "idle"))}
    _print("panels from the Plugins menu", results["panels from the Plugins menu"])
    audiences = [] if args.panels_only else [
        ("cells (2D instances)", cells_clickthrough, data / "cells2d-phase"),
        ("EM (3D affinities)", em_clickthrough, data / "em3d-fibsem")]
    tiled_dir = None
    if args.tile and not args.panels_only:
        tiles = tuple(int(n) for n in args.tile.lower().split("x"))
        tiled_dir = tempfile.TemporaryDirectory()
        audiences.append((f"EM (3D affinities), tiled {args.tile}", em_clickthrough,
                          tiled_em3d(data / "em3d-fibsem", tiles, Path(tiled_dir.name) / "em3d-tiled")))
    if args.audience:
        audiences = [a for a in audiences if a[0].lower().startswith(args.audience)]
    for name, run, folder in audiences:
        with tempfile.TemporaryDirectory() as tmp:
            os.chdir(tmp)
            probe = Probe()
            probe.timer.start()
            gui = GUI(observer=probe)
            start = StartTimer(gui, args.wait_timeout)
            t0 = time.perf_counter()
            viewer_app = run(folder, gui, step=probe.set_step)
            seconds = time.perf_counter() - t0
            probe.timer.stop()
            viewer_app.close()
            app.processEvents()
        results[name] = {"seconds": round(seconds, 1), "stalls": probe.summary(),
                         "first_start_preparing_s": start.seconds[0] if start.seconds else None}
        _print(name, results[name])
    print(f"longest stall of all (start left out): {max(r['stalls']['whole loop']['max_ms'] for r in results.values())} ms")
    tiled = [name for name in results if "tiled" in name]
    if tiled and "EM (3D affinities)" in results:
        shared, larger = (results[n]["stalls"]["whole loop"]["max_ms"] for n in ("EM (3D affinities)", tiled[0]))
        results["tiled / shared"] = round(larger / shared, 2) if shared else None
        print(f"EM loop, longest stall: {shared} ms (shared volume), {larger} ms ({tiled[0]}): "
              f"ratio {results['tiled / shared']} (goal: at most 1.5)")
    if tiled_dir is not None:
        tiled_dir.cleanup()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def _print(name: str, result: dict) -> None:
    print(f"{name}: {result['seconds']:.0f} s")
    if result.get("first_start_preparing_s") is not None:
        print(f"  first Start: {result['first_start_preparing_s']} s from the click to the first training step")
    for step, figures in result["stalls"].items():
        print(f"  {step:14s} longest stall {figures['max_ms']:7.1f} ms   p99 {figures['p99_ms']:6.1f} ms"
              f"   ({figures['ticks']} ticks)", flush=True)
        for ms, where in figures.get("culprits", []):
            print(f"      {ms:5d} ms  {where}")


if __name__ == "__main__":
    sys.exit(main())
