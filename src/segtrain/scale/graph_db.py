"""The global region graph in a database, through funlib.persistence's graph databases.

An SQLite file by default (``graph.sqlite`` in the job folder), PostgreSQL when the location is a
``postgresql://user:password@host:port/dbname`` URL. Nodes are fragments (``id``, ``position`` =
centre of mass in voxels z, y, x, ``size`` in voxels). Edges ``u < v`` carry

- ``affinity_sum``, ``affinity_count``, ``histogram``: what waterz scores the edge with (see
  :mod:`segtrain.scale.edge_stats`; the histogram as text, empty unless the scoring needs it),
- ``block_score``: the score at which waterz joined the two fragments on the edge's owner block
  plus its context (see :mod:`segtrain.scale.graph`),
- ``merge_score``: the score at which they join when the whole graph is agglomerated (the global
  step, :mod:`segtrain.scale.agglomeration`); NULL until that step ran. This is what a
  segmentation at a threshold cuts.
- ``stitched``: 1 when ``u`` and ``v`` are pieces of one watershed basin cut by a block face
  (:mod:`segtrain.scale.stitch`); the global step treats them as one fragment, and their
  ``merge_score`` is below every threshold.

Writes are idempotent (insert or ignore), so a retried block writes the same rows again without
harm.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np

from segtrain.errors import InputError
from segtrain.scale.graph import ScoredGraph
from segtrain.scale.edge_stats import EdgeStatistics

POSITION = "position"
NODE_ATTRS_SPEC = ("position", "size")
EDGE_SCORE = "merge_score"
#: Edge columns after u, v, in the order the writers fill them.
EDGE_COLUMNS = (EDGE_SCORE, "block_score", "affinity_sum", "affinity_count", "histogram",
                "stitched")


def _attr_types():
    from funlib.persistence.types import Vec

    return ({POSITION: Vec(float, 3), "size": int},
            {EDGE_SCORE: float, "block_score": float, "affinity_sum": float, "affinity_count": int,
             "histogram": str, "stitched": int})


def edge_rows(u, v, scores=None, block_scores=None, stats=None, stitched=None) -> list[tuple]:
    """Rows ``(u, v, *EDGE_COLUMNS)``; what is not given is NULL (``scores``, ``block_scores``),
    no statistics (``stats``: an :class:`~segtrain.scale.edge_stats.EdgeStatistics` over the
    same edges in the same order) or not stitched (``stitched``: booleans)."""
    n = len(u)
    none = [None] * n
    columns = [np.asarray(u).tolist(), np.asarray(v).tolist()]
    for values in (scores, block_scores):
        columns.append(none if values is None else np.asarray(values, dtype=np.float32).tolist())
    if stats is None:
        columns += [none, none, none]
    else:
        if len(stats) != n or not (np.array_equal(stats.u, u) and np.array_equal(stats.v, v)):
            raise ValueError("edge statistics must be over the edges written")
        columns += [stats.affinity_sum.tolist(), stats.count.tolist(), stats.histogram_texts()]
    columns.append([0] * n if stitched is None else np.asarray(stitched, dtype=np.int64).tolist())
    return list(zip(*columns))


def is_url(location: str) -> bool:
    return str(location).startswith(("postgresql://", "postgres://"))


def open_graph_db(location: str | Path, mode: str = "r+"):
    """A funlib graph database at ``location`` (SQLite file or PostgreSQL URL).

    ``mode``: ``"w"`` creates it (dropping what was there), ``"r+"`` opens it to add rows,
    ``"r"`` read only.
    """
    node_attrs, edge_attrs = _attr_types()
    kwargs = dict(position_attribute=POSITION, mode=mode, directed=False,
                  node_attrs=node_attrs if mode == "w" else None,
                  edge_attrs=edge_attrs if mode == "w" else None)
    location = str(location)
    if is_url(location):
        from funlib.persistence.graphs.pgsql_graph_database import PgSQLGraphDatabase

        url = urlparse(location)
        name = url.path.lstrip("/")
        if not name:
            raise InputError(f"The database URL {location} names no database; end it with /NAME.")
        try:
            return PgSQLGraphDatabase(
                db_name=name, db_host=url.hostname or "localhost",
                db_user=unquote(url.username) if url.username else None,
                db_password=unquote(url.password) if url.password else None,
                db_port=url.port, **kwargs)
        except Exception as error:  # psycopg2.OperationalError and friends
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise InputError(f"Cannot open the PostgreSQL graph database {location} ({first}).") from None
    from funlib.persistence.graphs.sqlite_graph_database import SQLiteGraphDataBase

    path = Path(location)
    if mode != "w" and not path.exists():
        raise InputError(f"No graph database at {path}; run the fragments step first.")
    try:
        db = SQLiteGraphDataBase(path, **kwargs)
    except RuntimeError as error:  # funlib: metadata missing
        raise InputError(f"{path} is not a segtrain graph database ({error}).") from None
    # several worker processes write to one file: wait for the lock instead of failing
    db.cur.execute("PRAGMA busy_timeout = 120000")
    if mode == "w":
        db.cur.execute("PRAGMA journal_mode=WAL")
        db.con.commit()
    return db


class _SQLiteWriter:
    """Adds rows to a graph database funlib created, with the standard library's sqlite3.

    What each worker uses for SQLite: funlib.persistence itself would add about 70 MB and a
    second of imports (xarray, pandas, dask) to every worker process. Columns follow funlib's
    layout for SQLite (a vector attribute ``position`` is stored as ``position_0..2``).
    """

    def __init__(self, path: Path):
        import sqlite3

        if not Path(path).exists():
            raise InputError(f"No graph database at {path}; run the fragments step first.")
        self.con = sqlite3.connect(str(path), timeout=120)

    def write_nodes(self, ids, positions, sizes) -> None:
        rows = [(int(i), float(p[0]), float(p[1]), float(p[2]), int(s))
                for i, p, s in zip(np.asarray(ids).tolist(), np.asarray(positions).tolist(),
                                   np.asarray(sizes).tolist())]
        with self.con:
            self.con.executemany("INSERT OR IGNORE INTO nodes (id, position_0, position_1, position_2, "
                                 "size) VALUES (?, ?, ?, ?, ?)", rows)

    def write_edges(self, u, v, scores=None, block_scores=None, stats=None, stitched=None) -> None:
        rows = edge_rows(u, v, scores, block_scores, stats, stitched)
        marks = ", ".join("?" * (2 + len(EDGE_COLUMNS)))
        with self.con:
            self.con.executemany(f"INSERT OR IGNORE INTO edges (u, v, {', '.join(EDGE_COLUMNS)}) "
                                 f"VALUES ({marks})", rows)

    def close(self) -> None:
        self.con.close()


class _FunlibWriter:
    """Adds rows through funlib.persistence (PostgreSQL)."""

    def __init__(self, location: str):
        self.db = open_graph_db(location)

    def write_nodes(self, ids, positions, sizes) -> None:
        write_nodes(self.db, ids, positions, sizes)

    def write_edges(self, u, v, scores=None, block_scores=None, stats=None, stitched=None) -> None:
        write_edges(self.db, u, v, scores, block_scores, stats, stitched)

    def close(self) -> None:
        self.db.close()


def open_graph_writer(location: str | Path):
    """What a worker writes its block's nodes and edges with (``write_nodes``, ``write_edges``,
    ``close``); inserts are idempotent."""
    return _FunlibWriter(str(location)) if is_url(str(location)) else _SQLiteWriter(Path(location))


def write_nodes(db, ids: np.ndarray, positions: np.ndarray, sizes: np.ndarray) -> None:
    """Add fragments (ids, centres of mass (n, 3) in voxels, sizes)."""
    import networkx as nx

    graph = nx.Graph()
    graph.add_nodes_from(
        (int(i), {POSITION: tuple(float(c) for c in p), "size": int(s)})
        for i, p, s in zip(np.asarray(ids).tolist(), np.asarray(positions), np.asarray(sizes).tolist())
    )
    if graph.number_of_nodes():
        db.write_nodes(graph.nodes)


def write_edges(db, u: np.ndarray, v: np.ndarray, scores=None, block_scores=None,
                stats=None, stitched=None) -> None:
    """Add edges ``u < v`` with their merge scores, block scores, statistics and stitched flags
    (see :func:`edge_rows`)."""
    import networkx as nx

    graph = nx.Graph()
    graph.add_nodes_from((i, {POSITION: (0.0, 0.0, 0.0)}) for i in set(np.asarray(u).tolist()))
    graph.add_edges_from((row[0], row[1], dict(zip(EDGE_COLUMNS, row[2:])))
                         for row in edge_rows(u, v, scores, block_scores, stats, stitched))
    if graph.number_of_edges():
        # the positions only serve funlib's ROI filter, which is off (roi=None)
        db.write_edges(graph.nodes, graph.edges)


def read_graph(location: str | Path, roi: tuple[Sequence[int], Sequence[int]] | None = None) -> ScoredGraph:
    """The graph (or the part whose fragments' centres lie in ``roi = (begin, end)`` in voxels,
    with every edge that touches one of them) as a :class:`ScoredGraph`."""
    db = open_graph_db(location, mode="r")
    try:
        funlib_roi = None
        if roi is not None:
            from funlib.geometry import Roi

            begin, end = (tuple(int(v) for v in r) for r in roi)
            funlib_roi = Roi(begin, tuple(e - b for b, e in zip(begin, end)))
        nodes = db.read_nodes(funlib_roi)
        edges = db.read_edges(roi=funlib_roi, fetch_on_v=True, read_attrs=[EDGE_SCORE]) \
            if funlib_roi is not None else db.read_edges(read_attrs=[EDGE_SCORE])
    finally:
        db.close()
    ids = np.fromiter((n["id"] for n in nodes), dtype=np.uint64, count=len(nodes))
    positions = np.array([n[POSITION] for n in nodes], dtype=np.float64).reshape(-1, 3)
    sizes = np.fromiter((n["size"] or 0 for n in nodes), dtype=np.int64, count=len(nodes))
    order = np.argsort(ids)
    u = np.fromiter((e["u"] for e in edges), dtype=np.uint64, count=len(edges))
    v = np.fromiter((e["v"] for e in edges), dtype=np.uint64, count=len(edges))
    if any(e[EDGE_SCORE] is None for e in edges):
        raise InputError(f"The graph {location} has edges without a merge score; run the global "
                         "step first (`segtrain scale run JOB`).")
    s = np.fromiter((e[EDGE_SCORE] for e in edges), dtype=np.float32, count=len(edges))
    return ScoredGraph(ids[order], u, v, s, positions[order], sizes[order],
                       attrs={"location": str(location)})


# --- the global step: all edges with their statistics out, merge scores in --------------------


def _cursor(location: str):
    """``(connection, cursor, placeholder)`` straight to the database, bypassing funlib (which
    reads rows as dicts and updates them one statement each)."""
    if is_url(location):
        db = open_graph_db(location)
        return db.connection, db.cur, "%s"
    import sqlite3

    path = Path(location)
    if not path.exists():
        raise InputError(f"No graph database at {path}; run the fragments step first.")
    con = sqlite3.connect(str(path), timeout=120)
    return con, con.cursor(), "?"


def _fetch_all(location: str | Path, query: str) -> list[tuple]:
    """The rows of one query on the graph database (connection closed afterwards)."""
    con, cur, _ = _cursor(str(location))
    try:
        cur.execute(query)
        return cur.fetchall()
    finally:
        con.close()


def read_edge_statistics(location: str | Path):
    """Every edge with its statistics, sorted by ``(u, v)``, as
    :class:`~segtrain.scale.edge_stats.EdgeStatistics`."""

    rows = _fetch_all(location, "SELECT u, v, affinity_sum, affinity_count, histogram FROM edges ORDER BY u, v")
    if any(r[3] is None for r in rows):
        raise InputError(f"The graph {location} has edges without statistics (made by an older "
                         "segtrain?); run the job again in a new folder.")
    u, v, sums, counts, texts = (list(c) for c in zip(*rows)) if rows else ([], [], [], [], [])
    return EdgeStatistics.from_texts(np.asarray(u, np.uint64), np.asarray(v, np.uint64), sums,
                                     counts, texts)


def read_stitched_pairs(location: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(u, v)`` of the edges between pieces of one basin cut by a block face."""
    rows = _fetch_all(location, "SELECT u, v FROM edges WHERE stitched = 1 ORDER BY u, v")
    u, v = (list(c) for c in zip(*rows)) if rows else ([], [])
    return np.asarray(u, np.uint64), np.asarray(v, np.uint64)


