"""What one worker does with one block, per step (module-level functions, so daisy's worker
processes import them by reference).

Every function reads its block grown by the job's context (clipped to the volume), computes, and
writes only its own block: a zarr/N5 region or database rows. Re-running a block writes the same
values again, so a block retried after a crash leaves the same result.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from segtrain.io.atomic import atomic_path
from segtrain.io.read import NonFiniteError
from segtrain.scale.geometry import block_regions
from segtrain.scale.job import ScaleJob, input_error_file, load_job
from segtrain.scale.volumes import open_array, read_spatial
from segtrain.config import segment_config
from segtrain.postprocess import fragments_of
from segtrain.scale.edge_stats import EdgeStatistics
from segtrain.scale.edge_stats import edge_statistics
from segtrain.scale.edge_stats import scoring_quantile
from segtrain.scale.graph import UNMERGED
from segtrain.scale.graph import join_scores
from segtrain.scale.graph_db import open_graph_writer
from segtrain.scale.relabel import _apply_sparse
from segtrain.scale.stitch import face_views
from segtrain.scale.stitch import load_view
from segtrain.scale.stitch import same_basin_pairs
from segtrain.scale.stitch import save_views
from segtrain.segment import MergeTree
from segtrain.segment import relabel_consecutive
from segtrain.segment._waterz import as_waterz_affinities

#: The channels fragments and waterz use: the z, y, x nearest-neighbour affinities.
NEAREST = slice(0, 3)


# --- predict ------------------------------------------------------------------------------------


def _device() -> str | None:
    """This worker's GPU (CUDA: worker id modulo the GPUs it sees; Apple MPS), or None for the CPU."""
    from segtrain.device import choose_device

    choice = choose_device(threads=1)
    if choice.kind != "cuda":
        return "mps" if choice.kind == "mps" else None
    worker = 0
    try:
        import daisy

        worker = max(0, int(daisy.Context.from_env()["worker_id"]))
    except Exception:  # noqa: BLE001 - not under daisy (serial run): the first GPU
        pass
    return f"cuda:{worker % choice.count}"


@functools.lru_cache(maxsize=1)
def _model(path: str):
    """The model, loaded once per worker process; it is given normalised input."""
    from segtrain.predict import load_model

    loaded = load_model(path, device=_device())
    loaded.config.data.normalize = "none"
    return loaded


def predict_block(job_dir: str, block) -> None:
    from segtrain.predict import predict_array
    from segtrain.train.sources import normalize

    job = load_job(job_dir)
    s = job.settings
    read, inner, _ = block_regions(block, s.shape)
    raw = read_spatial(s.raw, read)
    low, high = s.intensity or (0.0, 1.0)
    out = predict_array(_model(s.model), normalize(raw, low, high))["affinities"]
    target = open_array(s.affinities, write=True)
    write = tuple(slice(r.start + i.start, r.start + i.stop) for r, i in zip(read, inner))
    target[(slice(None), *write)] = out[(slice(None), *inner)]


# --- fragments ----------------------------------------------------------------------------------


def centres_and_sizes(local: np.ndarray, n: int, begin) -> tuple[np.ndarray, np.ndarray]:
    """Centre of mass (voxels, global z, y, x) and size of local ids 1..n."""
    flat = local.reshape(-1).astype(np.int64)
    sizes = np.bincount(flat, minlength=n + 1)[1:]
    centres = np.zeros((n, 3), dtype=np.float64)
    for axis in range(3):
        shape = [1, 1, 1]
        shape[axis] = local.shape[axis]
        coord = np.broadcast_to(np.arange(local.shape[axis], dtype=np.float32).reshape(shape),
                                local.shape).reshape(-1)
        sums = np.bincount(flat, weights=coord, minlength=n + 1)[1:]
        centres[:, axis] = sums / np.maximum(sizes, 1) + begin[axis]
    return centres, sizes


