"""Segment every image of a batch with a trained run: per image the same prediction `segtrain
predict` makes (size matching, test-time augmentation: :func:`segtrain.predict.infer.predict_matched`)
and the same post-processing `segtrain segment` applies (:mod:`segtrain.postprocess`), written
under the output rule (:mod:`segtrain.io.atomic`).

Per image, in the output folder: ``<key>_labels.tif`` (the labels, with how they were made in the
TIFF's attributes: run, checkpoint, segment settings, tta, zoom) and, written last, the done marker
``<key>.done.json`` (the image's summary row); ``<key>_objects.csv`` holds the image's objects
measured by :mod:`segtrain.measure` (area, shape, intensity; keyed by image and well). A rerun skips an image whose marker is there (its
files are not touched) and redoes the others; ``summary.csv`` (one row per image: file, well,
status, objects, area statistics, seconds) is rewritten at the end of every run.

:func:`segment_batch` is a generator of :class:`ImageResult` (one per image, with done / total and
the time left); an image that cannot be read or segmented is reported in one sentence and the
batch goes on; a ``stop`` event ends it between images.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segtrain.batch.inputs import BatchImage
from segtrain.errors import InputError, SegtrainError

#: the writer name on the labels a batch writes (a rerun replaces only such labels)
BATCH_OUTPUT = "segment-batch"
SUMMARY = "summary.csv"
COLUMNS = ("file", "position", "key", "well", "status", "objects", "area_mean", "area_median", "area_std",
           "coverage", "seconds", "labels", "message")


def labels_path(out: Path, image: BatchImage) -> Path:
    return out / f"{image.key}_labels.tif"


def marker_path(out: Path, image: BatchImage) -> Path:
    return out / f"{image.key}.done.json"


@dataclass
class ImageResult:
    """What became of one image: ``status`` ``done`` (segmented now), ``finished`` (done by an
    earlier run, skipped), ``failed`` (``message``: the one sentence why). ``done`` / ``total``:
    images handled so far; ``seconds_left``: the estimate for the rest (None until one was timed)."""

    image: BatchImage
    status: str
    row: dict
    done: int
    total: int
    seconds_left: float | None = None
    times: dict = field(default_factory=dict)  # predict / segment / write seconds

    @property
    def ok(self) -> bool:
        return self.status in ("done", "finished")

    @property
    def message(self) -> str:
        return self.row.get("message", "")


def _image_summary(labels: np.ndarray, raw: np.ndarray | None = None, voxel_size=None):
    """``(summary row values, per-object table)`` of an image's segmentation, measured by
    :mod:`segtrain.measure` (scikit-image regionprops; intensities of ``raw`` where it has the
    labels' shape, or is that with channels first: the first channel)."""
    from segtrain.measure import measure_objects, summarise

    labels = np.asarray(labels)
    if raw is not None and raw.shape != labels.shape:
        raw = raw[0] if raw.ndim == labels.ndim + 1 and raw.shape[1:] == labels.shape else None
    table = measure_objects(labels, raw, voxel_size if voxel_size and any(v != 1 for v in voxel_size) else None)
    stats = summarise(table, image_pixels=labels.size)

    def rounded(value, digits=3):
        return 0.0 if value is None else round(float(value), digits)

    return ({"objects": stats["count"], "area_mean": rounded(stats["size_mean_px"]),
             "area_median": rounded(stats["size_median_px"]), "area_std": rounded(stats["size_std_px"]),
             "coverage": rounded(stats["coverage"], 6)}, table)


def objects_path(out: Path, image: BatchImage) -> Path:
    return out / f"{image.key}_objects.csv"


def read_image(image: BatchImage) -> tuple[np.ndarray, tuple[float, ...]]:
    """The image's array (channels first) and spatial voxel size; one position of a stack."""
    from segtrain.io import read_volume

    volume = read_volume(image.path)
    data = np.asarray(volume.data.compute() if hasattr(volume.data, "compute") else volume.data)
    axes = tuple(volume.axes)
    if "c" in axes and axes.index("c") != 0:
        data = np.moveaxis(data, axes.index("c"), 0)
    spatial = tuple(volume.voxel_size)[-len([a for a in axes if a != "c"]):]
    if image.position is not None:
        data = data[image.position] if "c" not in axes else data[:, image.position]
        spatial = spatial[-2:]
    return data, spatial


def check_model(loaded) -> None:
    """Refuse, before any image, a run the batch cannot segment with its own settings."""
    from segtrain.tasks import task_of

    task = task_of(loaded.config.task)
    if task.agglomerates and loaded.config.segment.threshold is None:
        raise InputError(f"{loaded.describe()} has no merge threshold chosen on validation data; choose one with "
                         "`segtrain sweep` (or train with validation) before a batch, never a blind default.")
    if not task.agglomerates and not task.foreground:
        raise InputError(f"A batch segments objects, and this run predicts {task.name}; use a masks, instances or "
                         "affinities run.")


def segment_image(loaded, raw: np.ndarray, voxel_size, tta: int | None = None,
                  match_size: bool | None = None) -> tuple[np.ndarray, dict, dict]:
    """``(labels, attributes of how they were made, seconds per step)`` of one image with the run's
    settings: the prediction of `segtrain predict` and the post-processing of `segtrain segment`."""
    from segtrain.postprocess import OutputSpec, instances, segment_affinities
    from segtrain.predict.infer import predict_matched
    from segtrain.tasks import task_of

    config = loaded.config
    start = time.perf_counter()
    outputs, factors = predict_matched(loaded, raw, voxel_size=voxel_size, tta=tta, match_size=match_size)
    predicted = time.perf_counter()
    settings = config.segment
    spec = OutputSpec(config.task, config.ndim)
    if task_of(config.task).agglomerates:
        tree = segment_affinities(outputs["affinities"], settings, voxel_size=voxel_size, model_ndim=config.ndim)
        labels = tree.segmentation(settings.threshold) if tree.n_present else np.zeros(raw.shape[-config.ndim:],
                                                                                         np.uint32)
    else:
        labels = instances(outputs["probabilities"], settings, spec)
    segmented = time.perf_counter()
    used_tta = config.predict.tta if tta is None else tta
    zoom = None if all(f == 1.0 for f in factors) else [round(float(f), 4) for f in factors]
    record = loaded.record(tta=used_tta, object_scale=zoom)
    attrs = {"kind": "segmentation", **record.to_attrs()}
    return labels, attrs, {"predict": predicted - start, "segment": segmented - predicted}


def _write_json(path: Path, data: dict, overwrite: bool = False) -> None:
    from segtrain.io import atomic_path

    with atomic_path(path, overwrite=overwrite, fmt="json") as tmp:
        tmp.write_text(json.dumps(data, indent=1))


def _ours(path: Path) -> bool:
    """Whether ``path`` holds labels a batch wrote (only those are redone in place)."""
    from segtrain.io import read_volume

    try:
        return read_volume(path).attrs.get("segtrain_output") == BATCH_OUTPUT
    except Exception:  # noqa: BLE001 - unreadable (half-written by another program): not ours
        return False


def _check_marker(path: Path, image: BatchImage) -> None:
    """A done marker an earlier batch wrote for this image is replaced when the image is redone (it
    was interrupted, or its labels are missing); a file of that name it did not write never is."""
    if not path.exists():
        return
    try:
        row = json.loads(path.read_text())
        ours = isinstance(row, dict) and row.get("key") == image.key and set(COLUMNS[:5]) <= set(row)
    except (OSError, ValueError, UnicodeDecodeError):
        ours = False
    if not ours:
        raise InputError(f"{path} exists and was not written by a batch for {image.describe()}; move it away (it is "
                         "left as it is), then run the batch again.")


def _check_labels(path: Path) -> None:
    """Labels an earlier batch wrote are replaced when their image is redone; a file of that name
    it did not write never is."""
    if path.exists() and not _ours(path):
        raise InputError(f"{path} exists and was not written by a batch; move it away or choose another output "
                         "folder.")


def _write_labels(path: Path, labels: np.ndarray, voxel_size, attrs: dict) -> None:
    from segtrain.io import Volume, write_volume

    axes = ("z", "y", "x")[-labels.ndim:]
    volume = Volume(data=labels, voxel_size=tuple(voxel_size)[-labels.ndim:], offset=(0.0,) * labels.ndim,
                    axes=axes, name="segmentation", is_labels=True, attrs={**attrs, "segtrain_output": BATCH_OUTPUT})
    write_volume(path, volume, overwrite=True)


def finished_row(out: Path, image: BatchImage) -> dict | None:
    """The summary row of an image a run finished (its done marker and labels are there), else None."""
    marker, labels = marker_path(out, image), labels_path(out, image)
    if not (marker.is_file() and labels.is_file()):
        return None
    try:
        row = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    return row if isinstance(row, dict) and row.get("status") == "done" else None


def check_output_folder(out: str | Path, images: list[BatchImage]) -> Path:
    """The output folder: a folder (made if missing, in an existing parent) that is not an input."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file; give a folder for the batch's outputs.")
    if not out.parent.is_dir():
        raise InputError(f"Folder {out.parent} does not exist; create it first.")
    resolved = out.resolve()
    for image in images:
        if image.path.resolve() == resolved or image.path.resolve().parent == resolved:
            raise InputError(f"The output folder {out} holds the input images; choose another folder for the "
                             "outputs.")
    summary = out / SUMMARY
    if summary.exists():  # rewritten at every run: only a batch's own summary
        try:
            with open(summary, newline="") as handle:
                ours = next(csv.reader(handle), None) == list(COLUMNS)
        except (OSError, UnicodeDecodeError):
            ours = False
        if not ours:
            raise InputError(f"{summary} exists and is not a batch summary; choose another output folder (it is "
                             "left as it is).")
    return out


def wells_path(out: Path, image: BatchImage) -> Path:
    return out / f"{image.key}_wells.csv"


def _check_table(path: Path, labels: Path) -> None:
    """A rerun redoes an unfinished image: it replaces only the table it wrote for ``labels`` before."""
    from segtrain.measure import read_table

    if not path.exists():
        return
    try:
        made_here = read_table(path)[1].get("labels") == str(labels)
    except Exception:  # noqa: BLE001 - unreadable as a measurement table: not this batch's
        made_here = False
    if not made_here:
        raise InputError(f"{path} exists and was not written by this batch for {labels.name}; move it away "
                         "(it is left as it is), then run the batch again.")


def _write_objects(path: Path, table, image: BatchImage, labels: Path, attrs: dict) -> None:
    """``<key>_objects.csv`` (one row per object: segtrain.measure's columns) or ``<key>_wells.csv``
    (one row per well of a well grid) with the image's key and well, the header naming the labels,
    the image and how they were made."""
    from segtrain.measure import table_header, write_table

    table.insert(0, "image", image.key)
    if "well" not in table.columns:  # a well grid's table names its wells itself
        table.insert(1, "well", image.well or "")
    header = table_header(table, source=str(labels), raw=str(image.path), made_by=attrs)
    write_table(table, path, header, overwrite=True)


def _row(image: BatchImage, status: str, **values) -> dict:
    row = {"file": str(image.path), "position": "" if image.position is None else image.position, "key": image.key,
           "well": image.well or "", "status": status}
    row.update(values)
    return {k: row.get(k, "") for k in COLUMNS}


def _failure(image: BatchImage, error: BaseException) -> str:
    if isinstance(error, SegtrainError):
        text = str(error).strip()
        return text.splitlines()[0] if text else f"{image.describe()} could not be segmented."
    from segtrain.errors import os_error

    if isinstance(error, OSError) and os_error(error):
        return os_error(error)
    return f"{image.describe()} could not be segmented ({type(error).__name__}: {error}); it was skipped."


def segment_batch(loaded, images: list[BatchImage], out: str | Path, tta: int | None = None,
                  match_size: bool | None = None, stop: threading.Event | None = None,
                  progress: Callable[[int, int, float | None], None] | None = None,
                  well_grid: tuple[int, int] | None = None) -> Iterator[ImageResult]:
    """Segment ``images`` with ``loaded`` (a :class:`~segtrain.predict.LoadedModel`) into ``out``,
    yielding one :class:`ImageResult` per image (module docstring); ``summary.csv`` is written when
    the generator ends (all done, or ``stop`` set: the rest are ``pending``). ``well_grid`` (rows,
    columns): each image holds a grid of wells; its objects table gets each object's ``grid_well``
    and ``<key>_wells.csv`` one row per well (count, sizes, coverage)."""
    check_model(loaded)
    out = check_output_folder(out, images)
    out.mkdir(exist_ok=True)
    rows: dict[str, dict] = {}
    total, timed = len(images), []
    try:
        for n, image in enumerate(images, start=1):
            if stop is not None and stop.is_set():
                break
            row = finished_row(out, image)
            if row is not None:
                rows[image.key] = row
                result = ImageResult(image, "finished", row, n, total, _left(timed, total - n))
            else:
                result = _one(loaded, image, out, tta, match_size, n, total, well_grid)
                rows[image.key] = result.row
                if result.ok:
                    timed.append(float(result.row["seconds"]))
                result.seconds_left = _left(timed, total - n)
            if progress is not None:
                progress(n, total, result.seconds_left)
            yield result
    finally:
        write_summary(out, images, rows)


def _left(timed: list[float], remaining: int) -> float | None:
    return float(np.mean(timed)) * remaining if timed else (0.0 if remaining == 0 else None)


def _one(loaded, image: BatchImage, out: Path, tta, match_size, n: int, total: int,
         well_grid: tuple[int, int] | None = None) -> ImageResult:
    start = time.perf_counter()
    try:
        # before any work: nothing of the user's replaced, no work done for an image that cannot be written
        _check_marker(marker_path(out, image), image)
        path = labels_path(out, image)
        _check_labels(path)
        _check_table(objects_path(out, image), path)
        if well_grid is not None:
            _check_table(wells_path(out, image), path)
        raw, voxel_size = read_image(image)
        labels, attrs, times = segment_image(loaded, raw, voxel_size, tta, match_size)
        summary, table = _image_summary(labels, raw, voxel_size)
        wells = None
        if well_grid is not None:  # one image holding a grid of wells: each object's well, a row per well
            from segtrain.measure import grid_wells, per_well

            table.insert(1, "grid_well", grid_wells(table, labels.shape, well_grid))
            wells = per_well(table, labels.shape, well_grid)
        if summary["objects"] == 0:
            raise InputError(f"No objects found in {image.describe()}; check that it is the kind of image the run "
                             "was trained on (nothing was written for it).")
        written = time.perf_counter()
        attrs["source"] = str(image.path)
        if image.position is not None:
            attrs["position"] = image.position
        _write_labels(path, labels, voxel_size, attrs)
        _write_objects(objects_path(out, image), table, image, path, attrs)
        if wells is not None:
            _write_objects(wells_path(out, image), wells, image, path, attrs)
        times["write"] = time.perf_counter() - written
        seconds = round(time.perf_counter() - start, 3)
        row = _row(image, "done", **summary, seconds=seconds, labels=path.name)
        _write_json(marker_path(out, image), row, overwrite=True)  # last: the image is finished
        return ImageResult(image, "done", row, n, total, times=times)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as error:  # noqa: BLE001 - one image never stops the batch: one sentence, then the next
        return ImageResult(image, "failed", _row(image, "failed", message=_failure(image, error),
                                                 seconds=round(time.perf_counter() - start, 3)), n, total)


def write_summary(out: Path, images: list[BatchImage], rows: dict[str, dict]) -> Path:
    """``summary.csv``: one row per image in input order (finished ones from their markers, those
    not reached ``pending``), replaced whole (atomic) at each run."""
    from segtrain.io import atomic_path

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    for image in images:
        row = rows.get(image.key) or finished_row(out, image) or _row(image, "pending")
        writer.writerow(row)
    path = out / SUMMARY
    with atomic_path(path, overwrite=True, fmt="text") as tmp:
        tmp.write_text(buffer.getvalue())
    return path


def read_summary(out: str | Path) -> list[dict]:
    """The rows of a batch's ``summary.csv``."""
    with open(Path(out) / SUMMARY, newline="") as handle:
        return list(csv.DictReader(handle))


__all__ = ["ImageResult", "read_summary", "segment_batch", "segment_image", "write_summary"]
