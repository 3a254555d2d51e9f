"""The output rule of :mod:`segtrain.io.atomic` and :func:`segtrain.io.write_volume`, on real files:
same kind only, datasets added beside the others, no-replace final move, the old target restored
when the final move fails, two real processes racing to one target, a killed writer's leftovers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from segtrain.errors import InputError
from segtrain.io import Volume, read_volume, read_volumes, write_volume
from segtrain.io import atomic
from segtrain.io.atomic import atomic_path


def snapshot(*folders: Path) -> dict:
    """Every name under ``folders``, with size and modification time for files (a folder's own
    time changes when a temporary comes and goes beside what it holds)."""
    found = {}
    for folder in folders:
        for path in sorted([folder, *folder.rglob("*")]):
            stat = path.lstat()
            found[str(path)] = (stat.st_size, stat.st_mtime_ns) if path.is_file() else "folder"
    return found


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name)


def vol(value=1, shape=(4, 8, 8), name="seg", dtype=np.uint32) -> Volume:
    return Volume(data=np.full(shape, value, dtype), name=name, is_labels=True)


def test_a_folder_is_never_replaced_by_a_file_nor_a_file_by_another_format(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    text = tmp_path / "notes.json"
    text.write_text("not json at all")
    before = snapshot(tmp_path)
    for target, fmt in ((victim, "json"), (victim, None), (text, "json")):
        with pytest.raises(InputError, match="folder|not a JSON"), atomic_path(target, overwrite=True, fmt=fmt) as tmp:
            tmp.write_text("{}")
    with pytest.raises(InputError, match="holds other things"), atomic_path(victim, overwrite=True, folder=True) as tmp:
        tmp.mkdir()
    assert snapshot(tmp_path) == before
    json_file = tmp_path / "m.json"
    json_file.write_text("{}")
    with atomic_path(json_file, overwrite=True, fmt="json") as tmp:  # the same kind: replaced
        tmp.write_text('{"a": 1}')
    assert json_file.read_text() == '{"a": 1}' and leftovers(tmp_path) == []


def test_a_dataset_is_added_beside_the_others_in_hdf5_and_zarr_and_replaces_only_a_dataset(tmp_path):
    raw = Volume(data=np.arange(256, dtype=np.uint8).reshape(4, 8, 8), name="raw")
    for container in ("data.h5", "data.zarr"):
        write_volume(tmp_path / container / "raw", raw)
        write_volume(tmp_path / container / "seg", vol(1))
        with pytest.raises(InputError, match="already exists"):
            write_volume(tmp_path / container / "seg", vol(2))
        write_volume(tmp_path / container / "seg", vol(3), overwrite=True)
        for name, expected in (("raw", raw.data), ("seg", vol(3).data)):
            np.testing.assert_array_equal(np.asarray(read_volume(tmp_path / container, name).data), expected)
        before = snapshot(tmp_path)
        with pytest.raises(InputError, match="holds other things"):  # never the whole container
            write_volume(tmp_path / container, vol(4), overwrite=True)
        assert snapshot(tmp_path) == before
    with h5py.File(tmp_path / "data.h5", "r") as handle:
        assert sorted(handle) == ["raw", "seg"]  # no temporary dataset left inside
    assert sorted(os.listdir(tmp_path / "data.zarr")) == [".zattrs", ".zgroup", "raw", "seg"]
    write_volume(tmp_path / "data.zarr" / "group" / "a", vol(1))
    with pytest.raises(InputError, match="holds other things"):  # a group is not a dataset
        write_volume(tmp_path / "data.zarr" / "group", vol(1), overwrite=True)
    write_volume(tmp_path / "one.zarr", vol(1))  # a root array is one dataset: replaced by one
    write_volume(tmp_path / "one.zarr", vol(5), overwrite=True)
    assert int(np.asarray(read_volume(tmp_path / "one.zarr").data).max()) == 5


def test_an_output_that_is_an_input_is_refused_through_links_and_dots(tmp_path):
    from segtrain.io.write import check_not_input

    write_volume(tmp_path / "data.zarr" / "raw", vol(1, name="raw"))
    (tmp_path / "alias.zarr").symlink_to(tmp_path / "data.zarr")
    (tmp_path / "sub").mkdir()
    for output, source in ((tmp_path / "alias.zarr", tmp_path / "data.zarr" / "raw"),
                           (tmp_path / "sub" / ".." / "data.zarr" / "raw", (tmp_path / "alias.zarr", "raw"))):
        with pytest.raises(InputError, match="destroy what this command reads"):
            check_not_input(output, [source], overwrite=True)
    check_not_input(tmp_path / "data.zarr" / "seg", [tmp_path / "data.zarr" / "raw"], overwrite=True)  # beside


def _fail_final_move(monkeypatch):
    real = atomic.rename_noreplace

    def failing(source, target):
        if ".tmp-" in Path(source).name:
            raise OSError(5, "Input/output error (injected)", str(target))
        return real(source, target)

    monkeypatch.setattr(atomic, "rename_noreplace", failing)


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_the_old_target_is_put_back_when_the_final_move_fails(tmp_path, monkeypatch, kind):
    if kind == "file":
        target = tmp_path / "tree.json"
        target.write_text('{"old": true}')
    else:
        target = tmp_path / "seg.zarr"
        write_volume(target, vol(7))
    before = snapshot(tmp_path)
    _fail_final_move(monkeypatch)
    with pytest.raises(OSError, match="injected"):
        if kind == "file":
            with atomic_path(target, overwrite=True, fmt="json") as tmp:
                tmp.write_text('{"new": true}')
        else:
            write_volume(target, vol(9), overwrite=True)
    assert leftovers(tmp_path) == []
    assert snapshot(tmp_path) == before  # the old target, untouched, in its place
    if kind == "folder":
        assert int(np.asarray(read_volume(target).data).max()) == 7


def test_a_target_that_appears_while_writing_is_not_replaced(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(InputError, match="created by another writer"):
        with atomic_path(target, fmt="json") as tmp:
            tmp.write_text('{"mine": 1}')
            target.write_text('{"theirs": 1}')  # another writer, between the check and the move
    assert target.read_text() == '{"theirs": 1}' and leftovers(tmp_path) == []


@pytest.mark.parametrize("renameat2", ["libc", "missing"])
def test_rename_noreplace_is_one_step_for_files_and_folders(tmp_path, monkeypatch, renameat2):
    """With libc's renameat2 and without it (hard link for files, a lock file for folders)."""
    from segtrain.io.atomic import rename_noreplace

    if renameat2 == "missing":
        monkeypatch.setattr(atomic, "_RENAMEAT2", [None])

    for make in (lambda p: p.write_text("x"), lambda p: p.mkdir()):
        source, target = tmp_path / "a", tmp_path / "b"
        make(source)
        target.mkdir()  # an empty folder: os.rename would silently replace it
        with pytest.raises(FileExistsError):
            rename_noreplace(source, target)
        assert source.exists()
        target.rmdir()
        rename_noreplace(source, target)
        assert target.exists() and not source.exists()
        atomic._remove(target)


