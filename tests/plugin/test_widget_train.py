"""Train panel, driven by clicks and typing: Start/Stop/Resume with visible states, the plot's
history across Resume, validation capped by the steps, the task chosen from the data, errors as
one sentence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from qtpy.QtWidgets import QToolButton

from segtrain.plugin.widgets.data import DataWidget
from segtrain.plugin.widgets.predict import PredictWidget
from segtrain.plugin.widgets.runs import RunsWidget
from segtrain.plugin.widgets.train import TrainWidget


def _well(viewer, shape=(96, 96)):
    from segtrain.synthetic import make_well_image

    image, labels = make_well_image(shape=shape, n_spheroids=4, seed=2)
    viewer.add_image(image, name="well")
    viewer.add_labels(labels.astype(np.uint32), name="gt")
    return image, labels


def _small_run_form(gui, train, tmp_path, steps: int):
    gui.type(train.steps_spin, str(steps))
    gui.type(train.batch_spin, "1")
    gui.type(train.patch_edit, "64, 64")
    gui.type(train.runs_root_edit, str(tmp_path / "runs"))


def _well_panels(docked, gui, tmp_path, steps: int):
    """A well image with ground truth, the Data and Train panels docked, a small run filled in."""
    viewer, dock = docked
    _well(viewer)
    data, train = DataWidget(viewer), TrainWidget(viewer)
    dock(data, train)
    gui.choose(data.gt_combo, "gt")
    _small_run_form(gui, train, tmp_path, steps=steps)
    return viewer, train


def test_start_click_without_image_is_one_sentence(docked, qtbot, gui, error_messages):
    viewer, dock = docked
    train = TrainWidget(viewer)
    dock(train)
    gui.click(train.start_button)
    assert not train.is_running() and train.start_button.isEnabled()
    assert train.status.text().startswith("No image layer")
    assert error_messages() == [train.status.text()]


def test_start_click_with_labels_of_other_shape_is_one_sentence(docked, gui, error_messages):
    viewer, dock = docked
    viewer.add_image(np.zeros((8, 32, 32), np.uint8), name="raw")
    viewer.add_labels(np.ones((8, 16, 16), np.uint32), name="gt")
    data, train = DataWidget(viewer), TrainWidget(viewer)
    dock(data, train)
    gui.choose(data.gt_combo, "gt")
    gui.click(train.start_button)
    assert not train.is_running()
    assert "has shape (8, 16, 16)" in train.status.text() and "\n" not in train.status.text()
    assert any("has shape (8, 16, 16)" in m for m in error_messages())


def test_config_form_yaml_round_trip_by_typing(docked, gui, tmp_path):
    viewer, dock = docked
    train = TrainWidget(viewer)
    dock(train)
    gui.choose(train.preset_combo, "em3d_quick")
    gui.type(train.steps_spin, "123")
    gui.type(train.lr_spin, "0.0005")
    gui.type(train.patch_edit, "16, 64, 64")
    gui.click(next(b for b in train.findChildren(QToolButton) if b.text() == "Advanced"))
    gui.type(train.ensemble_spin, "2")
    train.save_yaml(tmp_path / "c.yaml")  # the file dialog's result
    gui.choose(train.preset_combo, "wells2d_quick")
    assert train.steps_spin.value() != 123
    train.load_yaml(tmp_path / "c.yaml")
    config = train.current_config()
    assert config.train.max_steps == 123 and config.data.patch_shape == [16, 64, 64] and config.model.ensemble == 2
    assert abs(config.train.lr - 0.0005) < 1e-9
    gui.type(train.patch_edit, "sixteen")
    train.save_yaml(tmp_path / "bad.yaml")
    assert "not a list of numbers" in train.status.text()


def test_validation_interval_is_capped_by_the_steps(docked, gui):
    viewer, dock = docked
    train = TrainWidget(viewer)
    dock(train)
    gui.choose(train.preset_combo, "wells2d_quick")
    assert train.val_every_spin.value() == 250
    gui.type(train.steps_spin, "15")
    assert train.val_every_spin.value() == 15
    assert train.current_config().train.val_every == 15


def test_task_and_preset_follow_the_ground_truth(docked, gui):
    """A 2D image with instance ground truth is an instances task (not masks); changing the task
    changes the preset."""
    viewer, dock = docked
    _well(viewer)
    data, train = DataWidget(viewer), TrainWidget(viewer)
    dock(data, train)
    gui.choose(data.gt_combo, "gt")
    assert data.task() == "instances"
    assert train.preset_combo.currentText() == "wells2d_quick"
    assert "instances" in train.task_label.text() and "2D" in train.task_label.text()
    gui.choose(data.task_combo, data.task_combo.itemText(data.task_combo.findData("affinities")))
    assert train.preset_combo.currentText() == "isbi2d_quick"
    assert "affinities" in train.task_label.text()
    assert train.current_config().task == "affinities"
    mask = (viewer.layers["gt"].data > 0).astype(np.uint32)
    viewer.add_labels(mask, name="mask gt")
    gui.choose(data.gt_combo, "mask gt")
    assert data.task() == "masks" and train.current_config().task == "masks"


def test_start_stop_resume_states_history_and_newest_checkpoint(docked, gui, tmp_path):
    """Start (a real click) -> preparing -> step N -> Stop -> stopped at N -> Resume with more
    steps -> finished; the plot keeps the first part; Predict offers the newest checkpoint."""
    viewer, dock = docked
    _well(viewer)
    data, train, predict, runs = DataWidget(viewer), TrainWidget(viewer), PredictWidget(viewer), RunsWidget(viewer)
    dock(data, train, predict, runs)
    gui.choose(data.gt_combo, "gt")
    _small_run_form(gui, train, tmp_path, steps=100000)
    gui.type(train.val_every_spin, "3")
    gui.click(train.start_button)
    assert train.is_running() and train.state_label.text().startswith("preparing")
    assert not train.start_button.isEnabled() and train.stop_button.isEnabled()
    assert not train.resume_button.isEnabled()
    gui.wait_until(lambda: train.state == "training" and train.last_report.step >= 4, what="step 4")
    assert train.state_label.text().startswith("step ")
    gui.click(train.stop_button)
    assert train.state_label.text() == "stopping" and not train.stop_button.isEnabled()
    gui.wait_until(lambda: not train.is_running(), timeout=60, what="the stop")
    stopped = train.last_report.step
    assert train.state_label.text() == f"stopped at step {stopped} / 100000"
    assert train.start_button.isEnabled() and train.resume_button.isEnabled()
    before = {k: list(v) for k, v in train.history.items()}
    assert before["val loss"], before

    gui.type(train.steps_spin, str(stopped + 4))
    gui.click(train.resume_button)
    gui.wait_until(lambda: not train.is_running(), what="the resumed run")
    end = stopped + 4
    assert train.state_label.text() == f"finished at step {end} / {end}"
    for key, points in before.items():  # the plot kept its history across Resume
        assert train.history[key][:len(points)] == points, key
    val_steps = [s for s, _ in train.history["val loss"]]
    assert val_steps[-1] == end  # a validation at the end of the run
    metrics = json.loads((train.run_dir / "metrics.json").read_text())
    assert metrics["history"][-1]["step"] == end and metrics["steps"] == end

    # Predict is handed the run and offers its newest checkpoint, with its step
    assert Path(predict.checkpoint_edit.text()) == train.run_dir
    newest = f"newest: final.ckpt (step {end})"
    gui.wait_until(lambda: predict.which_combo.itemText(0) == newest, timeout=30, what="the checkpoint list")
    # the Runs panel shows the steps reached and the run's size
    gui.click(runs.refresh_button)
    titles = [runs.table.horizontalHeaderItem(c).text() for c in range(runs.table.columnCount())]
    row = {title: runs.table.item(0, c).text() for c, title in enumerate(titles)}
    assert (row["steps"], row["planned"]) == (str(end), str(end))
    assert float(row["MB"]) > 0 and row["status"] == "finished"  # size on disk, e.g. "3.1" (MB)


def test_a_short_run_keeps_few_checkpoints_and_validates_at_its_end(docked, gui, tmp_path):
    viewer, train = _well_panels(docked, gui, tmp_path, steps=5)
    gui.click(train.start_button)
    gui.wait_until(lambda: not train.is_running(), what="the run")
    assert train.state_label.text() == "finished at step 5 / 5"
    assert train.preview is not None and train.preview_label.pixmap() is not None
    checkpoints = train.run_dir / "checkpoints"
    files = sorted(p.name for p in checkpoints.iterdir() if not p.is_symlink())
    assert files == ["best.ckpt", "final.ckpt"]  # no periodic ones in 5 steps, no duplicates
    assert (checkpoints / "last.ckpt").resolve() == (checkpoints / "final.ckpt").resolve()
    size = train.run_dir.stat().st_size + sum(p.stat().st_size for p in train.run_dir.rglob("*")
                                              if p.is_file() and not p.is_symlink())
    from segtrain.runs import RunFolder

    assert RunFolder(train.run_dir).size_on_disk() <= size
    metrics = json.loads((train.run_dir / "metrics.json").read_text())
    assert [h["step"] for h in metrics["history"]] == [5] and metrics["best_step"] == 5


def test_training_error_becomes_a_notification(docked, gui, tmp_path, error_messages, monkeypatch):
    import torch

    from segtrain.train import module

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(module.SegtrainModule, "training_step", out_of_memory)
    viewer, train = _well_panels(docked, gui, tmp_path, steps=5)
    gui.click(train.start_button)
    gui.wait_until(lambda: not train.is_running(), what="the failed run")
    messages = error_messages()
    assert messages and "memory" in messages[-1], messages
    assert "\n" not in messages[-1] and "Traceback" not in messages[-1]
    assert train.state_label.text().startswith("failed: ") and train.start_button.isEnabled()


def test_resume_needs_more_steps_than_reached(docked, gui, tmp_path, error_messages):
    viewer, train = _well_panels(docked, gui, tmp_path, steps=5)
    gui.click(train.start_button)
    gui.wait_until(lambda: not train.is_running(), what="the run")
    gui.click(train.resume_button)  # Steps still 5: nothing to continue
    gui.wait_until(lambda: not train.is_running(), what="the refusal")
    message = "The run already reached step 5; set Steps above 5 to continue it, then press Resume."
    assert error_messages()[-1] == message
    assert train.state_label.text() == f"failed: {message}" and train.resume_button.isEnabled()


def test_fine_tune_on_corrections_is_a_new_run_with_its_parent(docked, gui, tmp_path):
    """Train a run; proofread a segmentation (delete a false object by clicking it); use the
    correction as annotation; Fine-tune: a new run from the run's weights that records its parent."""
    from segtrain.plugin import layers as L
    from segtrain.plugin.widgets.proofread import ProofreadWidget
    from segtrain.runs import RunFolder

    viewer, dock = docked
    _, labels = _well(viewer)
    data, train, proofread = DataWidget(viewer), TrainWidget(viewer), ProofreadWidget(viewer)
    dock(data, train, proofread)
    gui.choose(data.gt_combo, "gt")
    _small_run_form(gui, train, tmp_path, steps=3)
    assert not train.finetune_button.isEnabled()  # no model yet
    gui.click(train.start_button)
    gui.wait_until(lambda: not train.is_running(), what="the first run")
    parent = train.run_dir
    assert train.finetune_button.isEnabled()

    wrong = labels.astype(np.uint32).copy()
    wrong[2:10, 2:10] = 99  # a false object on the background
    seg = viewer.add_labels(wrong, name="segmentation")
    gui.choose(proofread.seg_combo, "segmentation")
    gui.click(proofread.tool_buttons["Delete"])
    gui.click_canvas(viewer, seg, (5, 5))
    gui.wait_until(lambda: not proofread.busy(), what="the delete")
    assert (np.asarray(seg.data)[2:10, 2:10] == 0).all()
    gui.click(proofread.annotate_button)
    gui.wait_until(lambda: not proofread.busy(), what="the corrections")
    annotation = np.asarray(viewer.layers[L.session(viewer).annotation_layer].data)
    assert (annotation[2:10, 2:10] == L.BACKGROUND_LABEL).all() and np.count_nonzero(annotation) == 64

    gui.type(train.steps_spin, "2")
    gui.click(train.finetune_button)
    gui.wait_until(lambda: not train.is_running(), what="the fine-tuning run")
    child = train.run_dir
    assert child != parent and child.name.startswith(parent.name.split("-20")[0] + "-ft")
    assert train.state_label.text() == "finished at step 2 / 2"
    assert RunFolder(child).parent() == parent.resolve()
    assert L.session(viewer).run_dir == child  # Predict now uses the fine-tuned model
    # at the fine-tuning rate (the same function as segtrain train --init-from), said in the status line
    parent_lr = RunFolder(parent).config().train.lr
    assert RunFolder(child).config().train.lr == pytest.approx(0.1 * parent_lr)
    assert RunFolder(child).config().train.warmup_steps == 0
    assert RunFolder(child).fine_tune()["config_lr"] == parent_lr
    assert f"fine-tuning at learning rate {0.1 * parent_lr:g} (0.1 x the config's {parent_lr:g})" in train.status.text()


