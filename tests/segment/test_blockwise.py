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
