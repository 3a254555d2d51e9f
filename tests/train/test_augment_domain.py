"""The augmentations against domain shift (issue 25): per-section intensity, shifted and
low-contrast sections (EM, after gunpowder's IntensityAugment / ElasticAugment / DefectAugment),
illumination gradients and halos (light microscopy). Each is off by default and then leaves the
patches of a seed as they were."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from segtrain.config import AugmentConfig
from segtrain.train import ArraySource, TrainingRun
from segtrain.train.augment import augment, illumination_gradient
from segtrain.train.sources import Sample

GEOMETRY_OFF = dict(flip=False, rotate90=False, elastic=0.0, scale=0.0)
INTENSITY_OFF = dict(intensity_scale=0.0, intensity_shift=0.0, gamma=0.0, noise=0.0, blur=0.0)


def random_sample(shape, seed=5):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, shape)
    raw = rng.random((1, *shape)).astype(np.float32)
    return Sample(raw, labels, np.ones(shape, bool), rng.random(shape).astype(np.float32))


def test_off_by_default_and_the_patches_of_a_seed_are_unchanged():
    default = AugmentConfig()
    assert not default.section_wise
    assert default.shifted_section == default.low_contrast_section == default.illumination == default.halo == 0
    # recorded with train/augment.py before these augmentations were added (commit 23fe000): every
    # draw of the old pipeline (flips, rotation, elastic, intensity, gamma, blur, noise, missing section)
    config = AugmentConfig(probability=1.0, blur=2.0, missing_section=0.5, elastic=3.0)
    out = augment(random_sample((6, 24, 24)), config, np.random.default_rng(0))
    assert out.raw.dtype == np.float32
    np.testing.assert_allclose([out.raw.sum(), (out.raw ** 2).sum()], [1876.91064453125, 1162.1898193359375], rtol=1e-5)
    np.testing.assert_allclose(out.raw[0, 2, 3, :4], [0.3567364513874054, 0.6737574934959412, 0.6054585576057434,
                                                     0.31848499178886414], rtol=1e-5)
    assert int(out.labels.sum()) == 5210


def test_section_wise_draws_scale_and_gamma_per_section():
    shape = (5, 16, 16)
    ramp = np.linspace(0.05, 1, 16 * 16, dtype=np.float32).reshape(16, 16)
    sample = Sample(np.broadcast_to(ramp, (1, *shape)).copy(), np.ones(shape, np.int64), np.ones(shape, bool))
    scaled = AugmentConfig(**GEOMETRY_OFF, **{**INTENSITY_OFF, "intensity_scale": 0.3}, probability=1.0,
                           section_wise=True)
    out = augment(sample, scaled, np.random.default_rng(0))
    ratio = out.raw[0] / sample.raw[0]
    per_section = ratio[:, 0, 0]
    np.testing.assert_allclose(ratio, per_section[:, None, None] * np.ones((16, 16)), rtol=1e-5)  # one per section
    assert np.all(np.abs(per_section - 1) <= 0.3) and np.ptp(per_section) > 0.05  # and they differ
    whole = augment(sample, replace(scaled, section_wise=False), np.random.default_rng(0))
    assert np.ptp(whole.raw[0] / sample.raw[0]) < 1e-5  # one draw for the patch without it

    gamma = AugmentConfig(**GEOMETRY_OFF, **{**INTENSITY_OFF, "gamma": 0.5}, probability=1.0, section_wise=True)
    out = augment(sample, gamma, np.random.default_rng(1))
    # each section is its own range ** its own gamma: recover the exponent from a mid-range voxel
    low, high = ramp.min(), ramp.max()
    t_in = (ramp[8, 8] - low) / (high - low)
    exponents = np.log((out.raw[0, :, 8, 8] - low) / (high - low)) / np.log(t_in)
    assert np.all(np.abs(exponents - 1) <= 0.5 + 1e-4) and np.ptp(exponents) > 0.05
    np.testing.assert_allclose(out.raw[0].min(axis=(1, 2)), low, rtol=1e-5)  # each section keeps its range
    np.testing.assert_allclose(out.raw[0].max(axis=(1, 2)), high, rtol=1e-5)

    # 2D: nothing per section, the same patch as without it
    flat = Sample(ramp[None].copy(), np.ones((16, 16), np.int64), np.ones((16, 16), bool))
    a = augment(flat, scaled, np.random.default_rng(2))
    b = augment(flat, replace(scaled, section_wise=False), np.random.default_rng(2))
    np.testing.assert_array_equal(a.raw, b.raw)


def test_shifted_sections_move_image_labels_and_mask_together_from_a_drawn_z_on():
    depth, size, max_shift = 6, 20, 3
    plane = 1 + np.arange(size * size).reshape(size, size)  # a distinct label per in-plane position
    labels = np.broadcast_to(plane, (depth, size, size)).copy()
    sample = Sample(labels[None].astype(np.float32), labels, np.ones(labels.shape, bool), labels.astype(np.float32))
    config = AugmentConfig(**GEOMETRY_OFF, probability=0.0, shifted_section=1.0, max_shift=max_shift)
    starts, offsets = set(), set()
    for seed in range(12):
        out = augment(sample, config, np.random.default_rng(seed))
        np.testing.assert_array_equal(out.raw[0], out.labels)  # image and labels still agree voxel for voxel
        np.testing.assert_array_equal(out.weights, out.labels)
        moved = [z for z in range(depth) if not np.array_equal(out.labels[z], plane)]
        if not moved:  # drawn offset (0, 0)
            assert out.known.all()
            continue
        z0 = moved[0]
        assert 1 <= z0 and moved == list(range(z0, depth))  # every section from z0 on, none before
        # the offset: where the label of the patch centre went
        y, x = np.argwhere(out.labels[z0] == plane[size // 2, size // 2])[0]
        dy, dx = int(y - size // 2), int(x - size // 2)
        assert max(abs(dy), abs(dx)) <= max_shift
        expected = np.ones((size, size), bool)
        expected[max(dy, 0):size + min(dy, 0), max(dx, 0):size + min(dx, 0)] = False
        for z in range(z0, depth):  # the same offset for all of them, the uncovered strip unknown
            inside = ~expected
            np.testing.assert_array_equal(out.labels[z][inside], np.roll(plane, (dy, dx), axis=(0, 1))[inside])
            np.testing.assert_array_equal(out.known[z], inside)
        assert out.known[:z0].all()
        starts.add(z0)
        offsets.add((dy, dx))
    assert len(starts) > 2 and len(offsets) > 3

    flat = Sample(plane[None].astype(np.float32), plane, np.ones(plane.shape, bool))
    np.testing.assert_array_equal(augment(flat, config, np.random.default_rng(0)).labels, plane)  # 3D only


def test_low_contrast_sections_shrink_the_spread_about_the_section_mean():
    sample = random_sample((8, 16, 16))
    config = AugmentConfig(**GEOMETRY_OFF, **INTENSITY_OFF, probability=1.0, low_contrast_section=1.0,
                           contrast_scale=0.1)
    out = augment(sample, config, np.random.default_rng(0))
    np.testing.assert_allclose(out.raw[0].std(axis=(1, 2)), 0.1 * sample.raw[0].std(axis=(1, 2)), rtol=1e-4)
    np.testing.assert_allclose(out.raw[0].mean(axis=(1, 2)), sample.raw[0].mean(axis=(1, 2)), rtol=1e-5)
    # with probability 0.5 per section: some sections low, the others untouched
    config = replace(config, low_contrast_section=0.5)
    ratios = np.concatenate([augment(sample, config, np.random.default_rng(seed)).raw[0].std(axis=(1, 2))
                             / sample.raw[0].std(axis=(1, 2)) for seed in range(4)])
    low, same = np.isclose(ratios, 0.1, rtol=1e-4), np.isclose(ratios, 1.0, rtol=1e-5)
    assert (low | same).all() and 0.2 < low.mean() < 0.8
    off = replace(config, probability=0.0)  # gated by probability like the others
    np.testing.assert_array_equal(augment(sample, off, np.random.default_rng(0)).raw, sample.raw)


@pytest.mark.parametrize("shape", [(64, 64), (3, 64, 64)])
def test_illumination_is_a_smooth_bounded_gradient(shape):
    sample = Sample(np.ones((1, *shape), np.float32), np.ones(shape, np.int64), np.ones(shape, bool))
    config = AugmentConfig(**GEOMETRY_OFF, **INTENSITY_OFF, probability=1.0, illumination=0.3)
    spans = []
    for seed in range(6):
        gain = augment(sample, config, np.random.default_rng(seed)).raw[0]
        assert gain.dtype == np.float32
        assert np.abs(gain - 1).max() <= 0.3 + 1e-6
        planes = gain.reshape(-1, 64, 64)
        np.testing.assert_array_equal(planes, np.broadcast_to(planes[0], planes.shape))  # same for each section
        # smooth: neighbours differ little, and the slope changes slowly (a polynomial of degree 2)
        assert np.abs(np.diff(planes[0], axis=0)).max() < 0.03 and np.abs(np.diff(planes[0], axis=1)).max() < 0.03
        assert np.abs(np.diff(planes[0], n=2, axis=0)).max() < 1e-3
        spans.append(np.ptp(planes[0]))
    assert max(spans) > 0.2  # not flat
    field = illumination_gradient((32, 48), 0.2, np.random.default_rng(0))
    assert np.isclose(np.abs(field).max(), 0.2)


def test_halo_puts_a_bright_rim_around_a_dark_object():
    yy, xx = np.mgrid[:64, :64]
    disk = (yy - 32) ** 2 + (xx - 32) ** 2 < 12 ** 2
    raw = np.where(disk, 0.2, 0.8).astype(np.float32)
    sample = Sample(raw[None], disk.astype(np.int64), np.ones(disk.shape, bool))
    config = AugmentConfig(**GEOMETRY_OFF, **INTENSITY_OFF, probability=1.0, halo=1.0, halo_sigma=3.0)
    out = augment(sample, config, np.random.default_rng(0)).raw[0]
    radius = np.hypot(yy - 32, xx - 32)
    rim, far = (radius > 12) & (radius < 14), radius > 26
    assert out[rim].min() > 0.8 + 0.01  # brighter just outside the dark object
    assert out[disk & (radius > 10)].max() < 0.2 - 0.01  # darker just inside
    np.testing.assert_allclose(out[far], 0.8, atol=1e-3)  # unchanged away from edges
    np.testing.assert_allclose(out[radius < 4], 0.2, atol=1e-3)


def test_a_run_with_every_new_augmentation_trains(tmp_path, em_crop, tiny_config):
    config = tiny_config(max_steps=2, val_every=2, checkpoint_every=2)
    config.data.augment = AugmentConfig(probability=1.0, section_wise=True, shifted_section=0.5, max_shift=4,
                                        low_contrast_section=0.2, illumination=0.3, halo=0.5)
    raw, gt, vraw, vgt = em_crop
    run = TrainingRun(config, [ArraySource(raw, gt)], [ArraySource(vraw, vgt)], runs_root=tmp_path)
    reports = list(run.reports())
    assert reports[-1].done and reports[-1].step == 2
    assert all(np.isfinite(r.losses["loss"]) for r in reports if r.losses)
    history = json.loads((run.run_dir / "metrics.json").read_text())["history"]
    assert [h["step"] for h in history] == [2] and np.isfinite(history[0]["val/loss"])
    saved = (run.run_dir / "config.yaml").read_text()
    assert "section_wise: true" in saved and "illumination: 0.3" in saved