def write_merge_scores(location: str | Path, u, v, scores) -> None:
    """Set the merge score of edges ``(u, v)`` (all in one transaction)."""
    rows = list(zip(np.asarray(scores, dtype=np.float32).tolist(), np.asarray(u).tolist(),
                    np.asarray(v).tolist()))
    con, cur, mark = _cursor(str(location))
    try:
        if mark == "?":
            cur.executemany(f"UPDATE edges SET {EDGE_SCORE} = ? WHERE u = ? AND v = ?", rows)
        else:  # PostgreSQL: many rows per statement
            from psycopg2.extras import execute_values

            execute_values(cur, f"UPDATE edges SET {EDGE_SCORE} = data.s FROM (VALUES %s) AS "
                                "data(s, u, v) WHERE edges.u = data.u AND edges.v = data.v",
                           rows, page_size=10000)
        con.commit()
    finally:
        con.close()


def count_unscored_edges(location: str | Path) -> int:
    """How many edges have no merge score yet (the global step has not seen them)."""
    return int(_fetch_all(location, f"SELECT COUNT(*) FROM edges WHERE {EDGE_SCORE} IS NULL")[0][0])


def count_nodes(location: str | Path) -> int:
    """How many fragments the graph holds."""
    return int(_fetch_all(location, "SELECT COUNT(*) FROM nodes")[0][0])
