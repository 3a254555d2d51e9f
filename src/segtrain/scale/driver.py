"""A blockwise job driven from a child process, so that it can be stopped between blocks from any
thread (the GUI's background worker):

    result = run_in_child(request, progress=..., stop=threading.Event())

The child (``python -m segtrain.scale.driver``, the request as JSON on stdin) creates or reopens
the job, runs its steps and writes the segmentation at the threshold, exactly as

    segtrain scale run JOB --affinities ... --threshold T --out OUT

does; it reports each step's progress and its result as JSON lines. Stopping sends the child
SIGINT, daisy's own stop (what Ctrl-C does to the driver in a terminal): the scheduler hands out
no more blocks and returns once the blocks in progress have finished in their workers and the
worker processes have ended (those last blocks are not recorded as done, so a resume redoes
them); then the child reports how many blocks are done and exits. Finished blocks stay done:
running the same request again resumes.

daisy can only be stopped from the main thread of the process that runs its scheduler (it checks
for SIGINT there), hence the child process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from segtrain.errors import SegtrainError
from segtrain.scale.job import JOB_FILE
from segtrain.scale.job import ScaleJob
from segtrain.scale.pipeline import blocks_done
from segtrain.scale.pipeline import create_job
from segtrain.scale.pipeline import input_error_of
from segtrain.scale.pipeline import run_job
from segtrain.scale.pipeline import segment_job

#: seconds between two looks at the stop event while the child runs
POLL_S = 0.1


def step_failure(result, logs: Path, again: str = "run it again") -> SegtrainError:
    """The one sentence for a step whose blocks failed (the finished ones are kept)."""
    error = f" (first error: {result.first_error})" if result.first_error else ""
    return SegtrainError(f"{result.task_id}: {result.failed} of {result.total} blocks failed{error}; "
                         f"{again} to retry them (worker logs in {logs}).")


def run_request(request: dict, progress=None) -> dict:
    """Create (or reopen) the job of ``request``, run its steps and write its segmentation.

    ``request``: ``job`` (folder), ``create`` (keyword arguments of
    :func:`~segtrain.scale.pipeline.create_job` besides the folder), ``workers``, ``threshold``,
    ``out`` and optionally ``again`` (how the user retries, for error messages). Returns what
    was written; a step with failed blocks raises a SegtrainError.
    """

    again = request.get("again", "run it again")
    job = create_job(request["job"], **request["create"])
    results = run_job(job, workers=int(request["workers"]), progress=progress)
    poisoned = input_error_of(job, results)  # NaN or infinity in the input: retrying cannot help
    if poisoned is not None:
        raise poisoned
    for result in results:
        if not result.ok:
            raise step_failure(result, job.logs, again)
    seg = segment_job(job, float(request["threshold"]), request["out"],
                      workers=int(request["workers"]), progress=progress)
    if not seg.step.ok:
        raise step_failure(seg.step, job.logs, again)
    return dict(path=str(seg.path), threshold=seg.threshold, segments=seg.segments,
                fragments=seg.fragments, blocks=job.grid.n_blocks)


def request_blocks_done(request: dict | None) -> tuple[int, int]:
    """``(done, total)`` blocks of the request's job (its block steps and its segmentation);
    ``(0, 0)`` before the job exists."""

    if request is None or not (Path(request["job"]) / JOB_FILE).exists():
        return 0, 0
    return blocks_done(ScaleJob.open(request["job"]), float(request["threshold"]), request["out"])


def main() -> int:
    """The child: the request on stdin, JSON lines on the original stdout (anything else that
    writes to stdout, such as waterz, goes to stderr)."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    lock = threading.Lock()

    def say(**message) -> None:
        with lock:
            out.write(json.dumps(message) + "\n")

    request = None
    try:
        request = json.loads(sys.stdin.read())
        result = run_request(request, progress=lambda s, d, t, f: say(progress=[s, d, t, f]))
        say(result=result)
        return 0
    except KeyboardInterrupt:  # daisy returns once the blocks in progress and their workers ended
        done, total = request_blocks_done(request)
        say(stopped=dict(done=done, total=total))
        return 130
    except SegtrainError as error:
        say(error=str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)
        return 2
    except Exception as error:  # noqa: BLE001 - reported in one sentence, the rest on stderr
        import traceback

        traceback.print_exc()
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
        say(error=f"The blockwise run failed: {type(error).__name__}" + (f": {text}" if text else ""))
        return 1


def run_in_child(request: dict, progress=None, stop: threading.Event | None = None) -> dict:
    """Run :func:`run_request` in a child process; ``progress(step, done, total, failed)`` is
    called in this thread. Setting ``stop`` stops the job at the next block boundary and returns
    ``{"stopped": True, "done": N, "total": M}`` once every worker process has ended; otherwise
    returns what :func:`run_request` returns, or raises its error as a SegtrainError."""
    import selectors

    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen([sys.executable, "-m", "segtrain.scale.driver"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors)
        proc.stdin.write(json.dumps(request).encode())
        proc.stdin.close()
        messages, pending, stopping = [], b"", False
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        try:
            while True:
                if stop is not None and stop.is_set() and not stopping:
                    stopping = True
                    proc.send_signal(signal.SIGINT)
                if not selector.select(timeout=POLL_S):
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    message = json.loads(line)
                    if "progress" in message:
                        if progress is not None:
                            progress(*message["progress"])
                    else:
                        messages.append(message)
        finally:
            selector.close()
            code = proc.wait()
            proc.stdout.close()
        final = messages[-1] if messages else {}
        if "result" in final:
            return final["result"]
        if "stopped" in final or stopping:
            done, total = (final["stopped"]["done"], final["stopped"]["total"]) if "stopped" in final \
                else request_blocks_done(request)
            return dict(stopped=True, done=done, total=total)
        if "error" in final:
            raise SegtrainError(final["error"])
        errors.seek(0)
        tail = errors.read().decode(errors="replace").strip().splitlines()
        raise SegtrainError(f"The blockwise run ended unexpectedly (exit code {code})"
                            + (f": {tail[-1]}" if tail else "") + ".")


if __name__ == "__main__":
    sys.exit(main())
