"""The blockwise pipeline from Python: create a job, run its steps, segment at a threshold.

    job = create_job("job/", affinities="affs.zarr", block_shape=(64, 256, 256), segment=cfg.segment)
    run_job(job, workers=8)                      # (predict) + fragments + agglomerate + global
    seg = segment_job(job, threshold=0.4)        # graph cut -> lookup -> relabel block by block
    crop = read_graph(job.db, roi=((0, 0, 0), (64, 512, 512)))   # a crop of the graph (GUI slider)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segtrain.errors import InputError
from segtrain.scale.engine import (
    DEFAULT_TIMEOUT_S,
    Progress,
    StepResult,
    make_task,
    run_tasks,
)
from segtrain.scale.graph_db import open_graph_db, read_graph
from segtrain.scale.job import (
    JOB_FILE,
    JobSettings,
    ScaleJob,
    check_segment_settings,
    grid_settings,
)
from segtrain.scale.volumes import ArraySpec, check_reusable, create_output, describe_input, set_attrs
from segtrain.config import SegmentConfig
from segtrain.config import divisor
from segtrain.io.atomic import atomic_path
from segtrain.scale.agglomeration import global_merge_scores
from segtrain.scale.blocks import lut_files
from segtrain.scale.graph_db import count_nodes
from segtrain.scale.graph_db import count_unscored_edges
from segtrain.scale.graph_db import read_edge_statistics
from segtrain.scale.graph_db import read_stitched_pairs
from segtrain.scale.graph_db import write_merge_scores
from segtrain.segment._waterz import check_threshold

STATUS_FILE = "status.json"


def _segment_dict(segment) -> dict:
    base = dataclasses.asdict(SegmentConfig())
    if segment is None:
        return base
    if dataclasses.is_dataclass(segment):
        segment = dataclasses.asdict(segment)
    unknown = set(segment) - set(base)
    if unknown:
        raise InputError(f"Unknown segment settings {', '.join(sorted(unknown))}.")
    return {**base, **segment}


def _spatial_3d(volume, what: str) -> tuple[tuple[int, ...], tuple[float, ...], tuple[float, ...]]:
    axes = tuple(volume.axes)
    spatial = tuple(s for s, a in zip(volume.data.shape, axes) if a != "c")
    if len(spatial) != 3:
        raise InputError(f"The {what} has {len(spatial)} spatial axes {axes}; the blockwise pipeline "
                         "works on 3D volumes (z, y, x).")
    return spatial, tuple(volume.voxel_size), tuple(volume.offset)


def _model_settings(model: str, segment):
    from segtrain.predict import load_model
    from segtrain.tasks import is_affinities

    loaded = load_model(model, device="cpu")
    heads = {h.name: h.channels for h in loaded.model.heads}
    channels = next((n for name, n in heads.items() if is_affinities(name)), None)
    if channels is None:
        raise InputError(f"The model {model} predicts {', '.join(heads)}, not affinities; the blockwise "
                         "pipeline needs an affinity model.")
    if loaded.config.ndim != 3:
        raise InputError(f"The model {model} is {loaded.config.ndim}D; the blockwise pipeline needs a 3D model.")
    seg = _segment_dict(loaded.config.segment)
    seg.update(_segment_dict(segment) if segment is not None else {})
    return loaded, channels, tuple(divisor(loaded.config)), seg


def _intensity(array, mode: str, name: str) -> tuple[float, float]:
    """The input range the model's normalisation maps to [0, 1]: from the whole volume when it is
    held in memory, else from a central crop of at most 256 voxels per axis. NaN or infinity in
    what was read refuses the job at once (a NaN range would poison every block); elsewhere the
    blocks meet it (:func:`~segtrain.scale.blocks.stop_at_bad_input`)."""
    from segtrain.io.read import check_finite
    from segtrain.train.sources import intensity_range

    centre = ()
    if not isinstance(array, np.ndarray):
        centre = tuple(slice(max(0, s // 2 - 128), s // 2 + 128) for s in array.shape)
        array = np.asarray(array[centre])
    check_finite(array, name, centre)
    return intensity_range(array, mode)


def create_job(folder: str | Path, *, block_shape: Sequence[int], affinities: str | None = None,
               affinities_dataset: str | None = None, raw: str | None = None,
               raw_dataset: str | None = None, model: str | None = None,
               context: Sequence[int] | None = None, predict_context: Sequence[int] | None = None,
               segment=None, max_threshold: float = 1.0, db: str | None = None) -> ScaleJob:
    """Create a job folder (or reopen it when it exists with the same settings).

    Give ``affinities`` (C>=3, z, y, x), or ``raw`` with ``model`` (a run folder or checkpoint;
    its segment settings are the defaults). ``segment`` holds SegmentConfig fields (fragments,
    boundary_threshold, min_seed_distance, min_size, per_slice, scoring) that override them.
    ``context`` (voxels per side, default a quarter block) is what fragments and agglomeration
    see beyond their block; ``db`` a PostgreSQL URL (default: ``graph.sqlite`` in the folder).
    """

    folder = Path(folder)
    max_threshold = check_threshold(max_threshold, "maximum threshold")
    if (affinities is None) == (raw is None):
        raise InputError("Give either affinities, or raw data with a model.")
    if raw is not None and model is None:
        raise InputError("Predicting from raw data needs a model (--model RUN).")
    raw_spec = model_path = intensity = None
    if raw is not None:
        loaded, channels, div, seg = _model_settings(model, segment)
        raw_spec, volume = describe_input(raw, raw_dataset)
        shape, voxel_size, offset = _spatial_3d(volume, "raw volume")
        model_path = str(Path(model).resolve())
        intensity = _intensity(volume.data, loaded.config.data.normalize,
                               f"{raw}/{raw_dataset}" if raw_dataset else str(raw))
        if predict_context is None:
            margin = loaded.config.predict.margin or [16, 16, 16]
            predict_context = [int(np.ceil(m / d) * d) for m, d in zip(margin, div)]
        if any(b % d for b, d in zip(block_shape, div)):
            raise InputError(f"The block shape {tuple(block_shape)} must be a multiple of the model's "
                             f"downsampling factors {div}.")
        affs_spec = ArraySpec(str(folder / "volumes.zarr"), "affinities", "zarr", channel_axis=0)
    else:
        affs_spec, volume = describe_input(affinities, affinities_dataset)
        if affs_spec.channel_axis is None or volume.data.shape[affs_spec.channel_axis] < 3:
            raise InputError(f"{affinities} must hold affinities (C>=3, z, y, x) with channels first; "
                             f"it has shape {volume.data.shape} and axes {volume.axes}.")
        shape, voxel_size, offset = _spatial_3d(volume, "affinities")
        seg = _segment_dict(segment)
        predict_context = (0, 0, 0)
    if context is None:
        context = tuple(max(1, int(b) // 4) for b in block_shape)
    shape, block_shape, context = grid_settings(shape, block_shape, context)
    settings = JobSettings(
        shape=shape, block_shape=block_shape, context=context, voxel_size=voxel_size,
        offset=offset, affinities=affs_spec, segment=check_segment_settings(seg),
        max_threshold=max_threshold, db=db or "", raw=raw_spec, model=model_path,
        predict_context=tuple(int(c) for c in predict_context), intensity=intensity,
    )
    if (folder / JOB_FILE).exists():
        return ScaleJob.create(folder, settings)  # same settings: reopen; else a clear error
    if not folder.parent.exists():
        raise InputError(f"Folder {folder.parent} does not exist; create it first.")
    folder.mkdir(exist_ok=True)
    job = ScaleJob(folder, settings)
    axes = ("z", "y", "x")
    if raw is not None:  # how the affinities are made, the record `segtrain predict` writes
        from segtrain.config import segment_config

        record = loaded.record(settings=segment_config(seg))
        create_output(folder / "volumes.zarr" / "affinities", (channels, *shape), np.float32,
                      (channels, *block_shape), voxel_size, offset, ("c", *axes), False,
                      attrs={"kind": "affinities", **record.to_attrs()},
                      complete_with=f"segtrain scale run {folder}")
    create_output(folder / "volumes.zarr" / "fragments", shape, np.uint64, block_shape,
                  voxel_size, offset, axes, True, complete_with=f"segtrain scale run {folder}")
    (folder / "faces").mkdir(exist_ok=True)
    open_graph_db(job.db, mode="w").close()
    return ScaleJob.create(folder, settings)  # job.json last: its presence means "set up"


# --- status -------------------------------------------------------------------------------------


def read_status(job: ScaleJob) -> dict:
    file = job.folder / STATUS_FILE
    return json.loads(file.read_text()) if file.exists() else {}


def _write_status(job: ScaleJob, results: list[StepResult]) -> None:
    status = read_status(job)
    for r in results:
        status[r.task_id] = dict(r.to_dict(), complete=r.ok)
    with atomic_path(job.folder / STATUS_FILE, overwrite=True) as tmp:
        tmp.write_text(json.dumps(status, indent=2))


# --- running ------------------------------------------------------------------------------------


def run_job(job: ScaleJob, steps: Sequence[str] | None = None, workers: int = 1, retries: int = 2,
            timeout: float | None = DEFAULT_TIMEOUT_S, launcher: str | None = None,
            host: str | None = None, progress: Progress | None = None, bars: bool = False,
            serial: bool = False) -> list[StepResult]:
    """Run the job's steps (default: all): the block steps block by block (finished blocks are
    skipped), then the global step once the agglomeration of every block is done."""
    steps = list(steps or job.steps)
    unknown = [s for s in steps if s not in job.steps]
    if unknown:
        raise InputError(f"Unknown or unavailable step(s) {', '.join(unknown)}; this job has "
                         f"{', '.join(job.steps)}.")
    steps = [s for s in job.steps if s in steps]
    tasks = [make_task(job, s, workers, retries, timeout, launcher) for s in steps if s != "global"]
    results = run_tasks(job, tasks, progress=progress, bars=bars, host=host, serial=serial)
    _write_status(job, results)
    if all(r.ok for r in results) and "fragments" in steps:
        set_attrs(job.fragments, {"complete": True})
    if all(r.ok for r in results) and "predict" in steps:
        set_attrs(ArraySpec(str(job.volumes), "affinities", "zarr"), {"complete": True})
    if "global" in steps and all(r.ok for r in results):
        results.append(run_global_step(job, progress=progress, bars=bars))
    return results


def input_error_of(job: ScaleJob, results: Sequence[StepResult]) -> InputError | None:
    """The one sentence for blocks that stopped at NaN or infinity in the raw volume (every retry
    would fail again), naming the volume; None when no block did."""
    failed = next((r for r in results if r.input_error), None)
    if failed is None:
        return None
    from segtrain.io.read import NonFiniteError

    raw = job.settings.raw
    name = f"{raw.path}" + (f"/{raw.dataset}" if getattr(raw, "dataset", None) else "") if raw else "the input"
    return NonFiniteError(name, f" (the {failed.task_id} step stopped at them)")


GLOBAL = "global"


def run_global_step(job: ScaleJob, progress: Progress | None = None, bars: bool = False) -> StepResult:
    """The global step, in this process: read every edge's statistics, agglomerate the whole
    region graph as waterz would (:func:`segtrain.scale.agglomeration.global_merge_scores`) and
    store each edge's merge score. Skipped when it finished before and no edge came since."""

    if not read_status(job).get("agglomerate", {}).get("complete"):
        raise InputError(f"The agglomeration of {job.folder} has not finished for every block; "
                         "run `segtrain scale run` on it (again) first.")
    if progress is not None:
        progress(GLOBAL, 0, 1, 0)
    done = bool(read_status(job).get(GLOBAL, {}).get("complete")) and count_unscored_edges(job.db) == 0
    if not done:
        stats = read_edge_statistics(job.db)
        if len(stats) == 0 and count_nodes(job.db) == 0:
            s = job.settings.segment
            raise InputError(
                f"The affinities of {job.folder} give no fragments (no voxel has affinities above the boundary "
                f"threshold {s.get('boundary_threshold')} with fragments method {s.get('fragments')}): there is "
                "nothing to segment; check that the input holds affinities (1 = same object), or start a new job "
                "with a lower --boundary-threshold.")
        if len(stats):  # one fragment, or fragments that touch nowhere: nothing to agglomerate
            scores = global_merge_scores(stats, job.settings.segment["scoring"], job.settings.max_threshold,
                                         stitched=read_stitched_pairs(job.db))
            write_merge_scores(job.db, stats.u, stats.v, scores)
    if progress is not None:
        progress(GLOBAL, 1, 1, 0)
    if bars:
        print(f"{GLOBAL}: " + ("done before" if done else f"{len(stats)} edges agglomerated"),
              file=sys.stderr)
    result = StepResult(GLOBAL, 1, 1, int(bool(done)), 0, 0, 0)
    _write_status(job, [result])
    return result


