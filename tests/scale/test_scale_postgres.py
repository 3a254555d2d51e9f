"""The region graph in PostgreSQL: a real server started for the test (skipped when the machine has
no PostgreSQL server binaries), the same round-trip as SQLite, and a two-worker job whose worker
processes write their rows there."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import zarr

from segtrain.scale import (
    ScoredGraph,
    create_job,
    open_graph_db,
    read_graph,
    run_job,
    segment_job,
)
from segtrain.scale.agglomeration import global_merge_scores
from segtrain.scale.edge_stats import edge_statistics
from segtrain.scale.graph_db import (
    count_unscored_edges,
    open_graph_writer,
    read_edge_statistics,
    write_merge_scores,
)
from segtrain.targets import affinities


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / name).exists():
            return str(folder / name)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """``postgresql://segtrain@127.0.0.1:PORT/`` of a server that lives for this module."""
    pytest.importorskip("psycopg2")
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    run_as: list[str] = []
    # not under pytest's tmp folder: the server user must be able to enter it
    root = Path(tempfile.mkdtemp(prefix="segtrain-pg-"))
    if os.geteuid() == 0:  # initdb refuses root: run the server as the 'postgres' user
        runuser = shutil.which("runuser")
        try:
            import pwd

            uid = pwd.getpwnam("postgres").pw_uid
        except KeyError:
            uid = None
        if runuser is None or uid is None:
            pytest.skip("running as root without a 'postgres' user to start the server as")
        os.chown(root, uid, -1)
        run_as = [runuser, "-u", "postgres", "--"]
    data, port = root / "data", _free_port()
    try:
        subprocess.run([*run_as, initdb, "-D", str(data), "-A", "trust", "-U", "segtrain"],
                       check=True, capture_output=True)
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-o",
                        f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"],
                       check=True, capture_output=True)
    except subprocess.CalledProcessError as error:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {error.stderr.decode()[-500:]}")
    try:
        yield f"postgresql://segtrain@127.0.0.1:{port}/"
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_graph_round_trips_through_postgresql(postgres_url):
    rng = np.random.default_rng(3)
    n = 200
    ids = np.arange(1, n + 1, dtype=np.uint64) * np.uint64(1000) + np.uint64(2**40)  # sparse, large
    positions = rng.random((n, 3)) * [50, 100, 100]
    sizes = rng.integers(1, 1000, n)
    keep = np.unique(np.stack([ids[rng.integers(0, n // 2, 400)], ids[rng.integers(n // 2, n, 400)]], 1),
                     axis=0)
    u, v = keep[:, 0], keep[:, 1]
    scores = rng.random(len(u)).astype(np.float32)
    url = postgres_url + "roundtrip"
    open_graph_db(url, mode="w").close()
    writer = open_graph_writer(url)  # what a worker uses
    writer.write_nodes(ids, positions, sizes)
    writer.write_edges(u, v, scores)
    writer.write_edges(u, v, scores)  # a retried block writes again: no duplicates, no error
    writer.close()
    graph = read_graph(url)
    np.testing.assert_array_equal(graph.ids, ids)
    np.testing.assert_allclose(graph.positions, positions, rtol=1e-6)  # PostgreSQL keeps float4
    np.testing.assert_array_equal(graph.sizes, sizes)
    order = np.lexsort((graph.v, graph.u))
    np.testing.assert_array_equal(graph.u[order], u)
    np.testing.assert_array_equal(graph.v[order], v)
    np.testing.assert_allclose(graph.scores[order], scores, rtol=1e-6)  # float4 or float8 column
    for got, want in zip(graph.lookup(0.3), ScoredGraph(ids, u, v, scores).lookup(0.3)):
        np.testing.assert_array_equal(got, want)
    crop = read_graph(url, roi=((0, 0, 0), (25, 100, 100)))
    np.testing.assert_array_equal(crop.ids, ids[positions[:, 0] < 25])


def test_edge_statistics_and_global_scores_round_trip_through_postgresql(postgres_url):
    rng = np.random.default_rng(4)
    labels = np.repeat(np.repeat(rng.permutation(100).reshape(4, 5, 5) + 1, 4, 1), 4, 2)
    affs, _ = affinities(labels.astype(np.uint64))
    affs = np.clip(affs + rng.normal(0, 0.2, affs.shape), 0, 1).astype(np.float32)
    frags = labels.astype(np.uint64) + np.uint64(2**40)  # large ids, as blocks far into a volume have
    stats = edge_statistics(affs, frags, histograms=True)
    url = postgres_url + "stats"
    open_graph_db(url, mode="w").close()
    writer = open_graph_writer(url)
    writer.write_edges(stats.u, stats.v, block_scores=np.full(len(stats), 0.5, np.float32), stats=stats)
    writer.close()
    assert count_unscored_edges(url) == len(stats) > 10
    back = read_edge_statistics(url)
    np.testing.assert_array_equal(back.u, stats.u)
    np.testing.assert_array_equal(back.count, stats.count)
    np.testing.assert_allclose(back.affinity_sum, stats.affinity_sum, rtol=1e-6)  # float4 column
    np.testing.assert_array_equal(back.hist_bins, stats.hist_bins)
    np.testing.assert_array_equal(back.hist_counts, stats.hist_counts)
    scores = global_merge_scores(back, "hist_quant_50")
    write_merge_scores(url, back.u, back.v, scores)
    assert count_unscored_edges(url) == 0
    graph = read_graph(url)
    order = np.lexsort((graph.v, graph.u))
    np.testing.assert_array_equal(graph.scores[order], scores)


def test_two_worker_job_with_its_graph_in_postgresql_matches_sqlite(postgres_url, tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.repeat(rng.integers(1, 8, (4, 6, 6)), 6, 1), 6, 2).repeat(4, 0)  # 16, 36, 36
    affs, _ = affinities(labels.astype(np.uint64))
    affs = np.clip(affs + rng.normal(0, 0.2, affs.shape), 0, 1).astype(np.float32)
    path = tmp_path / "affs.zarr"
    zarr.create_array(store=str(path), shape=affs.shape, chunks=(3, 8, 18, 18), dtype="float32",
                      zarr_format=2)[:] = affs
    segment = dict(fragments="watershed", boundary_threshold=0.5, min_seed_distance=2, min_size=0,
                   per_slice=False, scoring="hist_quant_50")
    results = {}
    for name, db in (("pg", postgres_url + "job"), ("sqlite", None)):
        job = create_job(tmp_path / name, affinities=str(path), block_shape=(8, 18, 18),
                         context=(4, 9, 9), segment=segment, db=db)
        steps = run_job(job, workers=2)
        assert all(r.ok for r in steps) and [r.total for r in steps] == [8, 8, 1]
        seg = segment_job(job, 0.5, workers=2)
        results[name] = (read_graph(job.db), zarr.open_array(str(seg.path), mode="r")[:])
    (pg_graph, pg_seg), (sq_graph, sq_seg) = results["pg"], results["sqlite"]
    np.testing.assert_array_equal(pg_graph.ids, sq_graph.ids)
    assert pg_graph.n_edges == sq_graph.n_edges > 0
    np.testing.assert_array_equal(pg_seg, sq_seg)
