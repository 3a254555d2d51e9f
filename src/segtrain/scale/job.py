"""A blockwise job: one folder holding its settings, outputs, graph, block tracking and logs.

    JOB/job.json          settings (inputs, block grid, contexts, segment settings, database)
    JOB/volumes.zarr      affinities (when predicted), fragments, segmentation_<threshold>
    JOB/graph.sqlite      the region graph (unless a PostgreSQL URL was given)
    JOB/faces/            each block's views of its neighbours' first planes (stitching, .npz)
    JOB/luts/             fragment -> segment tables per threshold (.npy, memory-mapped by workers)
    JOB/tracking/<task>   daisy's record of finished and failed blocks (what a re-run skips)
    JOB/logs/<task>       each worker's stdout/stderr
    JOB/input-error.txt   why the blocks of the last run stopped (NaN or infinity in the input), if they did

A job is created once and reopened by every later run; a re-run with other settings is refused
(its finished blocks would not fit them).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

from segtrain.errors import InputError
from segtrain.scale.geometry import BlockGrid, as_shape
from segtrain.scale.volumes import ArraySpec
from segtrain.config import ConfigError
from segtrain.config import segment_config
from segtrain.io.atomic import atomic_path

JOB_FILE = "job.json"
#: why the blocks stopped (an input that holds NaN or infinity): written by the first block that met
#: it (:func:`segtrain.scale.blocks.stop_at_bad_input`), removed when the job runs again
INPUT_ERROR_FILE = "input-error.txt"


FORMAT_VERSION = 3  # 2: edges carry statistics, the global step scores them; 3: face views, stitched edges

#: SegmentConfig fields the blockwise pipeline uses.
SEGMENT_KEYS = ("fragments", "boundary_threshold", "min_seed_distance", "min_size", "per_slice",
                "scoring")


@dataclass
class JobSettings:
    """Everything that decides what a block computes (saved as ``job.json``)."""

    shape: tuple[int, int, int]
    block_shape: tuple[int, int, int]
    context: tuple[int, int, int]
    voxel_size: tuple[float, ...]
    offset: tuple[float, ...]
    affinities: ArraySpec
    segment: dict
    max_threshold: float = 1.0
    db: str = ""
    raw: ArraySpec | None = None
    model: str | None = None
    predict_context: tuple[int, int, int] = (0, 0, 0)
    intensity: tuple[float, float] | None = None
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: dict) -> JobSettings:
        values = dict(values)
        for key in ("affinities", "raw"):
            if values.get(key) is not None:
                values[key] = ArraySpec(**values[key])
        for key in ("shape", "block_shape", "context", "predict_context", "voxel_size", "offset"):
            values[key] = tuple(values[key])
        if values.get("intensity") is not None:
            values["intensity"] = tuple(values["intensity"])
        return cls(**values)


@dataclass
class ScaleJob:
    """A job folder and its settings."""

    folder: Path
    settings: JobSettings
    _grid: BlockGrid | None = field(default=None, repr=False)

    @property
    def grid(self) -> BlockGrid:
        if self._grid is None:
            self._grid = BlockGrid(self.settings.shape, self.settings.block_shape)
        return self._grid

    @property
    def volumes(self) -> Path:
        return self.folder / "volumes.zarr"

    @property
    def fragments(self) -> ArraySpec:
        return ArraySpec(str(self.volumes), "fragments", "zarr")

    @property
    def db(self) -> str:
        return self.settings.db or str(self.folder / "graph.sqlite")

    @property
    def tracking(self) -> Path:
        return self.folder / "tracking"

    @property
    def logs(self) -> Path:
        return self.folder / "logs"

    def face_file(self, index: int) -> Path:
        """Block ``index``'s views of its neighbours' first planes (:mod:`segtrain.scale.stitch`)."""
        return self.folder / "faces" / f"{int(index)}.npz"

    @property
    def luts(self) -> Path:
        return self.folder / "luts"

    @property
    def block_steps(self) -> tuple[str, ...]:
        """The steps that run block by block on daisy, in order."""
        return (("predict",) if self.settings.raw is not None else ()) + ("fragments", "agglomerate")

    @property
    def steps(self) -> tuple[str, ...]:
        """The steps this job runs, in order: the block steps, then ``global`` (in the driver)."""
        return self.block_steps + ("global",)

    @classmethod
    def open(cls, folder: str | Path) -> ScaleJob:
        folder = Path(folder)
        file = folder / JOB_FILE
        if not file.is_file():
            raise InputError(f"{folder} is not a segtrain scale job folder (no {JOB_FILE}); "
                             "start one with `segtrain scale run`.")
        try:
            settings = JobSettings.from_dict(json.loads(file.read_text()))
        except (ValueError, TypeError, KeyError) as error:
            raise InputError(f"{file} is not a job file this version reads ({error}).") from None
        if settings.format_version != FORMAT_VERSION:
            raise InputError(f"Job folder {folder} was made by another version of segtrain (job format "
                             f"{settings.format_version}, this one reads {FORMAT_VERSION}); start a new "
                             "job folder.")
        return cls(folder, settings)

    @classmethod
    def create(cls, folder: str | Path, settings: JobSettings) -> ScaleJob:
        """Write ``job.json`` (or reopen the job when it holds the same settings)."""

        folder = Path(folder)
        file = folder / JOB_FILE
        if file.exists():
            job = cls.open(folder)
            old, new = job.settings.to_dict(), settings.to_dict()
            changed = [k for k in new if old.get(k) != new[k]]
            if changed:
                raise InputError(f"Job folder {folder} was made with other settings ({', '.join(changed)}); "
                                 "use a new folder, or delete this one to start over.")
            return job
        if not folder.parent.exists():
            raise InputError(f"Folder {folder.parent} does not exist; create it first.")
        folder.mkdir(exist_ok=True)
        with atomic_path(file) as tmp:
            tmp.write_text(json.dumps(settings.to_dict(), indent=2))
        return cls(folder, settings)


def input_error_file(job_dir: str | Path) -> Path:
    """``JOB/input-error.txt`` (:data:`INPUT_ERROR_FILE`) of a job folder."""
    return Path(job_dir) / INPUT_ERROR_FILE


@functools.lru_cache(maxsize=4)
def load_job(folder: str) -> ScaleJob:
    """The job of a folder, read once per worker process."""
    return ScaleJob.open(folder)


def check_segment_settings(segment: dict) -> dict:
    """The segment settings the pipeline uses, checked as a :class:`~segtrain.config.SegmentConfig`
    is (the one set of rules); InputError names what is wrong."""

    missing = [k for k in SEGMENT_KEYS if k not in segment]
    if missing:
        raise InputError(f"Segment settings lack {', '.join(missing)}.")
    try:
        settings = segment_config({k: segment[k] for k in SEGMENT_KEYS})
    except ConfigError as error:
        raise InputError(str(error)) from None
    return {k: getattr(settings, k) for k in SEGMENT_KEYS}


def grid_settings(shape, block_shape, context) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    shape = as_shape(shape, "volume shape")
    block_shape = as_shape(block_shape, "block shape")
    context = as_shape(context, "context", minimum=0)
    return shape, block_shape, context