def test_self_training_group_runs_iterations_with_progress_and_resumes(docked, gui, tmp_path):
    """The Self-training group: 2 iterations x 6 steps on a small well image; the state names the
    iteration, the run writes one folder per iteration with the pixels kept per class. Stopped by a
    click in iteration 1 and resumed: iteration 0 is not trained again (its checkpoint files
    unchanged), iteration 1 continues, iteration 2 follows, selftrain.json lists all three."""
    import hashlib

    viewer, train = _well_panels(docked, gui, tmp_path, steps=6)
    gui.click(train.selftrain_group.button)
    assert train.selftrain_spin.isVisible()
    gui.type(train.selftrain_spin, "2")
    gui.type(train.threshold_start_spin, "0.6")
    gui.type(train.threshold_end_spin, "0.55")
    config = train.current_config()
    assert config.selftrain.iterations == 2 and config.selftrain.threshold_end == 0.55
    seen = []
    train.state_label.setText = lambda text, set_text=train.state_label.setText: (seen.append(text), set_text(text))
    gui.click(train.start_button)
    gui.wait_until(lambda: train.last_report is not None and train.last_report.iteration == (1, 2)
                   and train.last_report.step >= 2, timeout=300, what="iteration 1")
    gui.click(train.stop_button)
    gui.wait_until(lambda: not train.is_running(), timeout=60, what="the stop")
    stopped = train.last_report.step
    assert train.state_label.text() == f"stopped iteration 1/2 at step {stopped} / 6"
    root = train.run_dir.parents[1]  # <run>/iterations/01
    done = root / "iterations" / "00" / "checkpoints"

    def state():
        return {p.name: (p.stat().st_mtime_ns, hashlib.blake2b(p.read_bytes()).hexdigest())
                for p in done.iterdir() if p.is_file() and not p.is_symlink()}

    before = state()
    gui.click(train.resume_button)
    gui.wait_until(lambda: not train.is_running(), timeout=300, what="the resumed self-training run")
    assert train.state_label.text() == "finished iteration 2/2 at step 6 / 6", train.state_label.text()
    assert any(t.startswith("iteration 1/2: ") for t in seen), seen
    assert any(t.startswith("preparing: resuming: iteration 0 done (reused); iteration 1 continues from step ")
               for t in seen), seen
    assert "iteration 2/2: kept class 0 " in train.status.text(), train.status.text()
    assert train.run_dir.name == "02" and sorted(p.name for p in (root / "iterations").iterdir()) == ["00", "01", "02"]
    assert state() == before  # iteration 0 was not trained again
    summary = json.loads((root / "selftrain.json").read_text())
    assert [(it["iteration"], it["stopped"], it["steps"]) for it in summary["iterations"]] == \
        [(0, False, 6), (1, False, 6), (2, False, 6)]
    record = json.loads((root / "iterations" / "02" / "pseudo_labels.json").read_text())
    assert record["thresholds"] == [0.55, 0.55] and sum(record["predicted"].values()) == 96 * 96
    steps = [p[0] for p in train.history["train loss"]]
    assert steps[-1] > 12  # the plot counts all iterations' steps
    assert [s for s in steps if 6 <= s < 6 + stopped]  # and kept iteration 1's first part across Resume