@dataclass
class SegmentResult:
    output: ArraySpec
    threshold: float
    fragments: int
    segments: int
    step: StepResult

    @property
    def path(self) -> Path:
        return Path(self.output.path) / (self.output.dataset or "")


def _lut_key(threshold: float, output: Path) -> str:
    digest = hashlib.sha1(str(output.resolve()).encode()).hexdigest()[:8]
    return f"{threshold:.6g}-{digest}"


def _segmentation_output(job: ScaleJob, threshold: float, out: str | Path | None) -> Path:
    return Path(out) if out is not None else job.volumes / f"segmentation_{threshold:.6g}"


def blocks_done(job: ScaleJob, threshold: float | None = None,
                out: str | Path | None = None) -> tuple[int, int]:
    """``(done, total)`` blocks of the job's block steps (and of its segmentation at
    ``threshold`` into ``out``, when given) as daisy recorded them: what a resume skips."""
    import zarr

    steps = list(job.block_steps)
    if threshold is not None:
        threshold = check_threshold(threshold)
        steps.append(f"relabel-{_lut_key(threshold, _segmentation_output(job, threshold, out))}")
    done = 0
    for step in steps:
        marks = job.tracking / step / "done"
        if marks.exists():
            done += int(np.count_nonzero(zarr.open_array(str(marks), mode="r")[:]))
    return done, job.grid.n_blocks * len(steps)


