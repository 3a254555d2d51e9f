"""The sentences the config gives for bad values, recorded from the hand-written checks before the
port to pydantic (``config_messages.json``): every field of every section is given a spread of values
(wrong types, negatives, zero, fractions, NaN, infinity, lists, mappings) on loading, on assignment
and through the other entry points; the result is the value stored or the one sentence raised.

Regenerate (only when a message is meant to change): ``python tests/config/config_messages.py``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

GOLDEN = Path(__file__).with_name("config_messages.json")

VALUES = ["x", True, None, -1, 0, 1, 2.0, 1.5, 0.5, -0.5, float("nan"), float("inf"), 10**9, [], [1], [0, 1],
          [-1, 2, 3], [2, 2, 2], [16, 32, 32], [[0, 1]], [[1, 2, 2]], [1.5, "a"], {"a": 1}, (1, 2), "auto",
          "a/b", "", "32-true", "ddp", "hist_quant_75", "median", "adamw", "instances"]

SECTIONS = {"data": "DataConfig", "data.augment": "AugmentConfig", "model": "ModelConfig", "train": "TrainConfig",
            "segment": "SegmentConfig", "predict": "PredictConfig", "selftrain": "SelfTrainConfig",
            "data.train[0]": "SourceConfig", "data.synthetic[0]": "SyntheticConfig"}


def _nest(path: str, key: str, value) -> dict:
    """A config mapping that sets ``path.key`` (data.train[0] and data.synthetic[0] as one-entry lists)."""
    leaf = {key: value}
    if path == "data.train[0]":
        return {"data": {"train": [{"raw": "a.h5", **leaf}]}}
    if path == "data.synthetic[0]":
        return {"data": {"patch_shape": [64, 64], "synthetic": [{**leaf}]},
                "model": {"architecture": "smp", "task": "masks", "lsds": False}}
    out = leaf
    for part in reversed(path.split(".")):
        out = {part: out}
    return out


def _get(config, path: str, key: str):
    obj = config
    for part in path.replace("[0]", ".0").split("."):
        obj = obj[0] if part == "0" else getattr(obj, part)
    return getattr(obj, key)


def _outcome(call) -> str:
    from segtrain.errors import ConfigError, InputError

    try:
        value = call()
    except (ConfigError, InputError) as error:
        return f"error: {error}"
    except Exception as error:  # noqa: BLE001 - recorded: a crash is an outcome too
        return f"crash: {type(error).__name__}"
    return f"ok: {value!r} {type(value).__name__}"


def _assign(section, key: str, value):
    setattr(section, key, value)
    return getattr(section, key)


def _record(record, key: str):
    return None if record is None else getattr(record, key)


def _fields(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def outcomes() -> dict[str, str | list[str]]:
    import segtrain.config as C
    from segtrain.record import PredictionRecord

    out = {}
    for path, cls_name in SECTIONS.items():
        cls = getattr(C, cls_name)
        for key in _fields(cls):
            out[f"load {path}.{key}"] = [_outcome(lambda: _get(C.config_from_dict(_nest(path, key, v)), path, key))
                                         for v in VALUES]
            out[f"assign {cls_name}.{key}"] = [_outcome(lambda: _assign(cls(), key, v)) for v in VALUES]
    for key in ("name", "preset"):
        out[f"load {key}"] = [_outcome(lambda: getattr(C.config_from_dict({key: v}), key)) for v in VALUES]
    out["load section"] = [_outcome(lambda: C.config_from_dict({"train": v}).train) for v in VALUES]
    out["load whole"] = [_outcome(lambda: C.config_from_dict(v).name) for v in VALUES]
    out["segment_config"] = [_outcome(lambda: C.segment_config(v, "the layer's settings")) for v in VALUES]
    out["segment_config min_size"] = [_outcome(lambda: C.segment_config({"min_size": v}, "the layer's settings")
                                               .min_size) for v in VALUES]
    out["update_section lr"] = [_outcome(lambda: C.update_section(C.Config(), "train", {"lr": v}).train.lr)
                                for v in VALUES]
    for key in ("task", "model_ndim", "settings", "step", "tta", "object_scale", "run"):
        out[f"record {key}"] = [_outcome(lambda: _record(PredictionRecord.from_attrs({key: v}, "the file"), key))
                                for v in VALUES]
    for name, values in {
        "unknown top": {"trian": {}}, "unknown top far": {"zzz": 1},
        "unknown section key": {"train": {"max_step": 3}}, "unknown augment": {"data": {"augment": {"flp": True}}},
        "unknown source": {"data": {"train": [{"raw": "a", "lables": "b"}]}},
        "unknown synthetic": {"data": {"synthetic": [{"generater": "well_image"}]}},
        "unknown segment_config": None,
        "update unknown": None,
        "train entry not mapping": {"data": {"train": ["a.h5"]}},
        "train not list": {"data": {"train": "a.h5"}},
        "params not mapping": {"data": {"synthetic": [{"params": [1]}]}},
        "patch 4d": {"data": {"patch_shape": [8, 8, 8, 8]}},
        "voxel entries": {"data": {"voxel_size": [1, 1]}},
        "raw empty": {"data": {"train": [{"raw": ""}]}},
        "weight negative": {"data": {"val": [{"raw": "a", "weight": -1}]}},
        "crop bad": {"data": {"train": [{"raw": "a", "crop": [[5, 1], [0, 2], [0, 2]]}]}},
        "crop short": {"data": {"train": [{"raw": "a", "crop": [[5], [0, 2], [0, 2]]}]}},
        "unet 2d": {"data": {"patch_shape": [64, 64]}},
        "downsample entries": {"model": {"downsample_factors": [[2, 2]]}},
        "downsample zero": {"model": {"downsample_factors": [[0, 2, 2]]}},
        "not divisible": {"data": {"patch_shape": [30, 96, 96]}},
        "smp 3d": {"model": {"architecture": "smp"}},
        "smp depth": {"data": {"patch_shape": [64, 64]}, "model": {"architecture": "smp", "encoder_depth": 6}},
        "smp depth 0": {"data": {"patch_shape": [64, 64]}, "model": {"architecture": "smp", "encoder_depth": 0}},
        "smp divisible": {"data": {"patch_shape": [60, 64]}, "model": {"architecture": "smp"}},
        "offsets": {"model": {"offsets": [[0, 0, 0]]}},
        "offsets dims": {"model": {"offsets": [[1, 0]]}},
        "classes 1": {"model": {"task": "classes", "n_classes": 1}},
        "loss": {"train": {"loss": "ce"}},
        "alpha no focal": {"train": {"focal_alpha": 0.5}},
        "alpha list": {"model": {"task": "masks", "lsds": False}, "train": {"loss": "focal", "focal_alpha": [1, 2, 3]}},
        "alpha classes": {"model": {"task": "classes", "n_classes": 3}, "train": {"loss": "focal", "focal_alpha": [1]}},
        "synthetic gen": {"data": {"synthetic": [{"generator": "nope"}]}},
        "synthetic params": {"data": {"synthetic": [{"generator": "em_volume", "params": {"zz": 1}}]}},
        "synthetic weight": {"data": {"synthetic": [{"generator": "em_volume", "weight": -1}]}},
        "synthetic ndim": {"data": {"synthetic": [{"generator": "well_image"}]}},
        "synthetic shape": {"data": {"synthetic": [{"generator": "em_volume", "params": {"shape": [8, 8, 8]}}]}},
        "selftrain list": {"selftrain": {"threshold_start": [0.9, 0.9, 0.9]}},
        "selftrain ddp": {"selftrain": {"iterations": 1}, "train": {"devices": 2}},
        "tile dims": {"predict": {"tile_shape": [64, 64]}},
        "margin dims": {"predict": {"margin": [8]}},
        "tta 3": {"predict": {"tta": 3}},
        "tta 16": {"predict": {"tta": 16}},
        "tta 16 aniso": {"predict": {"tta": 16}, "data": {"voxel_size": [1, 1, 2]}},
        "monitor": {"train": {"monitor": "accuracy"}},
        "monitor ok": {"train": {"monitor": "voi"}},
        "preset override": {"preset": "wells2d", "model": {"architecture": "unet3d"}},
    }.items():
        if name == "unknown segment_config":
            out[name] = _outcome(lambda: C.segment_config({"scorng": "mean"}, "the layer's settings"))
        elif name == "update unknown":
            out[name] = _outcome(lambda: C.update_section(C.Config(), "train", {"lrr": 1}))
        else:
            out[name] = _outcome(lambda: C.config_from_dict(values).name)
    for name in C.PRESETS:
        out[f"preset {name}"] = repr(C.preset(name).to_dict())
    return out


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(outcomes(), indent=0, sort_keys=True, ensure_ascii=False) + "\n")
    print(f"wrote {GOLDEN}")
