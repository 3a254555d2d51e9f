"""The panels keep each layer with its image and never touch ground truth (issue 23, "wrong without a
word"), driven by clicks: Fine-tune trains the corrections of image B on B's pixels (not on the
image the Data panel showed); proofreading with only an image and its ground truth open edits a
copy, never the ground truth; Segment's ground truth is the Data panel's and never another image's;
a seed on background or in a second segment is refused at the click."""

from __future__ import annotations

import json

import numpy as np

from segtrain.plugin import layers as L
from segtrain.plugin.widgets.data import DataWidget
from segtrain.plugin.widgets.predict import PredictWidget
from segtrain.plugin.widgets.proofread import SEEDS_LAYER, ProofreadWidget
from segtrain.plugin.widgets.segment import SegmentWidget
from segtrain.plugin.widgets.train import TrainWidget


def _well(seed: int, shape=(96, 96)):
    from segtrain.synthetic import make_well_image

    image, labels = make_well_image(shape=shape, n_spheroids=4, seed=seed)
    return image, labels.astype(np.uint32)


def _grid_labels(shape=(48, 48), cell=12) -> np.ndarray:
    """Square objects 1..n on a grid with background lines between them."""
    labels = np.zeros(shape, np.uint32)
    n = 1
    for y in range(0, shape[0], cell):
        for x in range(0, shape[1], cell):
            labels[y + 1:y + cell - 1, x + 1:x + cell - 1] = n
            n += 1
    return labels