def save_lookup(job: ScaleJob, key: str, ids: np.ndarray, segments: np.ndarray) -> None:
    """Write a lookup table as two .npy files (sorted ids, segments) that workers memory-map."""

    job.luts.mkdir(exist_ok=True)
    for file, values in zip(lut_files(job, key), (ids, segments)):
        with atomic_path(file, overwrite=True) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(values, dtype=np.uint64))


def segment_job(job: ScaleJob, threshold: float, out: str | Path | None = None, workers: int = 1,
                retries: int = 2, timeout: float | None = DEFAULT_TIMEOUT_S,
                launcher: str | None = None, host: str | None = None,
                progress: Progress | None = None, bars: bool = False,
                serial: bool = False) -> SegmentResult:
    """The segmentation at ``threshold``: connected components of the graph's edges scoring
    below it give a lookup table, applied to the fragments block by block into ``out`` (a
    ``.zarr`` or ``.n5`` path; default ``JOB/volumes.zarr/segmentation_<threshold>``)."""

    threshold = check_threshold(threshold)
    if threshold > job.settings.max_threshold + 1e-9:
        raise InputError(f"Threshold {threshold} is above the job's maximum threshold "
                         f"{job.settings.max_threshold}.")
    status = read_status(job)
    if not status.get(GLOBAL, {}).get("complete"):
        raise InputError(f"The agglomeration of {job.folder} has not finished (every block, then "
                         "the global step); run `segtrain scale run` on it (again) first.")
    out = _segmentation_output(job, threshold, out)
    check_reusable(out)  # never written into an array no blockwise step made; before the lookup is saved
    key = _lut_key(threshold, out)
    graph = read_graph(job.db)
    ids, segments = graph.lookup(threshold)
    save_lookup(job, key, ids, segments)
    s = job.settings
    spec = create_output(out, s.shape, np.uint64, s.block_shape, s.voxel_size, s.offset,
                         ("z", "y", "x"), True,
                         attrs=dict(threshold=threshold, scoring=s.segment["scoring"]),
                         complete_with=f"segtrain scale segment {job.folder} --threshold {threshold} --out {out}")
    task = make_task(job, f"relabel-{key}", workers, retries, timeout, launcher, output=spec)
    (result,) = run_tasks(job, [task], progress=progress, bars=bars, host=host, serial=serial)
    _write_status(job, [result])
    if result.ok:
        set_attrs(spec, {"complete": True})
    return SegmentResult(spec, threshold, int(len(ids)), int(len(np.unique(segments))), result)