def test_the_form_offers_the_ranges_and_choices_the_config_declares(docked, gui):
    """The Train form's spin boxes and combo boxes take their ranges and choices from the config
    model's declarations (segtrain.config.field_bounds): a bound changed there changes the form."""
    from segtrain import config as C

    viewer, dock = docked
    train = TrainWidget(viewer)
    dock(train)
    sections = {"train": C.TrainConfig, "model": C.ModelConfig, "selftrain": C.SelfTrainConfig}
    fields = [*train._fields(), ("selftrain.iterations", train.selftrain_spin),
              ("selftrain.threshold_start", train.threshold_start_spin),
              ("selftrain.threshold_end", train.threshold_end_spin)]
    checked = 0
    for path, widget in fields:
        section, name = path.split(".")
        if section not in sections:
            continue
        bounds = C.field_bounds(sections[section], name)
        if hasattr(widget, "count"):  # a combo box: the Literal's choices, in order
            assert [widget.itemText(i) for i in range(widget.count())] == list(bounds.choices), path
        elif hasattr(widget, "minimum") and bounds.low is not None:
            step = 1 if not hasattr(widget, "decimals") else 10.0 ** -widget.decimals()
            low = bounds.low + (step if bounds.low_open else 0) - (step if bounds.optional else 0)
            assert widget.minimum() == pytest.approx(low), path
            if bounds.high is not None:
                assert widget.maximum() == pytest.approx(bounds.high - (step if bounds.high_open else 0)), path
        checked += 1
    assert checked >= 12
    assert (train.lr_spin.minimum(), train.threshold_start_spin.minimum(), train.threshold_end_spin.maximum()) == \
        (pytest.approx(1e-6), 0.5, 1.0)
    assert train.patience_spin.minimum() == 0 and train.patience_spin.specialValueText() == "off"
    # typing below the model's minimum leaves a value the config accepts (the spin box holds its minimum)
    gui.type(train.steps_spin, "0")
    assert train.steps_spin.value() >= 1
    gui.type(train.lr_spin, "0")
    C.update_section(train.current_config(), "train", {"lr": train.lr_spin.value()})


