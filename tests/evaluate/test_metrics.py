import numpy as np
import pytest

from segtrain.errors import InputError
from segtrain.evaluate import (
    arand,
    auc,
    class_iou,
    instance_scores,
    mask_scores,
    segmentation_scores,
    voi,
)


def random_pair(seed, shape=(6, 30, 30), n_seg=9, n_gt=6):
    rng = np.random.default_rng(seed)
    seg = rng.integers(0, n_seg, shape).astype(np.uint64)
    gt = np.repeat(rng.integers(0, n_gt, (shape[0], shape[1] // 5, shape[2])), 5, axis=1)
    return seg, gt.astype(np.uint64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_voi_and_arand_agree_with_waterz(seed):
    import waterz
    from segtrain.segment import quiet_stdout

    seg, gt = random_pair(seed)
    seg[0] = 0  # segmentation 0 counts as a label, as in waterz
    with quiet_stdout():
        ref = waterz.evaluate(np.ascontiguousarray(seg), np.ascontiguousarray(gt))
    ours = segmentation_scores(seg, gt)
    assert ours["voi_split"] == pytest.approx(ref["voi_split"], abs=1e-9)
    assert ours["voi_merge"] == pytest.approx(ref["voi_merge"], abs=1e-9)
    assert ours["rand_split"] == pytest.approx(ref["rand_split"], abs=1e-12)
    assert ours["rand_merge"] == pytest.approx(ref["rand_merge"], abs=1e-12)
    expected_arand = 1 - 2 / (1 / ref["rand_split"] + 1 / ref["rand_merge"])
    assert arand(seg, gt) == pytest.approx(expected_arand, abs=1e-12)
    v = voi(seg.astype(np.int32), gt.astype(np.uint32))  # any integer dtype
    assert v["voi"] == pytest.approx(ref["voi_split"] + ref["voi_merge"], abs=1e-9)


def test_voi_conventions():
    gt = np.array([[1, 1, 2, 2, 0, 0]])
    assert voi(gt, gt)["voi"] == 0 and arand(gt, gt) == 0
    # gt 0 ignored: whatever the segmentation does there does not count
    seg = np.array([[5, 5, 7, 7, 9, 3]])
    assert voi(seg, gt)["voi"] == pytest.approx(0)
    # one segment for two objects: a merge of one bit, no split
    merged = np.array([[1, 1, 1, 1, 0, 0]])
    s = voi(merged, gt)
    assert s["voi_merge"] == pytest.approx(1.0) and s["voi_split"] == pytest.approx(0)
    split = np.array([[1, 2, 3, 4, 0, 0]])
    s = voi(split, gt)
    assert s["voi_split"] == pytest.approx(1.0) and s["voi_merge"] == pytest.approx(0)
    with pytest.raises(InputError):
        voi(np.zeros((3, 3), int), np.zeros((3, 4), int))


def test_mask_scores_and_auc():
    gt = np.array([0, 0, 1, 1, 1, 0], bool)
    pred = np.array([0, 1, 1, 1, 0, 0], bool)
    s = mask_scores(pred, gt)
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    assert s["dice"] == pytest.approx(2 / 3) and s["f1"] == s["dice"]
    assert s["iou"] == pytest.approx(0.5)
    prob = np.array([0.1, 0.2, 0.8, 0.9, 0.7, 0.3])
    assert mask_scores(pred, gt, prob=prob)["auc"] == pytest.approx(1.0)
    assert auc(1 - prob, gt) == pytest.approx(0.0)
    assert auc(np.full(6, 0.5), gt) == pytest.approx(0.5)
    empty = mask_scores(np.zeros(4, bool), np.zeros(4, bool))
    assert empty["dice"] == 1 and empty["iou"] == 1


def test_class_iou():
    gt = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    r = class_iou(pred, gt, n_classes=4)
    assert r["per_class"][:3] == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert np.isnan(r["per_class"][3])
    assert r["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)


def test_instance_scores():
    gt = np.zeros((20, 20), np.uint16)
    gt[2:8, 2:8] = 1
    gt[10:16, 10:16] = 2
    gt[2:5, 12:18] = 3
    pred = np.zeros_like(gt)
    pred[2:8, 2:8] = 7  # perfect
    pred[10:16, 11:16] = 8  # IoU 30/36
    pred[17:19, 0:3] = 9  # false positive
    s = instance_scores(pred, gt)
    assert (s["tp"], s["fp"], s["fn"]) == (2, 1, 1)
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3) and s["ap"] == pytest.approx(2 / 4)
    assert len(s["ap_per_threshold"]) == 10
    # at IoU 0.85 only the perfect one matches
    assert s["ap_per_threshold"][7] == pytest.approx(1 / 5)
    assert s["mean_ap"] < s["ap"]
    low = instance_scores(pred, gt, iou_threshold=0.3)
    assert low["tp"] == 2
    perfect = instance_scores(gt, gt)
    assert perfect["f1"] == 1 and perfect["mean_ap"] == 1
