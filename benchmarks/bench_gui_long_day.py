"""A long day in the GUI: the whole loop, many times in one viewer, watching memory and threads.

Opens `segtrain gui` on the em3d-fibsem volume of ../shared/data once, then per round: train a few
steps (Start), predict the newest checkpoint, build the merge tree, move the slider, export, and
close the round's layers, all by clicks and typing (tests/helpers). After each round it prints
the process's resident memory (before and after asking the C allocator to give back what it keeps
for reuse, malloc_trim), its threads and open files: flat means no leaked workers, layers or file
handles.

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/bench_gui_long_day.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def one_round(app, gui, k: int) -> None:
    from helpers.clickthrough import proofread_merge_and_delete

    train, predict, segment, export = (app.panels[n] for n in ("Train", "Predict", "Segment", "Export"))
    app.tab("Train")
    gui.type(train.steps_spin, "3")
    gui.type(train.patch_edit, "16, 48, 48")
    gui.type(train.runs_root_edit, "runs")
    gui.click(train.start_button)
    gui.wait_until(lambda: not train.is_running(), what="training")
    assert train.state_label.text() == "finished at step 3 / 3", train.state_label.text()
    app.tab("Predict")
    gui.wait_until(lambda: predict.which_combo.itemText(0) == "newest: final.ckpt (step 3)", timeout=60)
    gui.click(predict.predict_button)
    gui.wait_until(lambda: predict.worker is None, what="prediction")
    app.tab("Segment")
    gui.choose(segment.gt_combo, "train-gt")
    gui.click(segment.build_button)
    gui.wait_until(lambda: segment.worker is None and segment.tree is not None, what="merge tree")
    for t in ("0.3", "0.6", "0.1"):
        gui.type(segment.threshold_spin, t)
    proofread_merge_and_delete(app)  # merge, delete and undo by clicking the canvas
    app.tab("Export")
    gui.type(export.folder_edit, "export")
    gui.type(export.name_edit, f"round{k}")
    gui.click(export.export_button)
    gui.wait_until(lambda: export.worker is None, what="export")
    assert export.written, export.status.text()
    made = [layer.name for layer in app.viewer.layers if layer.name not in ("train-image", "train-gt")]
    gui.close_layers(app.viewer, made)  # close what the round made: the layer list's delete button
    gui.wait(0.5)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--data", default=os.environ.get("SEGTRAIN_SHARED_DATA", ROOT.parent / "shared" / "data"))
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    import psutil
    from qtpy.QtWidgets import QApplication

    from helpers.clickthrough import App
    from helpers.gui import GUI

    QApplication.instance() or QApplication([])
    os.chdir(tempfile.mkdtemp())
    gui = GUI()
    folder = Path(args.data) / "em3d-fibsem"
    app = App([str(folder / "train-image.h5"), str(folder / "train-gt.lzf.h5")], gui)
    process = psutil.Process()
    rows = []
    for k in range(1, args.rounds + 1):
        one_round(app, gui, k)
        gc.collect()
        held = round(process.memory_info().rss / 2**20)
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # what the C allocator keeps for reuse, given back
        row = {"round": k, "rss_before_trim_mb": held, "rss_mb": round(process.memory_info().rss / 2**20), "threads": threading.active_count(),
               "os_threads": process.num_threads(), "open_files": len(process.open_files()),
               "layers": len(app.viewer.layers)}
        rows.append(row)
        row["thread_names"] = sorted({t.name.rstrip("0123456789_-") for t in threading.enumerate()})
        print("  ".join(f"{key} {value}" for key, value in row.items()), flush=True)
    app.close()
    first, last = rows[0], rows[-1]
    print(f"memory {first['rss_mb']} -> {last['rss_mb']} MB, Python threads {first['threads']} -> {last['threads']}, "
          f"open files {first['open_files']} -> {last['open_files']} over {len(rows)} rounds")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