RACER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    import numpy as np
    import segtrain.io.zarr_io as zarr_io
    from segtrain.errors import InputError
    from segtrain.io import Volume, write_volume

    barrier, target, value = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    real = zarr_io.store_array

    def slow(data, array):  # both writers are mid-write before either moves its result into place
        (barrier / str(os.getpid())).touch()
        deadline = time.monotonic() + 60
        while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3 * value)
        real(data, array)

    zarr_io.store_array = slow
    try:
        write_volume(target, Volume(data=np.full((4, 8, 8), value, np.uint32), name="seg", is_labels=True))
    except InputError as error:
        print(error)
        sys.exit(2)
""")


def test_two_real_processes_racing_to_one_new_target(tmp_path):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    target = tmp_path / "out" / "seg.zarr"
    target.parent.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(barrier), str(target), str(v)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for v in (1, 2)]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in racers]
    assert len(list(barrier.iterdir())) == 2  # both were writing at the same time
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    code, message, _ = next(r for r in results if r[0] == 2)
    assert "created by another writer" in message and message.count("\n") == 1
    winner = 1 + [code for code, _, _ in results].index(0)
    assert int(np.asarray(read_volume(target).data).max()) == winner  # the first result, not replaced
    assert sorted(os.listdir(target.parent)) == ["seg.zarr"]


KILLED = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import numpy as np
    import segtrain.io.zarr_io as zarr_io
    from segtrain.io import Volume, write_volume

    signal_file, target = Path(sys.argv[1]), sys.argv[2]
    real = zarr_io.store_array

    def stuck(data, array):
        real(data, array)  # the chunks are on disk, under the temporary name
        signal_file.touch()
        time.sleep(600)

    zarr_io.store_array = stuck
    write_volume(target, Volume(data=np.full((4, 8, 8), 3, np.uint32), name="seg", is_labels=True), overwrite=True)
""")


