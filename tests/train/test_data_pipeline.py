"""The data pipeline off the training step (DataLoader worker processes) and the device choice.

Training runs here are real (tiny 3D affinity + LSD runs on a real EM crop); only the hardware query
(:func:`segtrain.device.hardware`, the one function that asks torch) is faked where a test needs a
GPU this machine does not have."""

from __future__ import annotations

import json
import os

import lightning.pytorch as pl
import pytest

from segtrain import device as device_module
from segtrain.device import Hardware, choose_device, describe_device
from segtrain.errors import ConfigError
from segtrain.train import ArraySource, TrainingRun


class StepLosses(pl.Callback):
    """Every step's losses and the number of DataLoader workers that made the batches."""

    def __init__(self):
        self.losses: list[dict] = []
        self.workers = None

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(dict(module.last_losses))
        self.workers = trainer.train_dataloader.num_workers


def _losses(tmp_path, em_crop, tiny_config, seed: int, workers) -> tuple[list[dict], int, TrainingRun]:
    config = tiny_config(max_steps=20, val_every=20, checkpoint_every=20, seed=seed, num_workers=workers)
    raw, gt, vraw, vgt = em_crop
    clock = StepLosses()
    run = TrainingRun(config, [ArraySource(raw, gt)], [ArraySource(vraw, vgt)], runs_root=tmp_path / f"s{seed}",
                      callbacks=[clock])
    run.run()
    return clock.losses, clock.workers, run


def test_a_fixed_seed_reproduces_the_losses_of_twenty_steps_with_two_workers(tmp_path, em_crop, tiny_config):
    first, workers, run = _losses(tmp_path / "a", em_crop, tiny_config, seed=3, workers=2)
    again, _, _ = _losses(tmp_path / "b", em_crop, tiny_config, seed=3, workers=2)
    other, _, _ = _losses(tmp_path / "c", em_crop, tiny_config, seed=4, workers=2)
    assert workers == 2  # the patches came from two worker processes
    assert len(first) == 20 and {"loss", "affinities", "lsds"} <= set(first[0])  # LSD targets made in the workers
    assert first == again  # exactly, every loss of every step
    assert [s["loss"] for s in first] != [s["loss"] for s in other]  # the seed matters
    assert len({s["loss"] for s in first}) > 10  # different patches at every step, not one repeated
    # the training process counted what reached it, whichever process drew it
    ranks = json.loads((run.run_dir / "metrics.json").read_text())["ranks"]
    assert ranks[0]["patches"] == 20 and len(set(ranks[0]["first_patches"])) == 16


def test_auto_workers_leave_a_core_and_zero_trains_in_process(tmp_path, em_crop, tiny_config, monkeypatch):
    from segtrain.train.dataset import worker_count

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert worker_count("auto", "cuda") == 4
    assert worker_count("auto", "cpu") == 0  # on the CPU the workers would take the network's cores
    assert worker_count(2, "cpu") == 2  # unless asked for
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert worker_count("auto", "cuda") == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert worker_count("auto", "cuda") == 0
    losses, workers, _ = _losses(tmp_path, em_crop, lambda **t: tiny_config(**{**t, "max_steps": 3}), seed=0,
                                 workers=0)
    assert workers == 0 and len(losses) == 3


def _fake(monkeypatch, **values):
    monkeypatch.setattr(device_module, "hardware", lambda: Hardware(**values))


