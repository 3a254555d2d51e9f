"""RunFolder.remove_stale_temporaries removes what killed writers left in checkpoints/, never the
temporary of a writer that is still saving (another process training into the same run)."""

from __future__ import annotations

import os
import subprocess
import sys

from segtrain.runs import RunFolder


def test_only_dead_writers_temporaries_are_removed(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.checkpoints_dir.mkdir(parents=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = folder.checkpoints_dir / f".step-4.ckpt.tmp-{gone.pid}-ab12"
    dead_plain = folder.checkpoints_dir / f".last.ckpt.tmp-{gone.pid}"  # RunFolder's own naming
    live = folder.checkpoints_dir / f".step-8.ckpt.tmp-{os.getppid()}-cd34"  # our parent: alive
    ours = folder.checkpoints_dir / f".final.ckpt.tmp-{os.getpid()}"
    checkpoint = folder.checkpoints_dir / "step-2.ckpt"
    for path in (dead, dead_plain, live, ours, checkpoint):
        path.write_bytes(b"x")
    assert folder.remove_stale_temporaries() == sorted([dead.name, dead_plain.name])
    assert not dead.exists() and not dead_plain.exists()
    assert live.exists() and ours.exists() and checkpoint.exists()