def fragments_block(job_dir: str, block) -> None:
    """Fragments of the block plus context, cropped to the block (ids offset per block), its
    views of the neighbours' first planes (for stitching) and its nodes."""

    job = load_job(job_dir)
    s = job.settings
    settings = segment_config(s.segment)
    read, inner, begin = block_regions(block, s.shape)
    affs = read_spatial(s.affinities, read, NEAREST)
    frags = fragments_of(affs, settings, voxel_size=tuple(s.voxel_size))
    local = relabel_consecutive(frags[inner])
    n = int(local.max()) if local.size else 0
    out = local.copy()
    offset = np.uint64(job.grid.id_offset(begin))
    out[out != 0] += offset
    write = tuple(slice(b, b + e.stop - e.start) for b, e in zip(begin, inner))
    open_array(job.fragments, write=True)[write] = out
    ids = np.unique(frags[inner])
    save_views(job.face_file(job.grid.index(begin)),
               face_views(frags, inner, ids[ids != 0], int(offset)))
    centres, sizes = centres_and_sizes(local, n, begin)
    db = open_graph_writer(job.db)
    try:
        db.write_nodes(np.arange(1, n + 1, dtype=np.uint64) + offset, centres, sizes)
    finally:
        db.close()


# --- agglomerate --------------------------------------------------------------------------------


def block_edges(job: ScaleJob, affs: np.ndarray, fragments: np.ndarray, index: int,
                inner: tuple[slice, ...], extra=None):
    """Edges owned by block ``index`` (their smaller id is one of its fragments) among
    ``fragments`` (its block grown by the context; ``inner`` the block in it): their statistics
    (:class:`~segtrain.scale.edge_stats.EdgeStatistics`, sorted by ``(u, v)``) and the score at
    which waterz joins them on this region (float32). ``extra`` pairs ``(u, v)`` are edges too,
    with no statistics where their fragments do not touch."""

    scoring = job.settings.segment["scoring"]
    waffs, _ = as_waterz_affinities(affs)
    histograms = scoring_quantile(scoring) is not None
    # the owner's fragments lie in the block: their voxel pairs, in the block grown by one voxel
    near = tuple(slice(max(0, i.start - 1), min(n, i.stop + 1)) for i, n in zip(inner, fragments.shape))
    stats = edge_statistics(waffs, fragments, histograms=histograms,
                            region=near, keep=lambda u: job.grid.owner(u) == index)
    if extra is not None and len(extra[0]):
        stats = EdgeStatistics.concatenate([stats, EdgeStatistics.empty(*extra, histograms)])
    if not len(stats):
        return stats, np.zeros(0, np.float32)
    ids, local = np.unique(fragments, return_inverse=True)
    local = local.reshape(fragments.shape).astype(np.uint64)
    if ids[0] != 0:
        ids = np.concatenate([[0], ids]).astype(np.uint64)
        local += np.uint64(1)
    tree = MergeTree.build(waffs, local, scoring=scoring, max_threshold=job.settings.max_threshold)
    # a stitched piece may lie beyond this region: such pairs get UNMERGED
    at_u = np.minimum(np.searchsorted(ids, stats.u), len(ids) - 1)
    at_v = np.minimum(np.searchsorted(ids, stats.v), len(ids) - 1)
    here = (ids[at_u] == stats.u) & (ids[at_v] == stats.v)
    scores = np.full(len(stats), UNMERGED, np.float32)
    scores[here] = join_scores(len(ids) - 1, tree.merges_a, tree.merges_b, tree.running_max,
                               at_u[here], at_v[here])
    return stats, scores


