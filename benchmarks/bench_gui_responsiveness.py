"""GUI responsiveness while training runs in the background, and live-slider latency.

1. Event-loop blocking: the Train widget trains (a quick preset on a synthetic volume) in its
   background worker while a 10 ms QTimer probe measures how late each tick fires, and the
   viewer is exercised the way a user would (changing the displayed slice every 100 ms).
   Targets: p99 lateness < 50 ms, no stall > 200 ms. Baselines without training (idle, and the
   same scrolling) show what rendering alone costs on the machine (software OpenGL under Xvfb).
2. Slider latency: a 100 x 512 x 512 fragments volume in the Segment widget; time from a slider
   value change to the updated layer data (the displayed slice relabelled). Target < 50 ms.

Run (needs a display; on a headless machine use xvfb-run)::

    xvfb-run -a python benchmarks/bench_gui_responsiveness.py [--seconds 20] [--json out.json]
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


def percentiles(values) -> dict:
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return {"n": 0, "lateness": []}
    return {"n": int(v.size), "p50_ms": float(np.percentile(v, 50)),
            "p99_ms": float(np.percentile(v, 99)), "max_ms": float(v.max()),
            "lateness": [float(x) for x in v]}


class Probe:
    """A QTimer that records how late each tick fires (ms)."""

    def __init__(self, interval_ms: int = 10):
        from qtpy.QtCore import QTimer

        self.interval = interval_ms / 1000.0
        self.lateness: list[float] = []
        self._last = None
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.lateness.append(max(0.0, (now - self._last - self.interval) * 1000.0))
        self._last = now

    def start(self) -> None:
        self._last = None
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()


def wait(app, seconds: float, until=None) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        if until is not None and until():
            return
        time.sleep(0.001)


def bench_training(viewer, app, seconds: float, runs_root: Path, shape) -> dict:
    from segtrain.synthetic import make_em_volume

    from segtrain.plugin.widgets.data import DataWidget
    from segtrain.plugin.widgets.train import TrainWidget

    raw, labels = make_em_volume(shape=shape, seed=0)
    viewer.add_image(raw, name="raw")
    viewer.add_labels(labels.astype(np.uint32), name="gt")
    data = DataWidget(viewer)
    data.gt_combo.set_layer("gt")
    train = TrainWidget(viewer)
    train.preset_combo.setCurrentText("em3d_quick")
    train.steps_spin.setValue(100000)  # long enough to outlast the measurement
    train.runs_root_edit.setText(str(runs_root))
    viewer.window.add_dock_widget(train, name="Train")

    # baselines without training: idle, and scrolling through slices as below
    probe = Probe()
    probe.start()
    wait(app, 3.0)
    probe.stop()
    idle = percentiles(probe.lateness)
    probe = Probe()
    probe.start()
    for i in range(30):
        viewer.dims.set_current_step(0, i % shape[0])
        wait(app, 0.1)
    probe.stop()
    scrolling = percentiles(probe.lateness)  # the cost of rendering alone (software GL here)

    train.start()
    if not train.is_running():
        raise SystemExit(f"training did not start: {train.status.text()}")
    wait(app, 120.0, until=lambda: train.last_report is not None)  # past model start-up
    first_step = train.last_report.step if train.last_report else None
    # while training: the user first watches (no interaction), then scrolls through slices
    probe = Probe()
    probe.start()
    wait(app, seconds / 2)
    probe.stop()
    watching = percentiles(probe.lateness)
    probe = Probe()
    probe.start()
    end = time.perf_counter() + seconds / 2
    z = 0
    while time.perf_counter() < end:
        z = (z + 1) % shape[0]
        viewer.dims.set_current_step(0, z)  # a user scrolling through slices
        wait(app, 0.1)
    probe.stop()
    scrolling_training = percentiles(probe.lateness)
    steps = (train.last_report.step - first_step) if train.last_report else 0
    train.stop()
    wait(app, 30.0, until=lambda: not train.is_running())
    result = percentiles(watching["lateness"] + scrolling_training["lateness"])
    result.update(
        training_watching=watching, training_scrolling=scrolling_training,
        idle=idle, scrolling_without_training=scrolling,
        training_steps_during_probe=int(steps), seconds=seconds, volume_shape=list(shape))
    for part in (result, watching, scrolling_training, idle, scrolling):
        part.pop("lateness", None)
    return result


def bench_slider(viewer, app, shape=(100, 512, 512), block=(4, 8, 8), ticks=50) -> dict:
    """Slider latency on a fragments volume of ``shape`` with a synthetic merge history."""
    from segtrain.segment import MergeTree

    from segtrain.plugin import layers as L
    from segtrain.plugin.widgets.segment import SLIDER_STEPS, SegmentWidget

    grid = tuple(s // b for s, b in zip(shape, block))
    ids = np.arange(1, int(np.prod(grid)) + 1, dtype=np.uint64).reshape(grid)
    fragments = ids.repeat(block[0], 0).repeat(block[1], 1).repeat(block[2], 2)
    n = int(ids.max())
    rng = np.random.default_rng(0)
    # a random merge forest: fragment i+1 merges into a random earlier one, scores ascending-ish
    b = np.arange(2, n + 1, dtype=np.int64)
    a = (rng.random(n - 1) * (b - 1)).astype(np.int64) + 1
    scores = np.sort(rng.random(n - 1).astype(np.float32))
    tree = MergeTree(fragments, a, b, scores, n)

    image = viewer.add_image(np.zeros(shape, np.uint8), name="image")
    widget = SegmentWidget(viewer)
    widget._source_layer = image
    widget.source_info = L.LayerInfo("affinities", task="affinities", model_ndim=3)
    widget.settings = L.segment_config()
    widget._tree_ready((tree, None))
    layer = widget.seg_layer
    viewer.dims.set_current_step(0, shape[0] // 2)
    wait(app, 0.5)
    latencies = []
    values = np.linspace(0.05, 0.95, ticks)
    for i, t in enumerate(values):
        t0 = time.perf_counter()
        widget.slider.setValue(int(round(t * SLIDER_STEPS)))
        raw = np.asarray(layer._slice.image.raw)  # the updated displayed slice
        latencies.append((time.perf_counter() - t0) * 1000.0)
        if i == 0:
            z = viewer.dims.current_step[0]
            expected = tree.relabel(fragments[z], widget.threshold())
            assert np.array_equal(raw, expected), "displayed slice does not match the tree"
        app.processEvents()
    # include the repaint: process events after each change
    paint = []
    for t in values[::-1]:
        t0 = time.perf_counter()
        widget.slider.setValue(int(round(t * SLIDER_STEPS)))
        app.processEvents()
        paint.append((time.perf_counter() - t0) * 1000.0)
    result = percentiles(latencies)
    result.update(with_repaint=percentiles(paint), volume_shape=list(shape), fragments=n)
    for part in (result, result["with_repaint"]):
        part.pop("lateness", None)
    viewer.layers.clear()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--train-shape", type=int, nargs=3, default=(32, 128, 128))
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    results = {"cpus": os.cpu_count(), "load_average_at_start": list(os.getloadavg())}
    results["slider"] = bench_slider(viewer, app)
    print("slider latency (value change -> updated layer data):",
          json.dumps(results["slider"], indent=1))
    if not args.skip_training:
        with tempfile.TemporaryDirectory() as tmp:
            results["event_loop_while_training"] = bench_training(
                viewer, app, args.seconds, Path(tmp), tuple(args.train_shape))
        print("event-loop lateness while training:",
              json.dumps(results["event_loop_while_training"], indent=1))
    ok = results["slider"]["p99_ms"] < 50
    if "event_loop_while_training" in results:
        r = results["event_loop_while_training"]
        ok = ok and r["p99_ms"] < 50 and r["max_ms"] < 200
    results["targets_met"] = bool(ok)
    results["load_average_at_end"] = list(os.getloadavg())  # other work on the machine skews it
    print("targets met:", ok)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
