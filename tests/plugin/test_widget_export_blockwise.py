"""Export panel, "Full volume, blockwise", driven by clicks and typing: the segmentation tuned in the
Segment panel applied to a multi-block zarr volume by the blockwise pipeline in worker processes,
with progress in the panel; the layer it adds equals what `segtrain scale run` writes for the same
inputs; bad input gives one sentence before anything runs."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import zarr

from segtrain.plugin import layers as L
from segtrain.plugin.widgets.export import ExportWidget
from segtrain.plugin.widgets.segment import SegmentWidget


@pytest.fixture
def tuned(docked, gui, synthetic, tmp_path):
    """A merge-tree segmentation at 0.4 in the viewer, and its affinities as a zarr on disk."""
    viewer, dock = docked
    labels = synthetic["blocks_labels"]()  # (8, 48, 48)
    affs = synthetic["noisy_affinities"](labels)
    path = tmp_path / "affs.zarr"
    zarr.create_array(store=str(path), shape=affs.shape, chunks=(3, 4, 24, 24), dtype="float32",
                      zarr_format=2, attributes={"resolution": [4, 2, 2]})[:] = affs
    raw = viewer.add_image(labels.astype(np.float32), name="raw", scale=(4, 2, 2))
    info = L.LayerInfo("affinities", task="affinities", model_ndim=3,
                       settings=L.segment_config({"min_seed_distance": 3}))
    data, kwargs = L.prediction_layer_args(affs, raw, "raw affinities", "affinities", info=info)
    viewer.add_image(data, **kwargs)
    segment, export = SegmentWidget(viewer), ExportWidget(viewer)
    dock(segment, export)
    gui.click(segment.build_button)
    gui.wait_until(lambda: segment.tree is not None, timeout=60)
    gui.type(segment.threshold_spin, "0.4")
    gui.type(export.folder_edit, str(tmp_path / "out"))
    gui.click(export.blockwise_fold.button)  # unfold the section
    return viewer, segment, export, path


def test_full_volume_blockwise_equals_the_cli(tuned, gui, tmp_path, capsys):
    from segtrain.cli import main

    viewer, segment, export, path = tuned
    section = export.blockwise
    gui.type(section.source_edit, str(path))
    gui.type(section.block_edit, "4, 24, 24")  # 2 x 2 x 2 blocks
    gui.type(section.workers_spin, "2")
    gui.click(section.run_button)
    assert not section.run_button.isEnabled()
    gui.wait_until(lambda: section.worker is None, timeout=240)
    assert section.result is not None, section.progress_label.text()
    # progress showed every step's blocks, the last line says what was written
    assert section.steps == {"fragments": (8, 8, 0), "agglomerate": (8, 8, 0), "global": (1, 1, 0),
                             "segmentation": (8, 8, 0)}
    assert "Blockwise segmentation at 0.4" in section.progress_label.text()
    layer = viewer.layers[-1]
    assert layer.name == "segmentation_blockwise (blockwise, 0.4)"
    assert tuple(layer.scale) == (4, 2, 2)
    gui_labels = np.asarray(layer.data)
    # the command line, with the settings of the segmentation the panel used
    settings = L.layer_info(export.seg_combo.layer()).settings
    capsys.readouterr()  # the panel's notifications
    code = main(["scale", "run", str(tmp_path / "cli_job"), "--affinities", str(path),
                 "--block-shape", "4,24,24", "--workers", "2", "--threshold", "0.4",
                 "--out", str(tmp_path / "cli.zarr"), "--fragments-method", settings.fragments,
                 "--boundary-threshold", str(settings.boundary_threshold),
                 "--min-seed-distance", str(settings.min_seed_distance),
                 "--min-size", str(settings.min_size), "--scoring", settings.scoring])
    out = capsys.readouterr().out
    assert code == 0, out
    summary = json.loads(out)
    assert summary["blocks"] == 8
    cli_labels = zarr.open_array(str(tmp_path / "cli.zarr"), mode="r")[:]
    np.testing.assert_array_equal(gui_labels, cli_labels)
    # and it is a segmentation of the same kind as the crop's (8 cells, 8 blocks: close to it)
    assert len(np.unique(gui_labels[gui_labels > 0])) == summary["segmentation"]["segments"]


def test_bad_input_gives_one_sentence_before_anything_runs(tuned, gui, tmp_path, error_messages):
    viewer, segment, export, path = tuned
    section = export.blockwise
    gui.click(section.run_button)
    assert section.worker is None and "Give the volume" in section.progress_label.text()
    gui.type(section.source_edit, str(tmp_path / "missing.zarr"))
    gui.click(section.run_button)
    assert "does not exist" in section.progress_label.text()
    gui.type(section.source_edit, str(path))
    gui.type(section.block_edit, "4, 24")
    gui.click(section.run_button)
    assert "block shape" in section.progress_label.text()
    gui.type(section.block_edit, "4, 24, 24")
    gui.choose(section.kind_combo, "raw image + model")
    gui.click(section.run_button)
    assert "needs a model" in section.progress_label.text()
    gui.choose(export.seg_combo, "(none)")
    gui.click(section.run_button)
    assert "merge-tree segmentation" in section.progress_label.text()
    assert section.worker is None and len(error_messages()) == 5
    assert all(m.count(". ") == 0 and "Traceback" not in m for m in error_messages())


def test_a_raw_volume_with_nan_is_one_sentence_and_leaves_no_job(tuned, gui, tmp_path, error_messages):
    """Raw image + model, the raw holding NaN: the job is refused in one sentence naming the file
    (before any block runs), and neither a job folder nor an output is left."""
    from scale.test_scale_cli import tiny_checkpoint

    viewer, segment, export, _ = tuned
    section = export.blockwise
    tiny_checkpoint(tmp_path / "tiny.ckpt")
    raw = np.random.default_rng(0).random((8, 48, 48)).astype(np.float32)
    raw[4, 20, 20] = np.nan
    zarr.create_array(store=str(tmp_path / "raw.zarr"), shape=raw.shape, chunks=(4, 24, 24), dtype="float32",
                      zarr_format=2)[:] = raw
    gui.choose(section.kind_combo, "raw image + model")
    gui.type(section.source_edit, str(tmp_path / "raw.zarr"))
    gui.type(section.model_edit, str(tmp_path / "tiny.ckpt"))
    gui.type(section.block_edit, "4, 24, 24")
    gui.click(section.run_button)
    gui.wait_until(lambda: section.worker is None, timeout=120, what="the refusal")
    text = section.progress_label.text()
    assert text.startswith(f"There are NaN or infinite values in {tmp_path / 'raw.zarr'}"), text
    assert section.result is None and error_messages() and "Traceback" not in error_messages()[-1]
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())  # no job folder, no output


class ProcessWatch:
    """Polls this process's descendants every 20 ms: when each was last seen alive."""

    def __init__(self):
        import threading

        import psutil

        self.last_seen: dict[int, float] = {}
        self.commands: dict[int, str] = {}
        self.parents: dict[int, int] = {}
        self.before = self._pids()
        self.own = " ".join(psutil.Process().cmdline())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    @staticmethod
    def _pids() -> set[int]:
        import psutil

        pids = set()
        for p in psutil.Process().children(recursive=True):
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    pids.add(p.pid)
            except psutil.Error:  # ended meanwhile
                pass
        return pids

    def _poll(self) -> None:
        import time

        import psutil

        while not self._stop.is_set():
            now = time.monotonic()
            for pid in self._pids() - self.before:
                self.last_seen[pid] = now
                # read again while it lives: a child seen between fork and exec still shows this
                # process's command line (under load the driver was recorded as "pytest")
                if pid not in self.commands or self.commands[pid] == self.own:
                    try:
                        process = psutil.Process(pid)
                        self.commands[pid] = " ".join(process.cmdline())
                        self.parents[pid] = process.ppid()
                    except psutil.Error:
                        pass
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def alive(self) -> list[str]:
        return [self.commands.get(pid, str(pid)) for pid in self._pids() - self.before]


