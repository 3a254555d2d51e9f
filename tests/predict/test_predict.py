"""Tiled prediction equals whole-array prediction away from tile borders; clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from segtrain.config import config_from_dict
from segtrain.errors import InputError, SegtrainError
from segtrain.models import build_model
from segtrain.predict import LoadedModel, load_model, make_tiles, predict_array, predict_to_zarr
from segtrain.predict.tiling import axis_tiles


def tiny_model(task="affinities", **model) -> LoadedModel:
    torch.manual_seed(0)
    config = config_from_dict({"preset": "em3d_quick", "data": {"patch_shape": [8, 16, 16]},
                               "model": {"task": task, "num_fmaps": 3, "fmap_inc_factor": 2, "lsd_sigma": 2.0,
                                         **model}})
    return LoadedModel(build_model(config).eval(), config, Path("<test>"), 0)


def test_tiles_cover_the_array_once_with_aligned_starts():
    for size, tile, margin, div in [(96, 64, 8, 4), (1022, 512, 32, 32), (50, 64, 8, 4), (300, 100, 10, 2)]:
        covered = np.zeros(size, int)
        for lo, hi, a, b in axis_tiles(size, tile, margin, div):
            covered[a:b] += 1
            assert hi - lo <= max(tile, size if size <= tile else 0) and lo <= a < b <= hi
            assert lo % div == 0
        assert (covered == 1).all()


def test_tiled_equals_whole_array_away_from_tile_borders():
    loaded = tiny_model()
    array = np.random.default_rng(0).integers(0, 255, (16, 96, 96), dtype=np.uint8)
    whole = predict_array(loaded, array, tile_shape=[16, 96, 96], margin=[0, 0, 0])
    calls = []
    tiled = predict_array(loaded, array, tile_shape=[16, 64, 64], margin=[0, 8, 8],
                          progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (4, 4)
    assert len(make_tiles((16, 96, 96), [16, 64, 64], [0, 8, 8], (4, 4, 4))) == 4
    # cores split y and x at 48; voxels 16+ away from that border have >= 24 voxels of context
    far = np.r_[0:32, 64:96]
    for key in ("affinities", "lsds"):
        a = whole[key][:, :, far][:, :, :, far]
        b = tiled[key][:, :, far][:, :, :, far]
        np.testing.assert_allclose(a, b, atol=1e-5)
        assert whole[key].dtype == np.float32 and whole[key].shape[1:] == array.shape


def test_dask_input_and_zarr_output_match_memory(tmp_path):
    import dask.array as da
    import zarr

    loaded = tiny_model()
    array = np.random.default_rng(1).integers(0, 255, (8, 64, 64), dtype=np.uint8)
    in_memory = predict_array(loaded, array, tile_shape=[8, 48, 48], margin=[0, 8, 8])
    out = predict_to_zarr(loaded, da.from_array(array, chunks=(8, 32, 32)), tmp_path / "pred.zarr",
                          voxel_size=(4.0, 2.0, 2.0), offset=(8.0, 0.0, 0.0), tile_shape=[8, 48, 48],
                          margin=[0, 8, 8])
    group = zarr.open_group(str(out), mode="r")
    np.testing.assert_allclose(group["affinities"][:], in_memory["affinities"], atol=1e-6)
    assert list(group["lsds"].attrs["resolution"]) == [4.0, 2.0, 2.0]
    assert list(group["lsds"].attrs["offset"]) == [8.0, 0.0, 0.0]


def test_stack_of_2d_images_for_a_2d_model():
    config = config_from_dict({"preset": "wells2d_quick", "data": {"patch_shape": [64, 64]},
                               "model": {"encoder_depth": 3, "task": "masks"}})
    loaded = LoadedModel(build_model(config).eval(), config, Path("<test>"), 0)
    out = predict_array(loaded, np.random.default_rng(0).random((3, 40, 50)).astype(np.float32))
    assert out["probabilities"].shape == (1, 3, 40, 50)


def test_stack_to_zarr_matches_memory_and_reads_back_with_its_geometry(tmp_path):
    """Both paths run the same loop over stack slices; the zarr output carries the attributes
    segtrain.io writes, so read_volume gives back the voxel size, offset and axes."""
    from segtrain.io import read_volume

    config = config_from_dict({"preset": "wells2d_quick", "data": {"patch_shape": [64, 64]},
                               "model": {"encoder_depth": 3, "task": "masks"}})
    loaded = LoadedModel(build_model(config).eval(), config, Path("<test>"), 0)
    stack = np.random.default_rng(0).random((3, 40, 56)).astype(np.float32)
    calls: list[list[tuple[int, int]]] = [[], []]
    in_memory = predict_array(loaded, stack, tile_shape=[32, 32], margin=[8, 8],
                              progress=lambda d, t: calls[0].append((d, t)))
    out = predict_to_zarr(loaded, stack, tmp_path / "pred.zarr", voxel_size=(1.0, 0.5, 0.5), offset=(0, 4, 2),
                          tile_shape=[32, 32], margin=[8, 8], progress=lambda d, t: calls[1].append((d, t)))
    assert calls[0] == calls[1] and calls[0][-1][0] == calls[0][-1][1] and calls[0][-1][1] % 3 == 0
    volume = read_volume(out / "probabilities")
    np.testing.assert_allclose(np.asarray(volume.data), in_memory["probabilities"], atol=1e-6)
    assert volume.axes == ("c", "z", "y", "x") and not volume.is_labels
    assert volume.voxel_size == (1.0, 0.5, 0.5) and volume.offset == (0.0, 4.0, 2.0)


def test_wrong_number_of_channels():
    loaded = tiny_model()
    with pytest.raises(InputError, match="1 input channel"):
        predict_array(loaded, np.zeros((2, 8, 16, 16), np.float32))
    two = config_from_dict({"preset": "em3d_quick", "data": {"patch_shape": [8, 16, 16], "in_channels": 2},
                            "model": {"num_fmaps": 2}})
    loaded2 = LoadedModel(build_model(two).eval(), two, Path("<test>"), 0)
    with pytest.raises(InputError, match="expects 2 input channels"):
        predict_array(loaded2, np.zeros((8, 16, 16), np.float32))


def test_out_of_memory_suggests_a_smaller_tile(monkeypatch):
    loaded = tiny_model()

    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")

    monkeypatch.setattr(loaded.model, "forward", oom)
    with pytest.raises(SegtrainError, match=r"smaller tile shape such as \(8, 32, 32\)"):
        predict_array(loaded, np.zeros((8, 64, 64), np.uint8), tile_shape=[8, 64, 64], margin=[0, 8, 8])


def test_missing_checkpoint_and_empty_run_folder(tmp_path):
    with pytest.raises(SegtrainError, match="No checkpoint or run folder"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(SegtrainError, match="has no checkpoints"):
        load_model(tmp_path / "run")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(SegtrainError, match="not a readable checkpoint"):
        load_model(junk)


def test_incompatible_checkpoint(tmp_path):
    loaded = tiny_model()
    state = {f"model.{k}": v for k, v in loaded.model.state_dict().items()}
    other = loaded.config.copy()
    other.model.num_fmaps = 5  # the checkpoint claims a different model than its weights
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"config": other.to_dict()}, "global_step": 3}, path)
    with pytest.raises(SegtrainError, match="incompatible model"):
        load_model(path)
    torch.save({"state_dict": state}, path)
    with pytest.raises(SegtrainError, match="not a segtrain checkpoint"):
        load_model(path)
    torch.save({"state_dict": state, "hyper_parameters": {"config": loaded.config.to_dict()}, "global_step": 3}, path)
    assert load_model(path).step == 3