def test_the_panel_says_which_device_and_precision_training_uses(docked, gui, monkeypatch):
    """Only the hardware query (segtrain.device.hardware, the one place that asks torch) is faked: a
    CUDA GPU with bf16, then none; the Accelerator list is used by clicks."""
    from segtrain import device

    monkeypatch.setattr(device, "hardware", lambda: device.Hardware(cuda_count=1, cuda_name="NVIDIA H100",
                                                                    cuda_bf16=True))
    viewer, dock = docked
    train = TrainWidget(viewer)
    dock(train)
    gui.wait_until(lambda: train.device_label.text() == "device: CUDA: NVIDIA H100 (bf16-mixed)", timeout=60,
                   what=f"the device line (it says {train.device_label.text()!r})")
    gui.click(next(b for b in train.findChildren(QToolButton) if b.text() == "Advanced"))
    gui.choose(train.accelerator_combo, "cpu")
    threads = train.current_config().train.threads
    gui.wait_until(lambda: train.device_label.text() == f"device: CPU, {threads} thread{'s' * (threads > 1)}",
                   timeout=30, what=f"the CPU line (it says {train.device_label.text()!r})")
    monkeypatch.setattr(device, "hardware", lambda: device.Hardware())
    gui.choose(train.accelerator_combo, "gpu")
    gui.wait_until(lambda: "no CUDA GPU or Apple MPS device" in train.device_label.text(), timeout=30,
                   what=f"the missing GPU sentence (it says {train.device_label.text()!r})")
