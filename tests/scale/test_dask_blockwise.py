import numpy as np
import pytest

from segtrain.errors import InputError
from segtrain.scale import relabel_blockwise
from segtrain.segment import MergeTree
from segtrain.targets import affinities


def tree_and_affs(seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.repeat(rng.integers(1, 6, (10, 9, 9)), 5, 1), 5, 2)
    affs, _ = affinities(labels)
    affs = np.clip(affs + rng.normal(0, 0.3, affs.shape).astype(np.float32), 0, 1)
    return MergeTree.build(affs, None, scoring="hist_quant_50"), affs


def test_blockwise_equals_in_memory(tmp_path):
    import dask.array as da
    import zarr

    tree, _ = tree_and_affs()
    t = float(np.median(tree.running_max))
    expected = tree.segmentation(t)
    # numpy in, numpy out
    np.testing.assert_array_equal(relabel_blockwise(tree.fragments, tree, t, chunks=(4, 16, 16)), expected)
    # dask in, zarr out, atomically
    calls = []
    out = relabel_blockwise(
        da.from_array(tree.fragments, chunks=(3, 20, 20)), tree, t, tmp_path / "seg.zarr",
        chunks=(4, 16, 16), voxel_size=(40, 4, 4), progress=lambda d, n: calls.append((d, n)),
    )
    arr = zarr.open_array(str(out), mode="r")
    np.testing.assert_array_equal(arr[:], expected)
    assert arr.attrs["threshold"] == t and list(arr.attrs["resolution"]) == [40, 4, 4]
    assert calls and calls[-1][0] == calls[-1][1]
    with pytest.raises(InputError):
        relabel_blockwise(tree.fragments, tree, t, tmp_path / "seg.zarr")  # exists
    # a (fragment_ids, segment_ids) lookup works the same
    lookup = tree.lookup(t)
    np.testing.assert_array_equal(relabel_blockwise(tree.fragments, lookup), expected)
    with pytest.raises(InputError):
        relabel_blockwise(tree.fragments, tree, 1.5)


def test_blockwise_fragments_graph_and_agglomeration(tmp_path):
    import zarr

    from segtrain.evaluate import voi
    from segtrain.scale import (
        agglomerate_graph,
        fragments_blockwise,
        region_graph,
        region_graph_blockwise,
    )

    rng = np.random.default_rng(1)
    cells = np.arange(1, 49, dtype=np.uint64).reshape(3, 4, 4)
    labels = np.repeat(np.repeat(np.repeat(cells, 6, 0), 10, 1), 10, 2)
    affs, _ = affinities(labels)
    affs = np.clip(affs + rng.normal(0, 0.1, affs.shape).astype(np.float32), 0, 1)
    frags = fragments_blockwise(affs, (9, 16, 16), min_seed_distance=2).compute()
    assert frags.dtype == np.uint64 and frags.shape == labels.shape
    # ids are unique per block: no id appears in two blocks
    seen = {}
    for idx in np.ndindex(2, 3, 3):
        block = frags[idx[0] * 9:(idx[0] + 1) * 9, idx[1] * 16:(idx[1] + 1) * 16,
                      idx[2] * 16:(idx[2] + 1) * 16]
        for i in np.unique(block[block != 0]).tolist():
            assert seen.setdefault(i, idx) == idx
    # the blockwise region graph equals the in-memory one
    g_mem = region_graph(affs, frags)
    g_blk = region_graph_blockwise(affs, frags, block_shape=(5, 13, 11))
    np.testing.assert_array_equal(g_mem.u, g_blk.u)
    np.testing.assert_array_equal(g_mem.v, g_blk.v)
    np.testing.assert_array_equal(g_mem.count, g_blk.count)
    np.testing.assert_allclose(g_mem.affinity_sum, g_blk.affinity_sum, rtol=1e-12)
    # cut the global graph, relabel blockwise, write, and recover the objects
    lookup = agglomerate_graph(g_blk, 0.5, fragment_ids=np.unique(frags))
    out = relabel_blockwise(zarr.array(frags, chunks=(6, 20, 20)), lookup, None,
                            tmp_path / "seg.zarr")
    seg = zarr.open_array(str(out), mode="r")[:]
    ids, segs = lookup
    lut = dict(zip(ids.tolist(), segs.tolist()))
    expected = np.vectorize(lambda i: lut.get(int(i), int(i)), otypes=[np.uint64])(frags)
    np.testing.assert_array_equal(seg, expected)
    assert voi(seg, labels)["voi"] < 0.1
