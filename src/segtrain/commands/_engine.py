"""Helpers shared by the engine's commands (segment, sweep, evaluate, export)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segtrain.errors import InputError
from segtrain.tasks import AFFINITIES, PROBABILITIES, find_task, is_affinities, task_of_head


def log(message: str) -> None:
    """A progress line on stderr (stdout stays for results)."""
    print(message, file=sys.stderr, flush=True)


class Step:
    """``with Step("agglomerating"):`` prints the step and how long it took, on stderr."""

    def __init__(self, what: str):
        self.what = what

    def __enter__(self):
        self.start = time.perf_counter()
        log(f"{self.what} ...")
        return self

    def __exit__(self, kind, value, tb):
        if kind is None:
            log(f"{self.what}: done in {time.perf_counter() - self.start:.1f} s")
        return False


def tqdm_progress(desc: str):
    """A ``callable(done, total)`` that drives a tqdm bar on stderr."""
    from tqdm import tqdm

    bar = None

    def report(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=desc, file=sys.stderr, leave=False)
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return report


def read_array(path: str, dataset: str | None = None):
    """``(numpy array, Volume)`` of a file segtrain reads."""
    from segtrain.io import read_volume

    volume = read_volume(path, dataset)
    data = volume.data
    if not isinstance(data, np.ndarray):
        data = np.asarray(data.compute() if hasattr(data, "compute") else data)
    return data, volume


def read_affinities(path: str, dataset: str | None = None):
    """Affinities ``(C, z, y, x)`` or ``(C, y, x)`` and their Volume."""
    affs, volume = read_array(path, dataset)
    axes = tuple(volume.axes)
    if "c" in axes and axes.index("c") != 0:
        affs = np.moveaxis(affs, axes.index("c"), 0)
    return affs, volume


def spatial_geometry(volume) -> tuple[tuple[float, ...], tuple[float, ...], tuple[str, ...]]:
    axes = tuple(a for a in volume.axes if a != "c")
    return tuple(volume.voxel_size), tuple(volume.offset), axes


def write_labels(path: Path, data: np.ndarray, like, name: str, overwrite: bool,
                 attrs: dict | None = None, inputs=()) -> Path:
    from segtrain.io import Volume, write_volume

    voxel_size, offset, axes = spatial_geometry(like)
    if len(axes) != data.ndim:
        axes = ("z", "y", "x")[-data.ndim:]
    volume = Volume(data=data, voxel_size=voxel_size, offset=offset, axes=axes, name=name,
                    is_labels=True, attrs=dict(attrs or {}))
    return write_volume(path, volume, overwrite=overwrite, inputs=inputs)


MAX_THRESHOLDS = 10_000  #: steps of a start:stop:step sweep (0:1:1e-12 would never end)


def parse_thresholds(text: str | None):
    """``"0:1:0.02"`` (start:stop:step, stop included) or ``"0.1,0.2,0.5"``; None -> default."""
    if text is None:
        return None
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if len(parts) != 3 or parts[2] <= 0 or not all(np.isfinite(parts)):
                raise ValueError
            start, stop, step = parts
            n = int(np.floor((stop - start) / step + 1e-9))
            if n > MAX_THRESHOLDS:
                raise InputError(f"Thresholds {text!r} make {n + 1} values; give a step that makes at most "
                                 f"{MAX_THRESHOLDS + 1} (e.g. 0:1:0.001).")
            return [round(start + i * step, 10) for i in range(n + 1)]
        return [float(p) for p in text.split(",") if p.strip()]
    except InputError:
        raise
    except ValueError:
        raise InputError(
            f"Cannot read thresholds {text!r}; give start:stop:step (e.g. 0:1:0.02) or a "
            "comma-separated list."
        ) from None


def output_dir(path: str, overwrite: bool, outputs: tuple[str, ...] = (), inputs=()) -> Path:
    """The output folder ``path``, checked before any work and not created yet (:func:`make_dir`
    creates it when the first output is written, so a failure leaves nothing behind); with
    ``outputs`` (file names) and no ``overwrite``, one that exists already is refused now; an
    output that is (or holds, or with ``overwrite`` lies inside) one of ``inputs`` is refused
    (:func:`segtrain.io.write.check_not_input`)."""
    from segtrain.io.write import check_not_input

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder; choose a folder for the outputs.")
    if not out.parent.exists():
        raise InputError(f"Folder {out.parent} does not exist; create it first.")
    if not out.parent.is_dir():
        raise InputError(f"Cannot create the folder {out.name} in {out.parent}: it is a file; choose a folder.")
    for name in outputs:
        check_not_input(out / name, inputs, overwrite)
    existing = [name for name in outputs if (out / name).exists()] if not overwrite else []
    if existing:
        raise InputError(f"{out / existing[0]} already exists; choose another output folder or pass --overwrite.")
    return out


def make_dir(out: Path) -> Path:
    out.mkdir(exist_ok=True)
    return out


# --- predictions and the settings that segment them -------------------------------------------

#: command-line options that override segment settings: (option dest, SegmentConfig field)
SETTING_OPTIONS = (("fragments_method", "fragments"), ("boundary_threshold", "boundary_threshold"),
                   ("min_seed_distance", "min_seed_distance"), ("min_size", "min_size"),
                   ("per_slice", "per_slice"), ("scoring", "scoring"), ("threshold", "threshold"),
                   ("probability_threshold", "probability_threshold"), ("seed_boundary_max", "seed_boundary_max"),
                   ("seed_min_size", "seed_min_size"), ("instance_method", "instance_method"))


def add_setting_options(parser, probabilities: bool = True) -> None:
    """Options that override the segment settings a prediction (or ``--run``) carries; unset ones
    keep those (there is one set of defaults: :class:`segtrain.config.SegmentConfig`)."""
    import argparse

    from segtrain.commands._numbers import finite_float

    parser.add_argument("--run", metavar="RUN", help="take the segment settings of this run (default: the "
                        "ones `segtrain predict` recorded in the prediction, else the defaults)")
    group = parser.add_argument_group("segment settings (override the run's)")
    group.add_argument("--fragments-method", choices=["watershed", "waterz"], default=None,
                       help="seeded watershed on the distance transform, or waterz's own")
    group.add_argument("--boundary-threshold", type=finite_float, default=None)
    group.add_argument("--min-seed-distance", type=int, default=None)
    group.add_argument("--min-size", type=int, default=None, help="smallest fragment / object in voxels")
    group.add_argument("--per-slice", action=argparse.BooleanOptionalAction, default=None,
                       help="fragments slice by slice (anisotropic data)")
    group.add_argument("--scoring", default=None, help="mean or hist_quant_10 ... hist_quant_95")
    group.add_argument("--threshold", type=finite_float, default=None,
                       help="merge threshold (default: the one the run's validation chose; no blind default)")
    if probabilities:
        group.add_argument("--probability-threshold", type=finite_float, default=None)
        group.add_argument("--seed-boundary-max", type=finite_float, default=None)
        group.add_argument("--seed-min-size", type=int, default=None)
        group.add_argument("--instance-method", choices=["components", "watershed"], default=None)


@dataclass
class Prediction:
    """A prediction read from a file, with the settings that segment it and where they came from."""

    array: np.ndarray  # channels first
    volume: object  # the segtrain.io.Volume it came from
    kind: str  # affinities | probabilities
    settings: object  # SegmentConfig
    spec: object  # OutputSpec
    origin: str  # "the prediction", "run X", "the defaults"


def read_prediction(path: str, dataset: str | None, args) -> Prediction:
    """The affinities or probabilities in ``path`` (a `segtrain predict` output holds several
    arrays: the one the task needs is taken) and their segment settings: ``--run``'s, else those
    the prediction recorded, else the defaults; then the options given on the command line."""
    from segtrain.config import ConfigError, segment_config
    from segtrain.io import read_volumes
    from segtrain.postprocess import OutputSpec
    from segtrain.record import PredictionRecord
    from segtrain.runs import RunFolder

    volumes = read_volumes(path, dataset)
    if len(volumes) > 1:
        task = next((v.attrs.get("task") for v in volumes if v.attrs.get("task")), None)
        found = find_task(task)
        wanted = found.head if found is not None else PROBABILITIES
        chosen = [v for v in volumes if v.attrs.get("kind") == wanted] if task else []
        if len(chosen) != 1:
            names = ", ".join(v.dataset or v.name for v in volumes)
            raise InputError(f"{path} holds {len(volumes)} arrays ({names}) and says nothing of which to segment; "
                             "name it with --dataset (e.g. --dataset affinities).")
        volumes = chosen
    volume = volumes[0]
    attrs = volume.attrs
    array = np.asarray(volume.data.compute() if hasattr(volume.data, "compute") else volume.data)
    axes = tuple(volume.axes)
    if "c" in axes and axes.index("c") != 0:
        array = np.moveaxis(array, axes.index("c"), 0)
    # how the prediction was made (None: a file without a record, e.g. affinities made elsewhere)
    record = PredictionRecord.from_attrs(attrs, " ".join(filter(None, [str(path), volume.dataset])))
    task, ndim = (None, None) if record is None else (record.task, record.model_ndim)
    found = find_task(task)
    kind = attrs.get("kind") or (found.head if found is not None else AFFINITIES)
    try:
        if getattr(args, "run", None):
            folder = RunFolder(args.run)
            if not folder.is_run(folder.path):
                raise InputError(f"{args.run} is not a segtrain run folder (no config.yaml); give a run folder.")
            config = folder.model_config()
            settings, task, ndim, origin = config.segment, config.task, config.ndim, f"run {folder.name}"
        elif record is not None and record.settings is not None:
            settings, origin = record.settings, "the prediction"
        else:
            settings, origin = segment_config(), "the defaults"
        overridden = []
        for dest, name in SETTING_OPTIONS:
            value = getattr(args, dest, None)
            if value is not None:
                setattr(settings, name, value)
                overridden.append(name)
    except ConfigError as error:
        raise InputError(str(error)) from None
    if overridden:
        origin += f" with {', '.join(overridden)} from the command line"
    task = task or task_of_head(kind).name
    ndim = ndim or (array.ndim - 1 if is_affinities(kind) else array.ndim)
    return Prediction(array, volume, kind, settings, OutputSpec(task, min(max(int(ndim), 2), 3)), origin)