def test_stop_ends_the_job_between_blocks_and_run_resumes_it(tuned, gui, tmp_path, capsys):
    """Stop while the fragments step runs: the job ends at a block boundary with every worker
    process gone and the finished blocks kept; Run blockwise resumes it (skipping those blocks),
    and the result is what an uninterrupted `segtrain scale run` writes."""
    from segtrain.cli import main
    from segtrain.scale import ScaleJob, read_status

    viewer, segment, export, path = tuned
    section = export.blockwise
    assert not section.stop_button.isEnabled()
    gui.type(section.source_edit, str(path))
    gui.type(section.block_edit, "2, 12, 12")  # 4 x 4 x 4 = 64 blocks per step
    gui.type(section.workers_spin, "2")
    watch = ProcessWatch()  # the job's child process and its daisy workers, from now on
    gui.click(section.run_button)
    assert section.stop_button.isEnabled() and not section.run_button.isEnabled()
    gui.wait_until(lambda: section.steps.get("fragments", (0,))[0] >= 4, timeout=240)
    gui.click(section.stop_button)
    assert not section.stop_button.isEnabled()
    assert "Stopping" in section.progress_label.text()
    gui.wait_until(lambda: section.worker is None, timeout=240)
    text = section.progress_label.text()
    assert text.startswith("stopped: ") and text.endswith("blocks done; click Run blockwise to resume")
    done, total = (int(v) for v in text.removeprefix("stopped: ").split(" blocks")[0].split(" / "))
    # fragments, agglomerate, segmentation blocks; stopped before the end (tiny blocks: on a quiet machine
    # the fragments step may be over before the click lands)
    assert total == 3 * 64 and 4 <= done < total
    assert section.result == {"stopped": True, "done": done, "total": total}
    # every worker process ended, and before the job's process did (none was orphaned)
    watch.stop()
    assert not watch.alive()
    # the job's process is this process's child (daisy may fork helpers of it, which share its command line)
    driver = [pid for pid, c in watch.commands.items()
              if "segtrain.scale.driver" in c and watch.parents.get(pid) == os.getpid()]
    workers = [pid for pid, c in watch.commands.items() if "daisy._subprocess_worker" in c]
    assert len(driver) == 1 and len(workers) >= 2, watch.commands
    assert max(watch.last_seen[w] for w in workers) <= watch.last_seen[driver[0]]
    assert section.run_button.isEnabled() and not section.stop_button.isEnabled()
    assert len(viewer.layers) == 3  # no result layer
    # Run again: resumes (the finished blocks are skipped) and finishes
    gui.click(section.run_button)
    gui.wait_until(lambda: section.worker is None, timeout=300)
    assert section.result is not None and "path" in section.result, section.progress_label.text()
    job = ScaleJob.open(tmp_path / "out" / "segmentation_blockwise_job")
    assert read_status(job)["fragments"]["skipped"] >= min(done, 64)
    gui_labels = np.asarray(viewer.layers[-1].data)
    settings = L.layer_info(export.seg_combo.layer()).settings
    capsys.readouterr()
    code = main(["scale", "run", str(tmp_path / "cli_job"), "--affinities", str(path),
                 "--block-shape", "2,12,12", "--workers", "2", "--threshold", "0.4",
                 "--out", str(tmp_path / "cli.zarr"), "--fragments-method", settings.fragments,
                 "--boundary-threshold", str(settings.boundary_threshold),
                 "--min-seed-distance", str(settings.min_seed_distance),
                 "--min-size", str(settings.min_size), "--scoring", settings.scoring])
    assert code == 0, capsys.readouterr().err[-2000:]
    np.testing.assert_array_equal(gui_labels, zarr.open_array(str(tmp_path / "cli.zarr"), mode="r")[:])


