"""The blockwise pipeline on daisy against the in-memory merge tree, on em3d-fibsem affinities.

Affinities come from the ground truth with noise (squashed into (0, 1), not clipped: no two
equal values, so scores tie only where histogram bins do); the blockwise run uses 8 blocks, 2
worker processes and real crashes (a worker process that dies in the middle of its block).
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from segtrain.evaluate import voi
from segtrain.io import read_volume
from segtrain.scale import ScaleJob, create_job, read_graph, run_job, segment_job
from segtrain.scale.engine import make_task, run_tasks
from segtrain.segment import MergeTree, make_fragments
from segtrain.targets import affinities

pytestmark = pytest.mark.shared_data

BLOCK = (25, 50, 100)
CONTEXT = (12, 25, 50)
SEGMENT = dict(fragments="watershed", boundary_threshold=0.5, min_seed_distance=3, min_size=20,
               per_slice=False, scoring="hist_quant_50")
SRC = str(Path(__file__).resolve().parents[2] / "src")


class CrashOnce:
    """Runs a block function, then kills its own worker process the first time it meets the block
    at ``offset`` (the block's output is written, its completion never reported)."""

    def __init__(self, fn, offset, marker: Path):
        self.fn, self.offset, self.marker = fn, tuple(offset), Path(marker)

    def __call__(self, block):
        self.fn(block)
        if tuple(block.write_roi.begin) == self.offset:
            with open(self.marker, "a") as f:
                f.write(f"{os.getpid()}\n")
            if len(self.marker.read_text().split()) == 1:
                os._exit(9)


_CACHE: dict = {}  # what the tests of this module share (built once, by whichever runs first)


@pytest.fixture
def em3d(tmp_path_factory, em3d_dir):
    if "em3d" not in _CACHE:
        _CACHE["em3d"] = _em3d(tmp_path_factory, em3d_dir)
    return _CACHE["em3d"]


def _em3d(tmp_path_factory, em3d_dir):
    gt = np.asarray(read_volume(em3d_dir / "train-gt.lzf.h5", "stack").data)
    from scipy.special import expit

    affs, _ = affinities(gt)
    rng = np.random.default_rng(0)
    affs = expit(3 * (2 * affs - 1) + rng.normal(0, 1.5, affs.shape)).astype(np.float32)
    root = tmp_path_factory.mktemp("em3d")
    path = root / "affs.zarr"
    array = zarr.create_array(store=str(path), shape=affs.shape, chunks=(3, 25, 50, 50),
                              dtype="float32", zarr_format=2)
    array[:] = affs
    params = {k: v for k, v in SEGMENT.items() if k not in ("fragments", "scoring")}
    tree = MergeTree.build(affs, make_fragments(affs, "watershed", **params), scoring="hist_quant_50")
    # the threshold a user would pick: the best in-memory VOI against the ground truth
    candidates = np.round(np.arange(0.05, 0.95, 0.05), 2)
    best = min(candidates, key=lambda t: voi(tree.segmentation(t), gt)["voi"])
    return dict(root=root, affs=affs, path=path, gt=gt, tree=tree, threshold=float(best))


@pytest.fixture
def reference(em3d):
    if "reference" not in _CACHE:
        _CACHE["reference"] = _reference(em3d)
    return _CACHE["reference"]


def _reference(em3d):
    """The multi-block run with 2 workers in which one worker of each step dies mid-block."""
    job = create_job(em3d["root"] / "job", affinities=str(em3d["path"]), block_shape=BLOCK,
                     context=CONTEXT, segment=SEGMENT)
    markers = {}
    tasks = []
    for step in ("fragments", "agglomerate"):  # the block steps
        task = make_task(job, step, workers=2, retries=2)
        markers[step] = em3d["root"] / f"crash-{step}.txt"
        crashing = copy.copy(task)
        crashing.process_function = CrashOnce(task.process_function, (25, 50, 100), markers[step])
        tasks.append(crashing)
    results = run_tasks(job, tasks)
    from segtrain.scale.pipeline import _write_status, run_global_step

    _write_status(job, results)
    run_global_step(job)
    seg = segment_job(job, em3d["threshold"], workers=2)
    return dict(job=job, results=results, markers=markers, seg=seg,
                labels=zarr.open_array(str(seg.path), mode="r")[:])


def test_multiblock_two_workers_match_the_in_memory_merge_tree_despite_a_killed_worker(em3d, reference):
    job, results = reference["job"], reference["results"]
    for r in results:
        assert r.ok and r.total == 8 and r.failed == 0, r
        assert r.worker_restarts >= 1  # the killed worker was replaced ...
    for marker in reference["markers"].values():
        pids = marker.read_text().split()
        assert len(pids) == 2 and pids[0] != pids[1]  # ... and its block redone by another process
    # fragment ids are unique across blocks: every id lies in its own block's id range
    frags = zarr.open_array(str(job.volumes), path="fragments", mode="r")[:]
    for index, loc in enumerate(np.ndindex(*job.grid.grid)):
        region = tuple(slice(i * b, (i + 1) * b) for i, b in zip(loc, BLOCK))
        ids = np.unique(frags[region])
        ids = ids[ids != 0]
        assert ids.size and (job.grid.owner(ids) == index).all()
    graph = read_graph(job.db)
    np.testing.assert_array_equal(graph.ids, np.unique(frags[frags != 0]))
    assert graph.n_edges > graph.n_fragments and (job.grid.owner(graph.u) >= 0).all()
    # the segmentation at the tuned threshold is the in-memory one, up to VOI 0.02
    t = em3d["threshold"]
    blockwise, in_memory = reference["labels"], em3d["tree"].segmentation(t)
    assert reference["seg"].step.ok
    assert zarr.open_array(str(reference["seg"].path), mode="r").attrs["complete"] is True
    assert voi(blockwise, in_memory)["voi"] < 0.02
    assert abs(voi(blockwise, em3d["gt"])["voi"] - voi(in_memory, em3d["gt"])["voi"]) < 0.02


def test_multiblock_matches_the_in_memory_merge_tree_at_every_threshold(em3d, reference):
    """The whole graph is agglomerated at once (the global step), so high thresholds, where one
    block's view of a region is too small, hold too (cutting the per-block waterz scores gave VOI
    0.02 - 0.03 here from t = 0.5 up); what remains is fragments cut at block faces."""
    job = reference["job"]
    graph = read_graph(job.db)  # the same cut segment_job makes, without writing a volume each
    pieces = zarr.open_array(str(job.volumes), path="fragments", mode="r")[:]
    frags = graph.relabel(pieces, 0.0)  # the pieces of one basin, stitched across block faces
    block_tree = MergeTree.build(em3d["affs"], frags, scoring=SEGMENT["scoring"])
    for t in (0.1, 0.3, 0.5, 0.7, 0.8, 0.9):
        blockwise = graph.relabel(pieces, t)
        assert voi(blockwise + 1, em3d["tree"].segmentation(t) + 1)["voi"] < 0.02, t
        # the agglomeration itself is waterz's on the same fragments (up to histogram ties)
        assert voi(blockwise + 1, block_tree.segmentation(t) + 1)["voi"] < 0.002, t


def test_one_block_is_identical_to_the_in_memory_merge_tree(em3d):
    affs = em3d["affs"][:, :, :60, :80]
    path = em3d["root"] / "crop.zarr"
    zarr.create_array(store=str(path), shape=affs.shape, chunks=(3, 50, 60, 80), dtype="float32",
                      zarr_format=2)[:] = affs
    # mean scoring: no ties, so the global agglomeration has waterz's merge order exactly
    # (hist_quant on tie-free fragments: tests/scale/test_scale_agglomeration.py)
    job = create_job(em3d["root"] / "one", affinities=str(path), block_shape=(50, 60, 80),
                     segment=dict(SEGMENT, scoring="mean"))
    assert job.grid.n_blocks == 1
    assert all(r.ok for r in run_job(job, serial=True))
    params = {k: v for k, v in SEGMENT.items() if k not in ("fragments", "scoring")}
    frags = make_fragments(affs, "watershed", **params)
    tree = MergeTree.build(affs, frags, scoring="mean")
    np.testing.assert_array_equal(zarr.open_array(str(job.volumes), path="fragments")[:], frags)
    for t in (0.1, em3d["threshold"], 0.5, 0.8, 0.9):
        seg = segment_job(job, t, serial=True)
        blockwise = zarr.open_array(str(seg.path), mode="r")[:]
        expected = tree.segmentation(t)
        pairs = np.unique(np.stack([blockwise.ravel(), expected.ravel()], 1), axis=0)
        assert len(pairs) == len(np.unique(blockwise)) == len(np.unique(expected)), t
        assert seg.segments == tree.n_segments(t)


def test_rerun_after_an_interrupt_skips_finished_blocks_and_gives_the_same_result(em3d, reference):
    folder = em3d["root"] / "interrupted"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "segtrain.cli", "scale", "run", str(folder),
               "--affinities", str(em3d["path"]), "--block-shape", ",".join(map(str, BLOCK)),
               "--context", ",".join(map(str, CONTEXT)), "--min-seed-distance", "3",
               "--min-size", "20", "--workers", "1"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    done_file = folder / "tracking" / "fragments" / "done"
    done = 0
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        try:
            done = int(np.count_nonzero(zarr.open_array(str(done_file), mode="r")[:]))
        except Exception:  # noqa: BLE001 - not created yet
            done = 0
        if done >= 1:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal: driver and workers
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()[-2000:]
    assert "interrupted" in err.decode()
    stopped = err.decode().split("stopped: ")[1].split(" blocks done")[0]  # fragments + agglomerate
    assert 1 <= int(stopped.split(" / ")[0]) < int(stopped.split(" / ")[1]) == 16
    job = ScaleJob.open(folder)
    results = run_job(job, workers=2)
    fragments, agglomerate, global_step = results
    assert fragments.ok and agglomerate.ok and global_step.ok
    assert 1 <= fragments.skipped < 8  # what finished before the interrupt was not redone
    assert fragments.completed == 8
    seg = segment_job(job, em3d["threshold"], workers=2)
    labels = zarr.open_array(str(seg.path), mode="r")[:]
    np.testing.assert_array_equal(labels, reference["labels"])
    # and a second complete re-run skips everything
    again = run_job(job, workers=2)
    assert [(r.skipped, r.total) for r in again] == [(8, 8), (8, 8), (1, 1)]
