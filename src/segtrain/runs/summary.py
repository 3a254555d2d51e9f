"""One run's row of the runs table (:class:`RunSummary`)."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class RunSummary:
    name: str
    path: Path
    preset: str | None
    task: str | None
    steps: int
    best_metric_name: str | None
    best_metric: float | None
    created: str  # ISO 8601, UTC
    max_steps: int | None = None
    best_step: int | None = None
    checkpoints: list[str] = field(default_factory=list)
    last_metrics: dict[str, float] = field(default_factory=dict)
    size: int = 0  # bytes on disk
    parent: str | None = None
    model: str | None = None  # "smp Unet resnet18", "unet3d 8x2"
    lr: float | None = None
    batch_size: int | None = None
    patch: list[int] | None = None
    final_metric: float | None = None  # the monitored metric at the last validation
    class_metrics: dict[str, float] = field(default_factory=dict)  # iou_class<k>, f1_class<k> at the last validation
    data: str | None = None  # data seen, short: "2+1 sources 3f9a1c2d"
    status: str = "incomplete"  # one of STATUSES (RunFolder.progress)
    mode: str | None = None  # "min" or "max": which way the monitored metric (best, final) is better

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def _finite(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _is_class_metric(key: str) -> bool:
    return bool(re.fullmatch(r"val/\w+_class\d+", key))


def _model_text(model: dict) -> str | None:
    if model.get("architecture") == "smp":
        return f"smp {model.get('smp_architecture', 'Unet')} {model.get('encoder', '')}".strip()
    if model.get("architecture") == "unet3d":
        return f"unet3d {model.get('num_fmaps')}x{model.get('fmap_inc_factor')}"
    return model.get("architecture")


def _data_text(data: dict) -> str | None:
    if not data:
        return None
    return f"{len(data.get('train') or [])}+{len(data.get('val') or [])} sources {data.get('fingerprint', '')}".strip()