def test_a_killed_writer_leaves_a_temporary_that_the_next_write_removes(tmp_path):
    target = tmp_path / "seg.zarr"
    write_volume(target, vol(1))
    mid = tmp_path / "mid-write"
    writer = subprocess.Popen([sys.executable, "-c", KILLED, str(mid), str(target)],
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not mid.exists() and time.monotonic() < deadline and writer.poll() is None:
        time.sleep(0.05)
    assert mid.exists(), "the writer never reached the middle of its write"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    left = leftovers(tmp_path)
    assert left and all(name.startswith(".seg.zarr.tmp-") for name in left)
    write_volume(tmp_path / "group.zarr" / "raw", vol(1, name="raw"))
    shutil.copytree(tmp_path / left[0], tmp_path / "group.zarr" / f".seg.tmp-{writer.pid}-abcd")  # one inside a group
    assert [v.dataset for v in read_volumes(tmp_path / "group.zarr")] == ["raw"]  # a reader never offers it
    assert int(np.asarray(read_volume(target).data).max()) == 1  # the old output, intact
    write_volume(target, vol(5), overwrite=True)
    assert [p for p in os.listdir(tmp_path) if ".tmp-" in p] == []
    assert int(np.asarray(read_volume(target).data).max()) == 5


def test_a_live_writers_temporary_and_other_targets_leftovers_are_kept(tmp_path):
    live = tmp_path / f".seg.zarr.tmp-{os.getppid()}-abcd"  # our parent: alive
    other = tmp_path / ".seg2.zarr.tmp-999999999-abcd"  # another target's
    live.mkdir()
    other.mkdir()
    write_volume(tmp_path / "seg.zarr", vol(1))
    assert live.exists() and other.exists()


def test_an_old_copy_left_by_a_killed_writer_is_moved_back_when_the_target_is_missing(tmp_path):
    """A writer killed between moving the old target aside and moving the new one in."""
    old = tmp_path / ".m.json.old-999999999-abcd"
    old.write_text('{"old": 1}')
    target = tmp_path / "m.json"
    with pytest.raises(InputError, match="already exists"), atomic_path(target, fmt="json") as tmp:
        tmp.write_text("{}")
    assert target.read_text() == '{"old": 1}' and leftovers(tmp_path) == []


def test_hdf5_dataset_leftovers_of_a_dead_writer_are_removed_inside_the_file(tmp_path):
    path = tmp_path / "data.h5"
    write_volume(path / "raw", vol(1, name="raw"))
    with h5py.File(path, "a") as handle:
        handle[".seg.tmp-999999999-abcd"] = np.zeros((4, 8, 8))
        handle[".other.tmp-999999999-abcd"] = np.zeros((4, 8, 8))
    assert [v.dataset for v in read_volumes(path)] == ["raw"]  # a reader never offers a temporary
    write_volume(path / "seg", vol(2))
    with h5py.File(path, "r") as handle:
        assert sorted(handle) == [".other.tmp-999999999-abcd", "raw", "seg"]


def test_a_runs_own_files_are_replaced_but_a_folder_in_their_place_is_an_error(tmp_path):
    from segtrain.runs import RunFolder

    folder = RunFolder.create(tmp_path / "runs", "own")
    folder.save_postprocess({"segment": {"threshold": 0.5}})
    folder.save_postprocess({"segment": {"threshold": 0.7}})  # its own file: replaced without asking
    assert folder.postprocess()["segment"]["threshold"] == 0.7
    folder.postprocess_path.unlink()
    folder.postprocess_path.mkdir()
    (folder.postprocess_path / "keep.txt").write_text("keep")
    with pytest.raises(InputError, match="is a folder"):
        folder.save_postprocess({"segment": {"threshold": 0.9}})
    assert (folder.postprocess_path / "keep.txt").read_text() == "keep"


def test_hdf5_a_file_another_process_is_writing_is_one_sentence_and_left_alone(tmp_path):
    path = tmp_path / "data.h5"
    write_volume(path / "raw", vol(1, name="raw"))
    holder = subprocess.Popen([sys.executable, "-c", "import h5py, sys, time; f = h5py.File(sys.argv[1], 'a'); "
                               "print('open', flush=True); time.sleep(30)", str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        before = snapshot(tmp_path)
        with pytest.raises(InputError, match="open for writing"):
            write_volume(path / "seg", vol(2))
        assert snapshot(tmp_path) == before
    finally:
        holder.kill()
        holder.wait()


def test_hdf5_the_old_dataset_is_put_back_when_the_final_move_fails(tmp_path, monkeypatch):
    path = tmp_path / "data.h5"
    write_volume(path / "raw", vol(1, name="raw"))
    write_volume(path / "seg", vol(2))
    real = h5py.Group.move

    def failing(self, source, dest):
        if ".tmp-" in source:
            raise OSError("injected")
        return real(self, source, dest)

    monkeypatch.setattr(h5py.Group, "move", failing)
    with pytest.raises(OSError, match="injected"):
        write_volume(path / "seg", vol(3), overwrite=True)
    with h5py.File(path, "r") as handle:
        assert sorted(handle) == ["raw", "seg"] and int(handle["seg"][...].max()) == 2