def stitched_pairs(job: ScaleJob, fragments: np.ndarray, index: int,
                   inner: tuple[slice, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Pieces of one basin across the faces block ``index`` shares with its upper neighbours
    (``(u, v)``, ``u`` in this block): the stored ``fragments`` (the block grown by at least one
    voxel; ``inner`` the block in it) on the planes either side of each face, against the two
    blocks' views of them (:mod:`segtrain.scale.stitch`). A face without views stitches nothing."""

    loc = np.unravel_index(index, job.grid.grid)
    us, vs = [np.zeros(0, np.uint64)], [np.zeros(0, np.uint64)]
    for axis in range(3):
        if loc[axis] + 1 >= job.grid.grid[axis] or inner[axis].stop >= fragments.shape[axis]:
            continue
        up = list(loc)
        up[axis] += 1
        neighbour = int(np.ravel_multi_index(up, job.grid.grid))
        mine, theirs = list(inner), list(inner)
        mine[axis], theirs[axis] = inner[axis].stop - 1, inner[axis].stop
        lower, upper = [], []
        view = load_view(job.face_file(index), axis, +1)  # this block's labels on their plane
        if view is not None:
            lower.append(view.reshape(-1))
            upper.append(fragments[tuple(theirs)].reshape(-1))
        view = load_view(job.face_file(neighbour), axis, -1)  # theirs on this block's plane
        if view is not None:
            lower.append(fragments[tuple(mine)].reshape(-1))
            upper.append(view.reshape(-1))
        if lower:
            u, v = same_basin_pairs(np.concatenate(lower), np.concatenate(upper))
            us.append(u)
            vs.append(v)
    return np.concatenate(us), np.concatenate(vs)


def agglomerate_block(job_dir: str, block) -> None:
    """The block's edges with their statistics, per-block scores and stitched flags."""

    job = load_job(job_dir)
    s = job.settings
    read, inner, begin = block_regions(block, s.shape)
    index = job.grid.index(begin)
    affs = read_spatial(s.affinities, read, NEAREST)
    fragments = np.asarray(open_array(job.fragments)[read], dtype=np.uint64)
    su, sv = stitched_pairs(job, fragments, index, inner)
    stats, block_scores = block_edges(job, affs, fragments, index, inner, extra=(su, sv))
    stitched = stats.contains(su, sv)
    db = open_graph_writer(job.db)
    try:
        db.write_edges(stats.u, stats.v, block_scores=block_scores, stats=stats, stitched=stitched)
    finally:
        db.close()


# --- relabel ------------------------------------------------------------------------------------


def lut_files(job: ScaleJob, key: str):
    return job.luts / f"{key}.ids.npy", job.luts / f"{key}.segments.npy"


def relabel_block(job_dir: str, key: str, output, block) -> None:
    """Apply the lookup table ``key`` to the block's fragments and write it to ``output``.

    Only the part of the (memory-mapped) table for this block's id range is read.
    """

    job = load_job(job_dir)
    read, _, _ = block_regions(block, job.settings.shape)
    frags = np.asarray(open_array(job.fragments)[read], dtype=np.uint64)
    ids_file, segs_file = lut_files(job, key)
    ids = np.load(ids_file, mmap_mode="r")
    segs = np.load(segs_file, mmap_mode="r")
    nz = frags[frags != 0]
    if nz.size:
        lo, hi = np.searchsorted(ids, [nz.min(), nz.max()], side="left")
        hi = min(int(hi) + 1, len(ids))
        part_ids, part_segs = np.asarray(ids[lo:hi]), np.asarray(segs[lo:hi])
    else:
        part_ids = part_segs = np.zeros(0, np.uint64)
    open_array(output, write=True)[read] = _apply_sparse(frags, part_ids, part_segs)


def stop_at_bad_input(job_dir: str, process, block) -> None:
    """``process(block)``, except that an input holding NaN or infinity fails the block without
    ending its worker and writes why to ``JOB/input-error.txt``; every later block of the run then
    fails at once. Each block would otherwise meet the same values again, and each failure would
    cost daisy a retry and a new worker process (seconds each) before the job gave up."""
    from daisy import BlockStatus

    marker = input_error_file(job_dir)
    if marker.exists():
        block.status = BlockStatus.FAILED
        return
    try:
        process(block)
    except NonFiniteError as error:
        with atomic_path(marker, overwrite=True) as tmp:
            tmp.write_text(str(error))
        block.status = BlockStatus.FAILED


def block_function(job_dir: str, task_id: str, output=None):
    """The function daisy calls per block for a task id (``predict``, ``fragments``,
    ``agglomerate``, ``relabel-<key>``)."""
    job_dir = os.fspath(job_dir)
    if task_id.startswith("relabel-"):
        process = functools.partial(relabel_block, job_dir, task_id.removeprefix("relabel-"), output)
    else:
        functions = {"predict": predict_block, "fragments": fragments_block,
                     "agglomerate": agglomerate_block}
        process = functools.partial(functions[task_id], job_dir)
    return functools.partial(stop_at_bad_input, job_dir, process)
