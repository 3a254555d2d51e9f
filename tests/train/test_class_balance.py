"""Class imbalance: class-weighted patch sampling (inverse square root of class frequency), focal
loss alpha beside gamma, and per-class IoU / F1 in validation, metrics.json and the runs table."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segtrain.config import config_from_dict
from segtrain.errors import ConfigError
from segtrain.postprocess import OutputSpec, validation_scores
from segtrain.runs import list_runs, run_columns
from segtrain.synthetic import make_well_image
from segtrain.train import ArraySource, TrainingRun
from segtrain.train.dataset import PatchStream
from segtrain.train.losses import binary_loss, multiclass_loss
from segtrain.train.sources import class_sampling_probabilities


def classes_config(**overrides) -> object:
    data = {"patch_shape": [32, 32], "val_patches": 2, "min_annotated_fraction": 0.1,
            **overrides.pop("data", {})}
    train = {"max_steps": 4, "val_every": 2, "checkpoint_every": 2, "batch_size": 2, "report_interval": 0.0,
             "lr": 1e-3, "scheduler": "none", **overrides.pop("train", {})}
    return config_from_dict({"name": "classes", "data": data,
                             "model": {"task": "classes", "n_classes": 3, "architecture": "smp",
                                       "encoder": "resnet18", "encoder_depth": 3},
                             "train": train, **overrides})


def rare_class_volume() -> tuple[np.ndarray, np.ndarray]:
    """A 2D image whose class 2 is one 16 x 16 square (0.026 % of the voxels), class 1 30 %."""
    labels = np.zeros((1000, 1000), np.int64)
    labels[:, :300] = 1
    labels[600:616, 700:716] = 2
    raw = np.random.default_rng(0).random(labels.shape).astype(np.float32)
    return raw, labels


def test_sampling_probabilities_follow_the_inverse_square_root_of_class_frequency():
    counts = [9000, 900, 100, 0]
    p = class_sampling_probabilities(counts, "inverse_sqrt")
    # per voxel: p_c / count_c ~ count_c ** -0.5
    per_voxel = p[:3] / np.array(counts[:3])
    assert per_voxel / per_voxel[0] == pytest.approx(np.sqrt(9000 / np.array(counts[:3])))
    assert p.sum() == pytest.approx(1) and p[3] == 0
    assert class_sampling_probabilities(counts, "inverse") == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0])
    assert class_sampling_probabilities(counts, "none") == pytest.approx(np.array(counts) / 10000)


def test_weighted_sampling_draws_rare_class_patches_more_often():
    raw, labels = rare_class_volume()
    draws = 3000

    def rare_patch_share(mode: str) -> tuple[float, ArraySource]:
        config = classes_config(data={"class_sampling": mode, "min_annotated_fraction": 0.0,
                                      "patch_shape": [16, 16]})
        config.data.augment.probability = 0.0
        source = ArraySource(raw, labels)
        stream = PatchStream([source], config, seed=0)
        rng = np.random.default_rng(123)
        with_rare = [bool((stream.draw(rng)["classes"] == 2).any()) for _ in range(draws)]
        return float(np.mean(with_rare)), source

    uniform, _ = rare_patch_share("none")
    weighted, source = rare_patch_share("inverse_sqrt")
    # uniform patch positions: a 16 x 16 patch overlaps the square at (31 / 985) ** 2 ~ 0.1 % of its
    # positions; weighted, it is centred on a class-2 voxel with probability
    # sqrt(256) / (sqrt(699744) + sqrt(300000) + sqrt(256)) ~ 1.14 %
    p2 = 16 / (np.sqrt(699744) + np.sqrt(300000) + 16)
    assert source.class_counts == {0: 699744, 1: 300000, 2: 256}
    assert source.class_p[2] == pytest.approx(p2)
    assert sum(source.class_draws.values()) == draws
    sd = np.sqrt(draws * p2 * (1 - p2))
    assert abs(source.class_draws[2] - draws * p2) < 4 * sd  # 34 expected
    assert uniform < 0.004 and weighted >= source.class_draws[2] / draws and weighted > 4 * uniform
    # validation patches are never class-weighted
    config = classes_config(data={"class_sampling": "inverse_sqrt"})
    plain = ArraySource(raw, labels)
    PatchStream([plain], config, augmented=False)
    assert plain.class_p == {}


def test_class_sampling_is_a_checked_config_field():
    with pytest.raises(ConfigError, match="data.class_sampling must be one of 'none', 'inverse_sqrt', 'inverse'"):
        classes_config(data={"class_sampling": "sqrt"})
    config = classes_config()
    assert config.data.class_sampling == "none"
    with pytest.raises(ConfigError, match="data.class_sampling"):
        config.data.class_sampling = "often"


def test_focal_alpha_weights_classes_as_expected():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8)
    target = (torch.rand(2, 1, 8, 8) > 0.7).float()
    weight = torch.ones_like(target)
    plain = binary_loss(logits, target, weight, "focal", gamma=2.0)
    # alpha 0.5: every voxel weighted 0.5
    assert binary_loss(logits, target, weight, "focal", gamma=2.0, alpha=0.5) == pytest.approx(0.5 * float(plain))
    # alpha 1: only foreground voxels count; alpha 0: only background
    fg = binary_loss(logits, target, weight, "focal", gamma=2.0, alpha=1.0)
    bg = binary_loss(logits, target, weight, "focal", gamma=2.0, alpha=0.0)
    assert float(fg) + float(bg) == pytest.approx(float(plain), rel=1e-5)
    assert fg == pytest.approx(float(binary_loss(logits, target, weight * target, "focal", gamma=2.0))
                               * float(target.sum()) / target.numel(), rel=1e-5)
    assert binary_loss(logits, target, weight, "focal", gamma=2.0, alpha=[0.25, 0.75]) == pytest.approx(
        0.25 * float(bg) + 0.75 * float(fg), rel=1e-5)
    # multi-class: gamma 0 and no alpha is cross-entropy; alpha weights each voxel by its class
    logits = torch.randn(2, 3, 8, 8)
    classes = torch.randint(0, 3, (2, 8, 8))
    w = torch.ones(2, 8, 8)
    ce = F.cross_entropy(logits, classes)
    assert multiclass_loss(logits, classes, w, "focal", gamma=0.0) == pytest.approx(float(ce), rel=1e-5)
    alpha = [0.1, 1.0, 3.0]
    expected = (torch.tensor(alpha)[classes] * F.cross_entropy(logits, classes, reduction="none")).mean()
    assert multiclass_loss(logits, classes, w, "focal", gamma=0.0, alpha=alpha) == pytest.approx(float(expected), rel=1e-5)
    # gamma > 0 down-weights well-classified voxels: the loss falls
    assert multiclass_loss(logits, classes, w, "focal", gamma=2.0) < ce


def test_focal_alpha_is_checked():
    with pytest.raises(ConfigError, match="train.focal_alpha must be between 0 and 1, not 1.5"):
        classes_config(train={"loss": "focal", "focal_alpha": 1.5})
    with pytest.raises(ConfigError, match=r"train.focal_alpha lists 2 weights; give one per class: model.n_classes \(3\)"):
        classes_config(train={"loss": "focal", "focal_alpha": [0.5, 0.5]})
    with pytest.raises(ConfigError, match="train.focal_alpha weights focal losses only, but train.loss is 'ce_dice'"):
        classes_config(train={"focal_alpha": 0.25})
    with pytest.raises(ConfigError, match="train.focal_gamma must be 0 or more"):
        classes_config(train={"loss": "focal", "focal_gamma": -1})
    config = classes_config(train={"loss": "focal_dice", "focal_alpha": [0.2, 1, 2]})
    assert config.train.focal_alpha == [0.2, 1.0, 2.0]


def test_per_class_scores_in_validation():
    gt = np.array([[0, 0, 1, 1], [0, 2, 2, 1]])
    pred = np.array([[0, 0, 1, 0], [0, 2, 2, 2]])
    probabilities = np.stack([pred == k for k in range(3)]).astype(np.float32)
    spec = OutputSpec.of(classes_config())
    scores = validation_scores({"probabilities": probabilities}, gt, classes_config().segment, spec)
    assert scores["iou_class0"] == pytest.approx(3 / 4) and scores["iou_class1"] == pytest.approx(1 / 3)
    assert scores["iou_class2"] == pytest.approx(2 / 3)
    assert scores["f1_class1"] == pytest.approx(2 * 1 / (2 * 1 + 0 + 2))  # tp 1, fp 0, fn 2


def test_tiny_classes_run_records_per_class_metrics_and_class_counts(tmp_path):
    def image(seed):
        raw, instances = make_well_image((64, 64), n_spheroids=4, radius_range=(4, 10), seed=seed)
        return raw, np.where(instances > 0, np.where(instances % 2 == 0, 2, 1), 0).astype(np.int64)

    (raw, labels), (vraw, vlabels) = image(1), image(2)
    config = classes_config(data={"class_sampling": "inverse_sqrt"},
                            train={"loss": "focal_dice", "focal_alpha": [0.2, 0.4, 0.4]})
    run = TrainingRun(config, [ArraySource(raw, labels)], [ArraySource(vraw, vlabels)], runs_root=tmp_path)
    run.run()
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    last = metrics["history"][-1]
    for k in range(3):
        assert 0 <= last[f"val/iou_class{k}"] <= 1 and 0 <= last[f"val/f1_class{k}"] <= 1
    data = json.loads((run.run_dir / "run.json").read_text())["data"]
    counts = data["train"][0]["class_counts"]
    assert {int(k): v for k, v in counts.items()} == {k: int((labels == k).sum()) for k in range(3)}
    assert data["val"][0]["class_counts"]["2"] == int((vlabels == 2).sum())
    assert set(data["train"][0]["class_sampling"]) == {"0", "1", "2"}
    (summary,) = list_runs(tmp_path)
    assert summary.class_metrics["iou_class2"] == last["val/iou_class2"]
    keys = [c.key for c in run_columns([summary])]
    assert keys[keys.index("final") + 1:keys.index("parent")] == [
        "iou_class0", "f1_class0", "iou_class1", "f1_class1", "iou_class2", "f1_class2"]
    assert summary.data.startswith("1+1 sources ")