def test_fine_tune_trains_the_corrections_on_the_image_they_were_made_on(docked, gui, tmp_path):
    """Train on A; open B; predict, segment and proofread B; use the corrections as annotation;
    Fine-tune: the new run's data is B's pixels (run.json), the Data and Train panels show the pair,
    and the edit log records the segmentation's own threshold."""
    from segtrain.runs import RunFolder, array_fingerprint

    viewer, dock = docked
    image_a, labels_a = _well(2)
    image_b, _ = _well(5)
    viewer.add_image(image_a, name="A")
    viewer.add_labels(labels_a, name="gt")
    data, train, predict = DataWidget(viewer), TrainWidget(viewer), PredictWidget(viewer)
    segment, proofread = SegmentWidget(viewer), ProofreadWidget(viewer)
    dock(data, train, predict, segment, proofread)
    assert data.image_combo.currentText() == "A"
    gui.choose(data.gt_combo, "gt")
    assert train.pair_label.text() == "'A' with ground truth 'gt'"
    gui.type(train.steps_spin, "2")
    gui.type(train.batch_spin, "1")
    gui.type(train.patch_edit, "64, 64")
    gui.type(train.runs_root_edit, str(tmp_path / "runs"))
    gui.click(train.start_button)
    gui.wait_until(lambda: not train.is_running(), what="the first run")
    parent = train.run_dir
    assert train.state_label.text() == "finished at step 2 / 2"

    viewer.add_image(image_b, name="B")  # the user opens a second image of the same shape
    assert data.image_combo.currentText() == "A"  # Data still shows A
    gui.choose(predict.image_combo, "B")
    gui.click(predict.match_check)  # one pass: the image as it is
    gui.wait_until(lambda: predict.which_combo.count() > 0, timeout=60, what="the checkpoint list")
    gui.click(predict.predict_button)
    gui.wait_until(lambda: predict.worker is None, what="the prediction")
    assert "B probabilities" in viewer.layers
    gui.choose(segment.pred_combo, "B probabilities")
    assert segment.gt_combo.currentText() == "(none)"  # A's ground truth is not B's
    gui.click(segment.build_button)
    gui.type(segment.threshold_spin, "0.02")  # a barely trained model: a low threshold finds objects
    gui.wait_until(lambda: not segment.busy(), timeout=120, what="the segmentation")
    layer = segment.seg_layer
    assert layer.name == "B segmentation" and L.layer_info(layer).image == "B"
    assert proofread.seg_combo.layer() is layer
    seg = np.asarray(layer.data)
    assert seg.any(), "the segmentation has no object to delete"
    point = tuple(np.argwhere(seg > 0)[np.count_nonzero(seg) // 2])
    gui.click(proofread.tool_buttons["Delete"])
    gui.click_canvas(viewer, layer, point)
    gui.wait_until(lambda: not proofread.busy(), what="the delete")
    reader = L.layer_info(layer).proofreader
    assert [e.op for e in reader.edits] == ["delete"]
    assert reader.edits[0].threshold == L.layer_info(layer).threshold == 0.02  # the segmentation's own
    gui.click(proofread.annotate_button)
    gui.wait_until(lambda: not proofread.busy(), what="the corrections")
    corrections = viewer.layers["B corrections"]
    assert L.layer_info(corrections).image == "B"
    # the Data panel shows the corrections as the annotation, with the image they were made on
    assert data.annotation_combo.currentText() == "B corrections"
    assert data.image_combo.currentText() == "B" and data.gt_combo.currentText() == "(none)"
    assert train.pair_label.text() == "'B' with annotation 'B corrections'"

    gui.choose(data.image_combo, "A")  # even with A shown in Data, Fine-tune takes B
    assert "Fine-tune: 'B' with annotation 'B corrections'" in train.pair_label.text()
    gui.type(train.steps_spin, "1")
    gui.click(train.finetune_button)
    gui.wait_until(lambda: not train.is_running(), what="the fine-tuning run")
    child = train.run_dir
    assert child != parent and RunFolder(child).parent() == parent.resolve()
    record = json.loads((child / "run.json").read_text())["data"]["train"][0]
    crop = record.get("crop")  # the part that trains (the rest validates)
    expected, wrong = (array_fingerprint(image, crop)[0]["hash"] for image in (image_b, image_a))
    assert record["raw"]["hash"] == expected != wrong


def test_fine_tune_refuses_corrections_whose_image_is_closed(docked, gui, tmp_path, error_messages):
    viewer, dock = docked
    image, labels = _well(2, shape=(64, 64))
    viewer.add_image(image, name="A")
    viewer.add_image(image[::-1].copy(), name="B")
    corrections = np.zeros(labels.shape, np.uint32)
    corrections[:8, :8] = L.BACKGROUND_LABEL
    viewer.add_labels(corrections, name="B corrections", metadata={L.META: L.LayerInfo("annotation", image="B")})
    data, train = DataWidget(viewer), TrainWidget(viewer)
    dock(data, train)
    gui.choose(data.annotation_combo, "B corrections")
    assert data.image_combo.currentText() == "B"
    gui.close_layers(viewer, ["B"])
    L.session(viewer).set(run_dir=tmp_path)  # a model to fine-tune (Runs: Use in Predict)
    gui.click(train.finetune_button)
    message = ("'B corrections' was made on the image 'B', which is no longer open; open it again to train on "
               "the pair.")
    assert error_messages()[-1] == message and train.status.text() == message and not train.is_running()


def test_proofreading_never_edits_the_ground_truth(docked, gui, error_messages):
    """Only an image and its ground truth open: Proofread chooses nothing (and says what to do), a
    click edits nothing; chosen explicitly, the ground truth gets an edited copy and stays as it
    was, still offered (and chosen) as ground truth by Segment."""
    viewer, dock = docked
    labels = _grid_labels()
    viewer.add_image(labels.astype(np.float32), name="raw")
    gt = viewer.add_labels(labels.copy(), name="gt")
    data, segment, proofread = DataWidget(viewer), SegmentWidget(viewer), ProofreadWidget(viewer)
    dock(data, segment, proofread)
    assert data.gt_combo.currentText() == "gt"  # named like ground truth: Data chose it
    assert proofread.seg_combo.currentText() == "(none)"
    assert proofread.status.text().startswith("No segmentation yet: build one in Segment")
    gui.click(proofread.tool_buttons["Merge"])
    for p in ((6, 6), (6, 18)):
        gui.click_canvas(viewer, gt, p)
    assert np.array_equal(np.asarray(gt.data), labels)

    gui.choose(proofread.seg_combo, "gt")  # the user asks to edit the ground truth
    gui.click(proofread.tool_buttons["Merge"])
    for p in ((6, 6), (6, 18)):
        gui.click_canvas(viewer, gt, p)
    gui.wait_until(lambda: not proofread.busy(), what="the merge")
    copy = viewer.layers["gt (edited copy)"]
    assert proofread.seg_combo.layer() is copy
    edited = np.asarray(copy.data)
    assert edited[6, 6] == edited[6, 18] != 0  # merged in the copy
    assert np.array_equal(np.asarray(gt.data), labels) and L.META not in gt.metadata
    assert "stays as it is" in proofread.status.text() or "Merged" in proofread.status.text()
    options = [segment.gt_combo.itemText(i) for i in range(segment.gt_combo.count())]
    assert "gt" in options and "gt (edited copy)" not in options
    assert segment.gt_combo.currentText() == "gt"


def test_segment_ground_truth_is_the_data_panels_and_of_the_same_image(docked, gui):
    viewer, dock = docked
    labels = _grid_labels()
    probability = (labels > 0).astype(np.float32)
    a = viewer.add_image(probability, name="A")
    b = viewer.add_image(probability[::-1].copy(), name="B")
    viewer.add_labels(labels, name="A labels")
    segment = SegmentWidget(viewer)  # opened before the Data panel chose anything
    data = DataWidget(viewer)
    dock(data, segment)
    gui.choose(data.image_combo, "A")
    gui.choose(data.gt_combo, "A labels")
    info = L.LayerInfo("probabilities", task="masks", model_ndim=2)
    for image in (a, b):
        array, kwargs = L.prediction_layer_args(probability[None], image, f"{image.name} probabilities",
                                                "probabilities", channel=0, info=info)
        viewer.add_image(array, **kwargs)
    gui.choose(segment.pred_combo, "A probabilities")
    assert segment.gt_combo.currentText() == "A labels"  # the Data panel's ground truth, preselected
    gui.choose(segment.pred_combo, "B probabilities")
    options = [segment.gt_combo.itemText(i) for i in range(segment.gt_combo.count())]
    assert options == ["(none)"]  # A's labels are not offered for B's predictions
    gui.choose(segment.pred_combo, "A probabilities")
    assert segment.gt_combo.currentText() == "A labels"


def test_seeds_on_background_or_in_two_segments_are_refused_at_the_click(docked, gui, error_messages):
    viewer, dock = docked
    labels = _grid_labels()
    viewer.add_image(labels.astype(np.float32), name="raw")
    layer = viewer.add_labels(labels, name="cells")
    proofread = ProofreadWidget(viewer)
    dock(proofread)
    gui.choose(proofread.seg_combo, "cells")
    gui.click(proofread.tool_buttons["Seeds"])
    gui.click_canvas(viewer, layer, (0, 0))  # background
    assert error_messages()[-1] == "That seed lies on background; put every seed inside the segment to split."
    assert len(viewer.layers[SEEDS_LAYER].data) == 0
    gui.click_canvas(viewer, layer, (4, 4))
    assert len(viewer.layers[SEEDS_LAYER].data) == 1
    gui.click_canvas(viewer, layer, (4, 16))  # the next segment
    assert error_messages()[-1].startswith("That seed lies in another segment than the first seeds")
    assert proofread.status.text() == error_messages()[-1]
    assert len(viewer.layers[SEEDS_LAYER].data) == 1
    gui.click_canvas(viewer, layer, (8, 8))  # the same segment: accepted
    assert len(viewer.layers[SEEDS_LAYER].data) == 2


def test_proofread_uncertainty_follows_the_segmentations_image(docked, gui):
    viewer, dock = docked
    labels = _grid_labels()
    for name in ("A", "B"):
        image = viewer.add_image(labels.astype(np.float32), name=name)
        data, kwargs = L.uncertainty_layer_args(np.zeros(labels.shape, np.float32), image, f"{name} uncertainty")
        viewer.add_image(data, **kwargs)
    for name in ("A", "B"):
        viewer.add_labels(labels, name=f"{name} segmentation",
                          metadata={L.META: L.LayerInfo("segmentation", image=name)})
    proofread = ProofreadWidget(viewer)
    dock(proofread)
    assert proofread.seg_combo.currentText() == "B segmentation"  # the newest segmentation
    assert proofread.uncertainty_combo.currentText() == "B uncertainty"
    gui.choose(proofread.seg_combo, "A segmentation")
    assert proofread.uncertainty_combo.currentText() == "A uncertainty"
    gui.choose(proofread.seg_combo, "B segmentation")
    assert proofread.uncertainty_combo.currentText() == "B uncertainty"


def test_fine_tune_pairs_the_corrections_with_their_image_after_it_was_renamed(docked, gui, tmp_path):
    """The corrections know their image by its id, not its name: renamed in the layer list, the image
    is still theirs (Fine-tune refused: "was made on the image 'B', which is no longer open") and
    the fine-tuning run trains on its pixels."""
    from segtrain.runs import array_fingerprint

    viewer, dock = docked
    image_a, labels_a = _well(2, shape=(64, 64))
    image_b, labels_b = _well(5, shape=(64, 64))
    viewer.add_image(image_a, name="A")
    viewer.add_labels(labels_a, name="gt")
    data, train = DataWidget(viewer), TrainWidget(viewer)
    dock(data, train)
    gui.choose(data.gt_combo, "gt")
    gui.type(train.steps_spin, "1")
    gui.type(train.batch_spin, "1")
    gui.type(train.patch_edit, "64, 64")
    gui.type(train.runs_root_edit, str(tmp_path / "runs"))
    gui.click(train.start_button)
    gui.wait_until(lambda: not train.is_running(), what="the first run")
    viewer.add_image(image_b, name="B")
    corrections = np.where(labels_b > 0, labels_b, L.BACKGROUND_LABEL).astype(np.uint32)  # what Proofread makes
    viewer.add_labels(corrections, name="B corrections", metadata={L.META: L.LayerInfo("annotation", image="B")})
    gui.choose(data.annotation_combo, "B corrections")
    assert data.image_combo.currentText() == "B"
    gui.rename_layer(viewer, "B", "B (day 2)")
    assert data.image_combo.currentText() == "B (day 2)"  # still chosen, under its new name
    gui.choose(data.image_combo, "A")
    assert "Fine-tune: 'B (day 2)' with annotation 'B corrections'" in train.pair_label.text(), train.pair_label.text()
    gui.type(train.steps_spin, "1")
    gui.click(train.finetune_button)
    gui.wait_until(lambda: not train.is_running(), what="the fine-tuning run")
    assert train.state_label.text().startswith("finished"), train.status.text()
    record = json.loads((train.run_dir / "run.json").read_text())["data"]["train"][0]
    expected, wrong = (array_fingerprint(image, record.get("crop"))[0]["hash"] for image in (image_b, image_a))
    assert record["raw"]["hash"] == expected != wrong