def test_an_output_a_stopped_job_left_unfinished_is_resumed_not_refused(tmp_path, synthetic):
    """A job stopped while it wrote its segmentation leaves the output without `complete`: Run
    blockwise writes on into it; a finished output, or one of no job, needs 'overwrite'."""
    from segtrain.plugin.widgets.export_blockwise import unfinished_output
    from segtrain.scale import create_job
    from segtrain.scale.volumes import create_output, set_attrs

    affs = synthetic["noisy_affinities"](synthetic["blocks_labels"]())
    path = tmp_path / "affs.zarr"
    zarr.create_array(store=str(path), shape=affs.shape, dtype="float32", zarr_format=2)[:] = affs
    out = tmp_path / "seg.zarr"
    assert not unfinished_output(tmp_path / "job", out)  # neither job nor output
    job = create_job(tmp_path / "job", affinities=str(path), block_shape=(4, 24, 24))
    assert not unfinished_output(job.folder, out)  # no output yet: nothing to resume
    spec = create_output(out, affs.shape[1:], np.uint64, (4, 24, 24), (1, 1, 1), (0, 0, 0),
                         ("z", "y", "x"), True)
    assert unfinished_output(job.folder, out)
    assert not unfinished_output(tmp_path / "other_job", out)
    set_attrs(spec, {"complete": True})
    assert not unfinished_output(job.folder, out)
