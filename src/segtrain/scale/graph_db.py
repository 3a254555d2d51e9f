"""The global region graph in a database, through funlib.persistence's graph databases.

An SQLite file by default (``graph.sqlite`` in the job folder), PostgreSQL when the location is a
``postgresql://user:password@host:port/dbname`` URL. Nodes are fragments (``id``, ``position`` =
centre of mass in voxels z, y, x, ``size`` in voxels); edges ``u < v`` carry ``merge_score``
(see :mod:`segtrain.scale.graph`). Writes are idempotent (insert or ignore), so a retried block
writes the same rows again without harm.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np

from segtrain.errors import InputError
from segtrain.scale.graph import ScoredGraph

POSITION = "position"
NODE_ATTRS_SPEC = ("position", "size")
EDGE_SCORE = "merge_score"


def _attr_types():
    from funlib.persistence.types import Vec

    return {POSITION: Vec(float, 3), "size": int}, {EDGE_SCORE: float}


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

    def write_edges(self, u, v, scores) -> None:
        rows = list(zip(np.asarray(u).tolist(), np.asarray(v).tolist(),
                        np.asarray(scores, dtype=np.float32).tolist()))
        with self.con:
            self.con.executemany(f"INSERT OR IGNORE INTO edges (u, v, {EDGE_SCORE}) VALUES (?, ?, ?)",
                                 rows)

    def close(self) -> None:
        self.con.close()


class _FunlibWriter:
    """Adds rows through funlib.persistence (PostgreSQL)."""

    def __init__(self, location: str):
        self.db = open_graph_db(location)

    def write_nodes(self, ids, positions, sizes) -> None:
        write_nodes(self.db, ids, positions, sizes)

    def write_edges(self, u, v, scores) -> None:
        write_edges(self.db, u, v, scores)

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


def write_edges(db, u: np.ndarray, v: np.ndarray, scores: np.ndarray) -> None:
    """Add edges ``u < v`` with their merge scores."""
    import networkx as nx

    graph = nx.Graph()
    u_list = np.asarray(u).tolist()
    graph.add_nodes_from((i, {POSITION: (0.0, 0.0, 0.0)}) for i in set(u_list))
    graph.add_edges_from(
        (a, b, {EDGE_SCORE: float(s)})
        for a, b, s in zip(u_list, np.asarray(v).tolist(), np.asarray(scores, dtype=np.float32).tolist())
    )
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
        edges = db.read_edges(roi=funlib_roi, fetch_on_v=True) if funlib_roi is not None \
            else db.read_edges()
    finally:
        db.close()
    ids = np.fromiter((n["id"] for n in nodes), dtype=np.uint64, count=len(nodes))
    positions = np.array([n[POSITION] for n in nodes], dtype=np.float64).reshape(-1, 3)
    sizes = np.fromiter((n["size"] or 0 for n in nodes), dtype=np.int64, count=len(nodes))
    order = np.argsort(ids)
    u = np.fromiter((e["u"] for e in edges), dtype=np.uint64, count=len(edges))
    v = np.fromiter((e["v"] for e in edges), dtype=np.uint64, count=len(edges))
    s = np.fromiter((e[EDGE_SCORE] for e in edges), dtype=np.float32, count=len(edges))
    return ScoredGraph(ids[order], u, v, s, positions[order], sizes[order],
                       attrs={"location": str(location)})
