"""Take docs/screenshot_main.png: napari with the segtrain panels on the sample EM volume.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshot.py
"""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
from qtpy.QtWidgets import QApplication

from segtrain.plugin.launcher import open_viewer

OUT = Path(__file__).resolve().parent / "screenshot_main.png"


def main() -> None:
    viewer = open_viewer(load_sample=True, show=True)
    window = viewer.window._qt_window
    window.resize(1500, 900)
    viewer.layers["em labels"].opacity = 0.35
    viewer.dims.set_current_step(0, 24)
    for _ in range(5):
        QApplication.processEvents()
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in window.findChildren(NapariQtNotification):  # startup warnings
        toast.hide()
    viewer.reset_view()
    QApplication.processEvents()
    iio.imwrite(OUT, viewer.screenshot(canvas_only=False, flash=False))
    print(f"wrote {OUT}")
    viewer.close()


if __name__ == "__main__":
    main()
