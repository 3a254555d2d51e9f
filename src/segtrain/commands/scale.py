"""`segtrain scale`: the blockwise pipeline past one machine (daisy), resumable.

    segtrain scale run JOB --affinities affs.zarr --block-shape 64,256,256 --workers 8
    segtrain scale run JOB --raw raw.zarr --model runs/my-run --workers 4 --launcher "srun --gres=gpu:1"
    (steps: [predict,] fragments, agglomerate (edge statistics and stitched pieces per block),
     global (in this process))
    segtrain scale segment JOB --threshold 0.4 --out seg.zarr
    segtrain scale status JOB
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from segtrain.commands._numbers import finite_float, int_tuple, non_negative_int, positive_float, positive_int

HELP = "blockwise predict -> fragments (stitched across block faces) -> region graph with edge " \
       "statistics -> waterz's agglomeration of the whole graph -> segments on daisy (resumable, " \
       "local or cluster workers)"

SEGMENT_FLAGS = {
    "fragments_method": "fragments", "boundary_threshold": "boundary_threshold",
    "min_seed_distance": "min_seed_distance", "min_size": "min_size", "scoring": "scoring",
}


def _engine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=positive_int, default=1, help="worker processes (default 1)")
    parser.add_argument("--retries", type=non_negative_int, default=2,
                        help="times a failed block is retried before it is listed as failed (default 2)")
    parser.add_argument("--block-timeout", type=positive_float, default=3600.0,
                        help="seconds a block may take before its worker is stopped and the block "
                             "retried (default 3600)")
    parser.add_argument("--launcher", default=None,
                        help="command that starts each worker elsewhere, e.g. 'srun -p gpu "
                             "--gres=gpu:1' (default: local processes)")
    parser.add_argument("--host", default=None,
                        help="address workers connect back to (default: detected; 127.0.0.1 "
                             "keeps the run on this machine)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="scale_command", metavar="ACTION", required=True)
    run = sub.add_parser("run", help="create or resume a job and run its steps")
    run.add_argument("job", help="job folder (created if new; a re-run resumes it)")
    source = run.add_mutually_exclusive_group()
    source.add_argument("--affinities", help="affinities (C>=3, z, y, x): zarr, OME-Zarr or N5")
    source.add_argument("--raw", help="raw volume to predict from (with --model)")
    run.add_argument("--dataset", help="array inside the input container")
    run.add_argument("--model", help="run folder or checkpoint (with --raw); its segment settings "
                                     "are the defaults")
    run.add_argument("--block-shape", default="64,256,256", help="voxels per block z,y,x")
    run.add_argument("--context", default=None,
                     help="voxels the fragments step sees beyond a block, z,y,x (default: a quarter "
                          "block; more context, fragments closer to the in-memory ones)")
    run.add_argument("--predict-context", default=None,
                     help="voxels the network sees beyond a block (default: the model's margin)")
    run.add_argument("--fragments-method", choices=["watershed", "waterz"], default=None)
    run.add_argument("--per-slice", action="store_true", default=None,
                     help="fragments slice by slice (anisotropic data)")
    run.add_argument("--boundary-threshold", type=finite_float, default=None)
    run.add_argument("--min-seed-distance", type=int, default=None)
    run.add_argument("--min-size", type=int, default=None)
    run.add_argument("--scoring", default=None, help="mean or hist_quant_10 ... hist_quant_95")
    run.add_argument("--max-threshold", type=finite_float, default=1.0)
    run.add_argument("--db", default=None,
                     help="postgresql://user:password@host:port/name (default: JOB/graph.sqlite)")
    run.add_argument("--steps", default=None,
                     help="comma-separated subset of predict,fragments,agglomerate,global "
                          "(default: all)")
    run.add_argument("--threshold", type=finite_float, default=None,
                     help="also write the segmentation at this threshold (choose it with "
                          "`segtrain sweep` on a crop; no blind default)")
    run.add_argument("--out", default=None, help="segmentation output (.zarr or .n5 path)")
    _engine_arguments(run)

    seg = sub.add_parser("segment", help="the segmentation at a threshold, block by block")
    seg.add_argument("job")
    seg.add_argument("--threshold", type=finite_float, required=True)
    seg.add_argument("--out", default=None,
                     help="output .zarr or .n5 path (default: JOB/volumes.zarr/segmentation_<t>)")
    _engine_arguments(seg)

    status = sub.add_parser("status", help="settings and finished steps of a job, as JSON")
    status.add_argument("job")


def _segment_overrides(args) -> dict | None:
    values = {key: getattr(args, flag) for flag, key in SEGMENT_FLAGS.items()
              if getattr(args, flag) is not None}
    if args.per_slice:
        values["per_slice"] = True
    return values or None


def _report(results, stream=sys.stderr) -> bool:
    ok = True
    for r in results:
        if r.ok:
            continue
        ok = False
        print(f"segtrain scale: {r.task_id}: {r.failed} of {r.total} blocks failed "
              f"({r.total - r.completed - r.failed} not run); re-run to retry them.", file=stream)
        for begin, end in r.failed_blocks[:20]:
            print(f"  failed block {list(begin)} .. {list(end)}", file=stream)
        if len(r.failed_blocks) > 20:
            print(f"  ... and {len(r.failed_blocks) - 20} more", file=stream)
        if r.first_error:
            print(f"  first error: {r.first_error}", file=stream)
    return ok


def _engine_kwargs(args) -> dict:
    return dict(workers=args.workers, retries=args.retries, timeout=args.block_timeout,
                launcher=args.launcher, host=args.host, bars=True)


def _check_out(out, job=None, given: tuple | None = None) -> None:
    """A segmentation ``--out`` that is (or holds) one of the job's volumes or the ``given`` input
    of a job being made is refused, before any work (the job's own ``volumes.zarr`` group, where
    segmentations go by default, receives them beside the others)."""
    from segtrain.io.write import check_not_input

    if out is None:
        return
    specs = [] if job is None else [job.settings.affinities, job.settings.raw, job.fragments]
    check_not_input(out, [(s.path, s.dataset) for s in specs if s is not None] + ([given] if given else []))


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from segtrain.errors import SegtrainError
    from segtrain.scale.job import JOB_FILE, ScaleJob
    from segtrain.scale.pipeline import create_job, input_error_of, read_status, run_job, segment_job

    if args.scale_command == "status":
        job = ScaleJob.open(args.job)
        print(json.dumps(dict(settings=job.settings.to_dict(), status=read_status(job),
                              blocks=job.grid.n_blocks), indent=2))
        return 0
    if args.scale_command == "segment":
        job = ScaleJob.open(args.job)
        _check_out(args.out, job)
        result = segment_job(job, args.threshold, args.out, **_engine_kwargs(args))
        ok = _report([result.step])
        print(json.dumps(dict(output=str(result.path), threshold=result.threshold,
                              fragments=result.fragments, segments=result.segments,
                              complete=result.step.ok), indent=2))
        return 0 if ok else 1

    given = args.affinities or args.raw
    if given is None and not (Path(args.job) / JOB_FILE).exists():
        from segtrain.errors import InputError

        raise InputError(f"{args.job} is a new job: give --affinities, or --raw with --model.")
    new = given is not None and not Path(args.job).exists()
    parent = Path(args.job).absolute().parent
    parent_times = parent.stat() if new and parent.is_dir() else None
    existing = ScaleJob.open(args.job) if (Path(args.job) / JOB_FILE).exists() else None
    _check_out(args.out, existing, None if given is None else (given, args.dataset))  # before the job folder is made
    if given is None:
        job = existing
    else:
        job = create_job(
            args.job, block_shape=int_tuple(args.block_shape, "block shape"),
            affinities=args.affinities, affinities_dataset=args.dataset if args.affinities else None,
            raw=args.raw, raw_dataset=args.dataset if args.raw else None, model=args.model,
            context=int_tuple(args.context, "context", 0),
            predict_context=int_tuple(args.predict_context, "predict context", 0),
            segment=_segment_overrides(args), max_threshold=args.max_threshold, db=args.db,
        )
    steps = [s.strip() for s in args.steps.split(",")] if args.steps else None
    try:
        results = run_job(job, steps, **_engine_kwargs(args))
        poisoned = input_error_of(job, results)  # every retry would fail again: one sentence, exit 2
        if poisoned is not None:
            raise poisoned
        ok = _report(results)
        summary = dict(job=str(job.folder), blocks=job.grid.n_blocks, database=job.db,
                       steps=[r.to_dict() for r in results])
        if ok and args.threshold is not None:
            seg = segment_job(job, args.threshold, args.out, **_engine_kwargs(args))
            ok = _report([seg.step])
            summary["segmentation"] = dict(output=str(seg.path), threshold=seg.threshold,
                                           segments=seg.segments, complete=seg.step.ok)
    except SegtrainError:
        if new:  # a job this command started that cannot give a result (no fragments): leave nothing
            import shutil

            shutil.rmtree(job.folder, ignore_errors=True)
            if parent_times is not None and not job.folder.exists():  # the folder as it was, times included
                os.utime(parent, ns=(parent_times.st_atime_ns, parent_times.st_mtime_ns))
        raise
    except KeyboardInterrupt:  # Ctrl-C: daisy hands out no more blocks; the finished ones stay done
        from segtrain.scale.pipeline import blocks_done

        done, total = blocks_done(job, args.threshold, args.out)
        print(f"segtrain scale: stopped: {done} / {total} blocks done; run `segtrain scale run "
              f"{job.folder}` again to resume.", file=sys.stderr)
        raise
    print(json.dumps(summary, indent=2))
    return 0 if ok else 1
