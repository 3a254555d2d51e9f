"""napari started from a user's script WITHOUT ``if __name__ == "__main__":`` (how many napari users
start it): the panels' helper process (waterz scoring at validation, the merge tree) must not
re-run the script. With multiprocessing "spawn" the child re-imported ``__main__``: a second viewer,
a second training, and the first stayed at "validating" for ever."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
LIMIT_S = 240

SCRIPT = """
from pathlib import Path
with open({mark!r}, "a") as f:  # the script body: must run once
    f.write("body\\n")

import sys
sys.path.insert(0, {tests!r})
import napari
import numpy as np
from helpers.gui import GUI
from segtrain.synthetic import make_em_volume

from qtpy.QtCore import Qt
from qtpy.QtTest import QTest

gui = GUI()
viewer = napari.Viewer(show=True)
_, dock = viewer.window.add_plugin_dock_widget("napari-segtrain", "All panels")


def tab(name):
    bar = dock.tabs.tabBar()
    QTest.mouseClick(bar, Qt.LeftButton, Qt.NoModifier, bar.tabRect(list(dock.panels).index(name)).center())
    gui.process()
    return dock.panels[name]


raw, gt = make_em_volume((12, 48, 48), n_cells=6, seed=1)
viewer.add_image(raw, name="raw")
viewer.add_labels(gt.astype(np.uint32), name="gt")
data = tab("Data")
gui.choose(data.gt_combo, "gt")
train = tab("Train")
gui.type(train.steps_spin, "2")
gui.type(train.batch_spin, "1")
gui.type(train.patch_edit, "8, 32, 32")
gui.type(train.runs_root_edit, {runs!r})
gui.click(train.start_button)
gui.wait_until(lambda: not train.is_running(), timeout={limit}, what="the run")
assert train.state_label.text() == "finished at step 2 / 2", train.state_label.text()
assert any(k.startswith("val ") and k != "val loss" for k in train.history), train.history  # scored
predict = tab("Predict")
gui.wait_until(lambda: predict.which_combo.count() > 0, timeout=60, what="the checkpoints")
gui.click(predict.predict_button)
gui.wait_until(lambda: predict.worker is None, timeout={limit}, what="the prediction")
segment = tab("Segment")
gui.choose(segment.pred_combo, "raw affinities")
gui.click(segment.build_button)
gui.wait_until(lambda: segment.tree is not None and segment.build_button.isEnabled(), timeout={limit},
               what="the merge tree")
with open({mark!r}, "a") as f:
    f.write("tree\\n")
from segtrain.plugin.workers import stop_all
stop_all(wait_s=30)
viewer.close()
"""


@pytest.mark.slow
def test_a_script_without_main_guard_trains_and_builds_a_tree_once(tmp_path):
    mark = tmp_path / "ran.txt"
    script = tmp_path / "my_napari_script.py"
    script.write_text(textwrap.dedent(SCRIPT.format(mark=str(mark), tests=str(TESTS), runs=str(tmp_path / "runs"),
                                                    limit=LIMIT_S)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.perf_counter()
    try:
        result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=LIMIT_S)
    except subprocess.TimeoutExpired as error:
        ran = mark.read_text().split() if mark.exists() else []
        raise AssertionError(f"the script hung for {LIMIT_S} s; it ran {ran}; "
                             f"stderr: {(error.stderr or b'')[-2000:]}") from None
    lines = mark.read_text().split()
    assert result.returncode == 0, result.stderr[-3000:]
    assert lines == ["body", "tree"], (lines, result.stderr[-3000:])  # the body ran exactly once, to the end
    assert time.perf_counter() - start < LIMIT_S


QUICK_EXIT = """
import napari
from qtpy.QtWidgets import QApplication

viewer = napari.Viewer(show=False)
viewer.window.add_plugin_dock_widget("napari-segtrain", "Train")
for _ in range(5):
    QApplication.processEvents()
print("opened", flush=True)
# the script ends here, while the Train panel still imports PyTorch and finds the device
"""


def test_a_script_that_ends_while_a_panel_works_in_the_background_exits_cleanly(tmp_path):
    """A worker still running at interpreter exit (the Train panel finding the device while PyTorch
    loads) finished after Qt's objects were torn down and aborted the process ("wrapped C/C++
    object of type WorkerBaseSignals has been deleted", exit status 134)."""
    script = tmp_path / "open_train.py"
    script.write_text(QUICK_EXIT)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=LIMIT_S,
                            cwd=tmp_path)
    assert "opened" in result.stdout
    assert result.returncode == 0, result.stderr[-3000:]
    assert "has been deleted" not in result.stderr and "Traceback" not in result.stderr, result.stderr[-3000:]
