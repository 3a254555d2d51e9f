"""The LightningModule: loss per task, validation loss on fixed patches plus segmentation quality
on whole validation volumes, optimiser and LR schedule from the config."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch

from segtrain.config import Config, config_from_dict, monitor_metric
from segtrain.models import build_model
from segtrain.tasks import task_of
from segtrain.train.losses import task_loss
from segtrain.train.schedule import WarmupCosine
from segtrain.parallel import in_process
from segtrain.postprocess import OutputSpec
from segtrain.postprocess import validation_scores
from segtrain.predict.infer import predict_array
from segtrain.predict.model_io import LoadedModel


def _slice_image(array: np.ndarray) -> np.ndarray:
    """A 2D view (central z-section of 3D), scaled to [0, 1]."""
    a = np.asarray(array, dtype=np.float32)
    if a.ndim == 3:
        a = a[a.shape[0] // 2]
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def preview_image(raw: np.ndarray, target: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """``raw | target | prediction`` side by side, float32 (H, 3W) in [0, 1]; multi-channel
    targets show their mean over the first up to 3 channels."""
    parts = [_slice_image(raw[0]), _slice_image(target[:3].mean(axis=0)),
             _slice_image(prediction[:3].mean(axis=0))]
    return np.concatenate(parts, axis=1)


def _mean(values: list[float], skip_nan: bool = False) -> float:
    if skip_nan:
        values = [v for v in values if not math.isnan(v)]
        if not values:
            return float("nan")
    return float(np.mean(values))


class SegtrainModule(pl.LightningModule):
    """Training logic; ``config`` is the plain dict of a :class:`Config` (saved in checkpoints)."""

    def __init__(self, config: dict):
        super().__init__()
        self.save_hyperparameters()
        self.cfg: Config = config_from_dict(config)
        self.model = build_model(self.cfg)
        self.val_volumes: list[dict] = []  # {"raw", "labels", "known"} for segmentation metrics
        self.last_preview: np.ndarray | None = None
        self.last_metrics: dict[str, float] = {}
        self.last_losses: dict[str, float] = {}
        self._val_losses: list[float] = []
        self.stop_requested = lambda: False  # set by TrainingRun: skip slow metrics when stopping
        self.score_in_process = False  # set by TrainingRun: waterz in a helper process (a GUI stays responsive)

    def forward(self, x):
        return self.model(x)

    def training_step(self, batch, batch_idx):
        outputs = self.model(batch["raw"])
        loss, parts = task_loss(outputs, batch, self.cfg)
        n = batch["raw"].shape[0]
        self.log("train/loss", loss, batch_size=n)
        for name, value in parts.items():
            self.log(f"train/loss_{name}", value, batch_size=n)
        self.last_losses = {"loss": float(loss.detach()), **parts}
        return loss

    def on_validation_epoch_start(self):
        self._val_losses = []
        self._preview_batch = None
        self._preview_content = -1.0

    def validation_step(self, batch, batch_idx):
        if self.stop_requested():  # Lightning validates once more when stopped: keep that instant
            return
        outputs = self.model(batch["raw"])
        loss, _ = task_loss(outputs, batch, self.cfg)
        self._val_losses.append(float(loss))
        self.log("val/loss", loss, batch_size=batch["raw"].shape[0])
        # preview the validation patch with the most foreground in its target (a patch of empty
        # background would show a black target and teach the user nothing)
        target = batch[task_of(self.cfg).target][:1]
        content = float((target > 0).float().mean())
        if self._preview_batch is None or content > self._preview_content:
            self._preview_batch = (batch, self.model.activate(outputs))
            self._preview_content = content

    def on_validation_epoch_end(self):
        metrics = {"loss": float(np.mean(self._val_losses)) if self._val_losses else float("nan")}
        metrics.update(self.segmentation_metrics())
        name, mode = monitor_metric(self.cfg)
        key = name.removeprefix("val/")
        if key not in metrics or not math.isfinite(metrics[key]):
            metrics[key] = math.inf if mode == "min" else 0.0  # nothing to score counts as worst
        for k, v in metrics.items():
            if k != "loss" or not self._val_losses:
                self.log(f"val/{k}", float(v))
        if not self.stop_requested():
            self.last_metrics = metrics
        if self._preview_batch is not None and not self.stop_requested():
            batch, probs = self._preview_batch
            head = self.model.heads[0].name
            target = batch[task_of(self.cfg).target][0].float().cpu().numpy()
            if target.ndim == probs[head][0].ndim - 1:
                target = target[None]
            self.last_preview = preview_image(batch["raw"][0].float().cpu().numpy(), target,
                                              probs[head][0].float().cpu().numpy())
            logger = self.logger
            if logger is not None and hasattr(logger.experiment, "add_image"):
                logger.experiment.add_image("preview/raw|target|prediction", self.last_preview[None],
                                            self.global_step)

    def segmentation_metrics(self) -> dict[str, float]:
        """Scores of whole-volume predictions on the validation volumes (mean over volumes)."""
        if not self.val_volumes or self.stop_requested():
            return {}

        was_training = self.model.training
        self.model.eval()
        loaded = LoadedModel(self.model, self.cfg, checkpoint=Path("<training>"), step=int(self.global_step))
        scores: dict[str, list[float]] = {}
        try:
            for volume in self.val_volumes:
                outputs = predict_array(loaded, volume["raw"])
                args = (outputs, volume["labels"], self.cfg.segment, OutputSpec.of(self.cfg))
                kwargs = {"voxel_size": volume.get("voxel_size") or self.cfg.data.voxel_size,
                          "known": volume.get("known")}
                if self.score_in_process and task_of(self.cfg).agglomerates:
                    values = in_process(validation_scores, *args, **kwargs)
                else:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        values = validation_scores(*args, **kwargs)
                for k, v in values.items():
                    scores.setdefault(k, []).append(float(v))
        finally:
            self.model.train(was_training)
        # per-class scores are NaN in a volume without the class: averaged over the volumes that have it
        return {k: _mean(v, skip_nan="_class" in k) for k, v in scores.items()}

    def configure_optimizers(self):
        t = self.cfg.train
        cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
        optimizer = cls(self.model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        if t.scheduler == "plateau":
            name, mode = monitor_metric(self.cfg)
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=t.plateau_factor,
                                                                   patience=t.plateau_patience)
            return {"optimizer": optimizer,
                    "lr_scheduler": {"scheduler": scheduler, "monitor": name, "interval": "step",
                                     "frequency": t.val_every, "strict": False}}
        if t.scheduler == "cosine":
            scheduler = WarmupCosine(optimizer, warmup=t.warmup_steps, total=t.max_steps)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        return optimizer