def test_auto_takes_cuda_then_mps_then_the_cpu(monkeypatch):
    monkeypatch.delenv("PYTORCH_ENABLE_MPS_FALLBACK", raising=False)
    _fake(monkeypatch, cuda_count=2, cuda_name="NVIDIA H100", cuda_bf16=True, mps=True)
    choice = choose_device()
    assert (choice.kind, choice.accelerator, choice.precision, choice.count) == ("cuda", "gpu", "bf16-mixed", 2)
    assert choice.describe() == "CUDA: NVIDIA H100 (bf16-mixed)" and choice.pin_memory
    assert choose_device(precision="bf16-mixed").precision == "bf16-mixed"
    assert choose_device("cpu").describe().startswith("CPU, ")

    _fake(monkeypatch, cuda_count=1, cuda_name="Tesla V100", cuda_bf16=False)
    assert choose_device(precision="bf16-mixed").describe() == "CUDA: Tesla V100 (16-mixed)"
    assert "PYTORCH_ENABLE_MPS_FALLBACK" not in os.environ

    _fake(monkeypatch, mps=True)
    choice = choose_device()
    assert (choice.kind, choice.accelerator, choice.precision) == ("mps", "mps", "32-true")
    assert choice.describe() == "Apple MPS (32-true)" and not choice.pin_memory
    assert os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] == "1"  # Metal's missing ops fall back to the CPU
    assert choose_device(precision="bf16-mixed").precision == "32-true"  # never bf16 on MPS
    assert choose_device("gpu", "16-mixed").describe() == "Apple MPS (16-mixed)"

    _fake(monkeypatch)
    assert describe_device(threads=2) == "CPU, 2 threads"
    assert describe_device(threads=1) == "CPU, 1 thread"
    assert choose_device(precision="16-mixed").precision == "32-true"  # fp16 autocast is a GPU feature
    with pytest.raises(ConfigError, match="no CUDA GPU or Apple MPS"):
        choose_device("gpu")


def test_prediction_and_blockwise_workers_use_the_same_choice(monkeypatch):
    from segtrain.predict.model_io import default_device
    from segtrain.scale.blocks import _device

    monkeypatch.delenv("DAISY_CONTEXT", raising=False)  # not inside a daisy worker (another test may have left one)
    _fake(monkeypatch, mps=True)
    assert default_device() == "mps" and _device() == "mps"
    _fake(monkeypatch, cuda_count=3, cuda_name="A100", cuda_bf16=True, mps=True)
    assert default_device() == "cuda" and _device() == "cuda:0"
    _fake(monkeypatch)
    assert default_device() == "cpu" and _device() is None


def test_the_run_records_its_device_and_a_missing_gpu_is_one_sentence(tmp_path, em_crop, tiny_config, monkeypatch):
    raw, gt, vraw, vgt = em_crop
    _fake(monkeypatch, mps=True)
    run = TrainingRun(tiny_config(), [ArraySource(raw, gt)], [ArraySource(vraw, vgt)], runs_root=tmp_path / "mps")
    assert json.loads((run.run_dir / "run.json").read_text())["device"] == "Apple MPS (32-true)"
    assert run.device.accelerator == "mps"  # what Lightning is given

    _fake(monkeypatch)
    with pytest.raises(ConfigError, match="train.accelerator is gpu but there is no CUDA GPU"):
        TrainingRun(tiny_config(accelerator="gpu"), [ArraySource(raw, gt)], [ArraySource(vraw, vgt)],
                    runs_root=tmp_path / "none")
    assert not (tmp_path / "none").exists()  # refused before any run folder

    run = TrainingRun(tiny_config(threads=1, max_steps=2, val_every=2), [ArraySource(raw, gt)],
                      [ArraySource(vraw, vgt)], runs_root=tmp_path / "cpu")
    assert run.run().done
    assert json.loads((run.run_dir / "run.json").read_text())["device"] == "CPU, 1 thread"


def test_loader_options_pin_memory_for_cuda_and_start_workers_by_fork_on_linux(tiny_config):
    import sys

    from segtrain.train.dataset import loader_options

    options = loader_options(tiny_config(), 2, pin_memory=True)
    assert options["pin_memory"] and options["persistent_workers"] and options["num_workers"] == 2
    if sys.platform.startswith("linux"):  # never spawn: that re-imports the user's __main__
        assert options["multiprocessing_context"].get_start_method() == "fork"
    in_process = loader_options(tiny_config(), 0, pin_memory=False)
    assert in_process["num_workers"] == 0 and "multiprocessing_context" not in in_process
