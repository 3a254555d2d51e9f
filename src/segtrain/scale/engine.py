"""Running a job's steps on daisy: one daisy task per step, composed into a daisy pipeline.

daisy hands out blocks to worker processes (``workers`` local subprocesses, or processes that a
``launcher`` such as ``srun`` starts on other machines and that connect back to this one), keeps
block dependencies between steps (a block's agglomeration waits for the fragments of every block
its context touches), records finished blocks in ``JOB/tracking`` so a re-run skips them, retries
a block whose worker failed or died (``retries`` times), and reports failed blocks, which are
never recorded as done.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from segtrain.errors import InputError, SegtrainError
from segtrain.scale.blocks import block_function
from segtrain.scale.job import ScaleJob, input_error_file

#: ``progress(task_id, done, total, failed)``; done counts blocks skipped as already finished.
Progress = Callable[[str, int, int, int], None]

DEFAULT_TIMEOUT_S = 3600.0


@dataclass
class StepResult:
    """How a step's blocks ended; ``failed_blocks`` are write regions ``(begin, end)`` in voxels."""

    task_id: str
    total: int
    completed: int
    skipped: int
    failed: int
    orphaned: int
    worker_restarts: int
    failed_blocks: list[tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    first_error: str | None = None
    #: the blocks stopped at an input holding NaN or infinity (:func:`~segtrain.scale.blocks.stop_at_bad_input`):
    #: its sentence (also ``first_error``), which no retry can change
    input_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.completed == self.total and self.failed == 0

    def to_dict(self) -> dict:
        return dict(task=self.task_id, total=self.total, completed=self.completed,
                    skipped=self.skipped, failed=self.failed, orphaned=self.orphaned,
                    worker_restarts=self.worker_restarts,
                    failed_blocks=[[list(b), list(e)] for b, e in self.failed_blocks])


def _launch_worker(launcher: list[str], job_dir: str, task_id: str, output, *, context=None) -> None:
    """A daisy worker function: start ``launcher python -m segtrain.scale.worker`` and wait.

    The worker connects back to the daisy server with the context daisy gave this function.
    """
    import json

    env = dict(os.environ)
    if context is not None:
        env["DAISY_CONTEXT"] = context.to_env()
    command = [*launcher, sys.executable, "-m", "segtrain.scale.worker", job_dir, task_id]
    if output is not None:
        command.append(json.dumps(output.to_dict()))
    code = subprocess.call(command, env=env)
    if code != 0:
        raise RuntimeError(f"worker command {shlex.join(command[:len(launcher) + 3])} exited with {code}")


def make_task(job: ScaleJob, task_id: str, workers: int = 1, retries: int = 2,
              timeout: float | None = DEFAULT_TIMEOUT_S, launcher: str | None = None,
              output=None):
    """The daisy task of one step (``predict``, ``fragments``, ``agglomerate`` or
    ``relabel-<key>`` with its ``output`` spec)."""
    import daisy
    from funlib.geometry import Roi

    s = job.settings
    if task_id == "predict":
        context = s.predict_context
    elif task_id == "fragments":
        context = s.context
    elif task_id == "agglomerate":  # at least the voxel beyond each face (the edges across it)
        context = tuple(max(1, c) for c in s.context)
    else:
        context = (0, 0, 0)
    if int(workers) < 1:
        raise InputError(f"--workers must be at least 1, not {workers}.")
    if int(retries) < 0:
        raise InputError(f"--retries must not be negative, not {retries}.")
    total = Roi((0, 0, 0), s.shape).grow(context, context)
    write = Roi(context, s.block_shape)
    read = write.grow(context, context)
    if launcher:
        import functools

        fn = functools.partial(_launch_worker, shlex.split(launcher), str(job.folder), task_id, output)
    else:
        fn = block_function(str(job.folder), task_id, output)
    return daisy.Task(
        task_id, total_roi=total, read_roi=read, write_roi=write, process_function=fn,
        read_write_conflict=False, fit="shrink", max_workers=int(workers),
        max_retries=int(retries), timeout=timeout, tracking_path=str(job.tracking / task_id),
        max_worker_restarts=max(3, 3 * int(workers)) + int(retries) * int(workers),
    )


class _Observer:
    """daisy progress observer: a tqdm bar per task on stderr and/or a ``progress`` callback."""

    def __init__(self, progress: Progress | None, bars: bool):
        self.progress = progress
        self.bars = {} if bars else None

    def _emit(self, states, close=False):
        for task_id, state in states.items():
            done = int(state.completed_count)
            total = int(state.total_block_count)
            failed = int(state.failed_count)
            if self.progress is not None:
                self.progress(task_id, done, total, failed)
            if self.bars is not None:
                from tqdm import tqdm

                bar = self.bars.get(task_id)
                if bar is None:
                    bar = self.bars[task_id] = tqdm(total=total, desc=task_id, unit="block",
                                                    file=sys.stderr, dynamic_ncols=True)
                if done > bar.n:
                    bar.update(done - bar.n)
                bar.set_postfix(failed=failed, refresh=False)
                if close:
                    bar.close()

    def on_start(self, states):
        self._emit(states)

    def on_progress(self, states):
        self._emit(states)

    def on_finish(self, states):
        self._emit(states, close=True)


def run_tasks(job: ScaleJob, tasks: Sequence, progress: Progress | None = None, bars: bool = False,
              host: str | None = None, serial: bool = False) -> list[StepResult]:
    """Run daisy tasks as one pipeline (in order, block dependencies between consecutive ones).

    ``serial`` runs every block in this process, one after the other (for debugging).
    """
    import daisy
    from daisy import logging as daisy_logging

    if not tasks:
        return []
    job.logs.mkdir(exist_ok=True)
    job.tracking.mkdir(exist_ok=True)
    marker = input_error_file(job.folder)
    marker.unlink(missing_ok=True)  # a run after the input was mended tries its blocks again
    daisy_logging.set_log_basedir(str(job.logs))
    logging.getLogger("daisy").setLevel(logging.ERROR)  # failures are reported below
    pipeline = tasks[0]
    for task in tasks[1:]:
        pipeline = pipeline + task
    observer = _Observer(progress, bars)
    try:
        states = daisy.run_blockwise(pipeline, multiprocessing=not serial, progress=observer,
                                     return_states=True, host=host, summary=False)
    except RuntimeError as error:  # daisy abandons a task whose workers keep dying
        states = getattr(error, "daisy_states", None)
        first = str(error).strip().splitlines()[0] if str(error).strip() else "worker failures"
        if states is None:
            raise SegtrainError(f"The blockwise run stopped: {first}; see the worker logs in "
                                f"{job.logs}.") from None
        observer.on_finish(states)
    input_error = marker.read_text().strip() if marker.exists() else None
    results = []
    by_id = {t.task_id: t for t in tasks}
    for task_id, state in states.items():
        task = by_id.get(task_id)
        failed_blocks = []
        if task is not None and int(state.failed_count):
            failed_blocks = sorted((tuple(b.write_roi.begin), tuple(b.write_roi.end))
                                   for b in task.failed_blocks())
        error = getattr(state, "first_worker_error", None)
        stopped = input_error if int(state.failed_count) else None
        results.append(StepResult(
            task_id, int(state.total_block_count), int(state.completed_count),
            int(state.skipped_count), int(state.failed_count), int(state.orphaned_count),
            int(state.worker_restart_count), failed_blocks,
            stopped or (error.strip().splitlines()[-1] if error else None), stopped,
        ))
    order = [t.task_id for t in tasks]
    results.sort(key=lambda r: order.index(r.task_id) if r.task_id in order else len(order))
    return results
