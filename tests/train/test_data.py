"""Sources, sparse annotations, augmentation alignment, targets and losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segtrain.config import AugmentConfig, preset
from segtrain.errors import InputError
from segtrain.train import ArraySource, FileSource, GeneratorSource
from segtrain.train.augment import augment, zoomed
from segtrain.train.dataset import PatchStream
from segtrain.train.losses import binary_loss, multiclass_loss, weighted_mse
from segtrain.train.sources import Sample


def prepared(source, ndim=3, channels=1, ignore=None):
    source.prepare(ndim, channels, "percentile", ignore)
    return source


def test_patches_respect_the_minimum_annotated_fraction():
    rng = np.random.default_rng(0)
    raw = rng.random((40, 40, 40)).astype(np.float32)
    labels = np.ones((40, 40, 40), np.int64)
    known = np.zeros(labels.shape, bool)
    known[5:15, 20:35, 20:35] = True  # a small painted region
    source = prepared(ArraySource(raw, labels, known=known))
    fractions = [source.sample(rng, (8, 12, 12), 0.5).known.mean() for _ in range(20)]
    assert min(fractions) >= 0.5


def test_ignore_label_is_unknown_and_background_is_zero():
    labels = np.full((8, 16, 16), 3, np.int64)
    labels[:, :8] = 255
    source = prepared(ArraySource(np.zeros(labels.shape, np.uint8), labels), ignore=255)
    sample = source.sample(np.random.default_rng(0), (8, 16, 16))
    assert not sample.known[:, :8].any() and sample.known[:, 8:].all()
    assert (sample.labels[:, :8] == 0).all()


def test_small_volumes_are_padded_as_unknown():
    source = prepared(ArraySource(np.ones((4, 10, 10), np.uint8), np.ones((4, 10, 10), np.int64)))
    sample = source.sample(np.random.default_rng(0), (8, 16, 16))
    assert sample.raw.shape == (1, 8, 16, 16)
    assert sample.known.sum() == 4 * 10 * 10


def test_augmentation_keeps_image_and_labels_aligned():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, (6, 16, 16))
    raw = labels.astype(np.float32)[None] / 4
    sample = Sample(raw, labels, np.ones(labels.shape, bool), labels.astype(np.float32))
    config = AugmentConfig(probability=0.0)  # geometry only, so raw still encodes the labels
    for _ in range(10):
        out = augment(sample, config, rng)
        np.testing.assert_array_equal(np.round(out.raw[0] * 4), out.labels)
        np.testing.assert_array_equal(out.weights, out.labels)


def test_mixing_weights_choose_sources():
    config = preset("em3d_quick")
    config.data.patch_shape = [8, 16, 16]
    config.model.lsds = False
    config.data.normalize = "dtype"
    a = ArraySource(np.zeros((8, 16, 16), np.uint8), np.ones((8, 16, 16), np.int64), weight=3.0)
    b = ArraySource(np.full((8, 16, 16), 255, np.uint8), np.ones((8, 16, 16), np.int64), weight=1.0)
    stream = PatchStream([a, b], config, augmented=False)
    rng = np.random.default_rng(0)
    bright = sum(stream.draw(rng)["raw"].mean() > 0.5 for _ in range(200))
    assert 30 < bright < 70  # about a quarter


def test_generator_source_plugs_in():
    def generate(rng):
        labels = np.repeat(np.arange(1, 5), 4)[None, None].repeat(8, 0).repeat(16, 1)
        return rng.random(labels.shape).astype(np.float32), labels

    config = preset("em3d_quick")
    config.data.patch_shape = [8, 16, 16]
    stream = PatchStream([GeneratorSource(generate, reuse=2)], config)
    batch = next(iter(stream))
    assert batch["affinities"].shape == (3, 8, 16, 16) and batch["lsds"].shape == (10, 8, 16, 16)


def test_file_source_reads_real_data_with_crop(em3d_dir):
    source = FileSource(em3d_dir / "train-image.h5", em3d_dir / "train-gt.lzf.h5", crop=[[0, 35]])
    prepared(source)
    assert source.shape == (35, 100, 200)


def test_isbi_masks_become_instances(isbi_dir):
    source = FileSource(isbi_dir / "image", isbi_dir / "label", crop=[[0, 2]], labels_kind="mask")
    prepared(source, ndim=2)
    assert source.stack and source.shape == (2, 512, 512)
    sample = source.sample(np.random.default_rng(0), (64, 64))
    assert sample.raw.shape == (1, 64, 64) and len(np.unique(sample.labels)) > 3


def test_shape_mismatch_is_one_sentence():
    with pytest.raises(InputError, match="differ"):
        prepared(ArraySource(np.zeros((4, 8, 8)), np.zeros((4, 8, 9), np.int64)))


def test_losses_ignore_unknown_voxels():
    pred = torch.rand(1, 3, 4, 8, 8)
    target = torch.rand(1, 3, 4, 8, 8).round()
    weight = torch.zeros_like(pred)
    weight[..., :4] = 1
    changed = pred.clone()
    changed[..., 4:] = 1 - changed[..., 4:]
    for balance in (False, True):
        assert torch.isclose(weighted_mse(pred, target, weight, balance), weighted_mse(changed, target, weight, balance))
    for kind in ("bce", "focal", "dice", "focal_dice", "bce_dice"):
        assert torch.isclose(binary_loss(pred, target, weight, kind, 2.0), binary_loss(changed, target, weight, kind, 2.0))
    logits = torch.rand(1, 3, 8, 8)
    classes = torch.randint(0, 3, (1, 8, 8))
    w = torch.zeros(1, 8, 8)
    w[..., :4] = 1
    other = logits.clone()
    other[..., 4:] = -other[..., 4:]
    for kind in ("ce", "dice", "ce_dice"):
        assert torch.isclose(multiclass_loss(logits, classes, w, kind), multiclass_loss(other, classes, w, kind))


def test_synthetic_and_pseudo_label_sources_mix_with_annotated_ones():
    from segtrain.train import SyntheticSource

    config = preset("em3d_quick")
    config.data.patch_shape = [8, 32, 32]
    labels = np.ones((8, 32, 32), np.int64)
    confidence = np.full(labels.shape, 0.25, np.float32)
    pseudo = ArraySource(np.zeros(labels.shape, np.uint8), labels, weights=confidence, weight=1.0)
    synthetic = SyntheticSource("em", shape=(16, 48, 48), weight=1.0, reuse=2)
    stream = PatchStream([pseudo, synthetic], config)
    rng = np.random.default_rng(0)
    draws = [stream.draw(rng) for _ in range(6)]
    weights = {float(d["lsds_weight"].max()) for d in draws}
    assert 0.25 in weights and 1.0 in weights  # pseudo-labels weighted, synthetic fully known


def test_elastic_augmentation_moves_image_and_labels_together():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.repeat(rng.integers(1, 9, (2, 4, 4)), 8, axis=1), 8, axis=2)  # blocks
    raw = labels.astype(np.float32)[None] / 8
    sample = Sample(raw, labels, np.ones(labels.shape, bool))
    config = AugmentConfig(flip=False, rotate90=False, probability=0.0, elastic=4.0, elastic_spacing=8)
    out = augment(sample, config, rng)
    assert not np.array_equal(out.labels, labels)  # it moved
    inside = ndimage_interior(out.labels)
    # same coordinates for both: away from label edges the interpolated image equals the labels
    agree = np.isclose(out.raw[0][inside] * 8, out.labels[inside], atol=1e-3)
    assert agree.mean() > 0.99


def ndimage_interior(labels):
    """Voxels whose 3x3 in-plane neighbourhood has one label (linear interpolation is exact there)."""
    from scipy import ndimage

    same = ndimage.maximum_filter(labels, size=(1, 3, 3)) == ndimage.minimum_filter(labels, size=(1, 3, 3))
    return same


def test_zoom_resamples_image_labels_and_mask_together():
    labels = np.zeros((64, 64), np.int64)
    labels[16:32, 24:40] = 3  # a 16 x 16 object
    known = np.ones(labels.shape, bool)
    known[:, :8] = False
    raw = (labels.astype(np.float32) / 3)[None]
    out = zoomed(Sample(raw, labels, known, labels.astype(np.float32)), (96, 96))
    assert out.raw.shape == (1, 96, 96) and out.labels.shape == out.known.shape == (96, 96)
    assert abs((out.labels == 3).sum() / 256 - 1.5**2) < 0.15  # the object grew by the factor squared
    assert abs((~out.known).sum() / (~known).sum() - 1.5**2) < 0.15
    np.testing.assert_array_equal(out.weights, out.labels)
    inside = ndimage_interior(out.labels[None])[0]
    np.testing.assert_allclose(out.raw[0][inside] * 3, out.labels[inside], atol=1e-4)


def test_scale_augmentation_draws_objects_larger_and_smaller_in_the_patch_shape():
    config = preset("wells2d_quick")
    config.data.patch_shape = [64, 64]
    config.data.augment = AugmentConfig(flip=False, rotate90=False, probability=0.0, scale=0.5)
    labels = np.zeros((256, 256), np.int64)
    for i, y in enumerate(range(8, 256, 32)):  # a grid of 16 x 16 squares
        for j, x in enumerate(range(8, 256, 32)):
            labels[y:y + 16, x:x + 16] = 1 + i * 8 + j
    source = ArraySource(labels.astype(np.float32), labels)
    stream = PatchStream([source], config)
    rng = np.random.default_rng(0)
    areas = []
    for _ in range(40):
        patch = stream.draw(rng)
        assert patch["raw"].shape == (1, 64, 64) and patch["labels"].shape == (64, 64)
        ids, counts = np.unique(patch["labels"][8:-8, 8:-8], return_counts=True)
        areas.append(np.max(counts[ids > 0]))  # the largest (least cut) square of the patch
    assert min(areas) < 256 * 0.8 and max(areas) > 256 * 1.3  # shrunk and enlarged
    assert max(areas) < 256 * 1.5**2 * 1.1  # never beyond 1 + scale
    plain = PatchStream([source], preset("wells2d_quick"), augmented=False)
    plain.config.data.patch_shape = [64, 64]
    assert {np.max(np.unique(plain.draw(rng)["labels"], return_counts=True)[1][1:]) for _ in range(10)} <= {256}
