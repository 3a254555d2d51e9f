"""Typed run configuration: data, model, train, segment and predict sections.

A :class:`Config` is loaded from and saved to YAML (:func:`load_config`, :func:`save_config`) and
validated on construction from a mapping (:func:`config_from_dict`): an unknown key, a value of the
wrong type or an impossible value raises :class:`~segtrain.errors.ConfigError` with one sentence
naming the key and the fix. :func:`preset` returns the named starting points (``em3d``,
``em3d_quick``, ``wells2d``, ``wells2d_quick``, ``isbi2d_quick``).

The sections are pydantic dataclasses (:func:`segtrain.typed.section`: ``validate_assignment``,
``extra="forbid"``): a field's type and bounds are its declaration (``lr: Float = field(5e-5, gt=0)``;
adding a setting is that one line), checked on construction, on every assignment and by
``dataclasses.replace``; the checks that relate several fields are the one model validator of
:class:`Config` (:func:`validate_config`). :func:`segtrain.typed.config_error` is the one place that
turns pydantic's errors into the one-sentence :class:`ConfigError`; :func:`field_bounds` tells a form
a field's range and choices.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import Field, PlainValidator, model_validator

from segtrain.errors import ConfigError
from segtrain.scoring import scoring_problem
from segtrain.tasks import LABEL_KINDS, REGISTRY, task_of
from segtrain.typed import (  # noqa: F401 - FieldBounds, config_error, field_bounds, from_mapping: for the front ends
    AtLeastOne,
    Confidence,
    Bool,
    FieldBounds,
    Float,
    Int,
    NonNegative,
    Positive,
    PositiveFloat,
    Says,
    Str,
    checked,
    config_error,
    field,
    field_bounds,
    from_mapping,
    invalid,
    section,
)

TASKS = REGISTRY.keys()  # the registered tasks' names (a live view: a task registered later is in it)
"""What a model predicts.

``affinities``: nearest-neighbour (and long-range) affinities, optionally with LSDs (MTLSD);
segmented by fragments + agglomeration. ``masks``: one foreground probability; instances by
connected components. ``instances``: foreground + boundary probabilities; instances by seeded
watershed. ``classes``: softmax over ``model.n_classes`` semantic classes.
"""

# ----------------------------------------------------------------------------------------------
# the config's own types


def _one_of_registry(value: Any) -> str:
    if not isinstance(value, str) or value not in REGISTRY:
        raise invalid(f"must be one of {', '.join(repr(a) for a in REGISTRY)}, not {value!r}.")
    return value


def _scoring(value: Any) -> str:  # the scoring table itself, not the names it held at import
    said = scoring_problem(value)
    if said:
        raise invalid(said)
    return value


TaskName = Annotated[str, PlainValidator(_one_of_registry)]  # a registered task (segtrain.tasks)
ScoringName = Annotated[str, PlainValidator(_scoring)]  # a name in segtrain.scoring.SCORING_TABLE


# ----------------------------------------------------------------------------------------------
# sections


@section
class SourceConfig:
    """One training or validation volume named by files (any format :mod:`segtrain.io` reads)."""

    _where: ClassVar[str] = "data source"

    raw: Str = ""
    labels: Str | None = None
    raw_dataset: Str | None = None
    labels_dataset: Str | None = None
    known: Str | None = None  # optional file with a mask of annotated voxels (non-zero = known)
    known_dataset: Str | None = None
    crop: list[list[Int]] | None = None  # per spatial axis [start, stop], e.g. [[0, 35], [0, 100]]
    weight: Float = 1.0  # mixing weight among the sources of the same split
    labels_kind: Literal[LABEL_KINDS] = "instances"  # mask: instances = connected components


@section
class AugmentConfig:
    _where: ClassVar[str] = "data.augment"

    flip: Bool = True
    rotate90: Bool = True  # in-plane (last two axes) 90-degree rotations / transposes
    intensity_scale: Float = field(0.1, ge=0)  # raw * U(1 - s, 1 + s)
    intensity_shift: Float = field(0.1, ge=0)  # raw + U(-s, s)
    gamma: Float = field(0.2, ge=0)  # raw ** U(1 - g, 1 + g)
    noise: Float = field(0.03, ge=0)  # Gaussian noise sigma (raw in [0, 1])
    blur: Float = field(0.0, ge=0)  # max Gaussian blur sigma (voxels), applied with probability 0.3
    missing_section: Float = field(0.0, ge=0, le=1)  # 3D only: probability of blanking one z-section of raw
    elastic: Float = field(0.0, ge=0)  # max in-plane elastic displacement (voxels); 0 = off
    elastic_spacing: Int = field(16, gt=0)  # voxels between the control points of the displacement field
    # in-plane zoom: objects scaled by a factor drawn log-uniformly from [1 / (1 + s), 1 + s] (a patch
    # of the patch shape / factor is drawn and resampled to the patch shape); 0 = off
    scale: Float = field(0.0, ge=0)
    probability: Float = field(0.8, ge=0, le=1)  # chance that intensity augmentations are applied to a sample
    # against domain shift (all off by default; see train/augment.py for how they differ from gunpowder's):
    section_wise: Bool = False  # 3D only: intensity scale, shift and gamma drawn per z-section (gunpowder z_section_wise)
    # 3D only: probability per patch that the sections from a random z on are shifted in-plane by one
    # random offset of at most max_shift voxels per axis (raw, labels, known mask and weights together)
    shifted_section: Float = field(0.0, ge=0, le=1)
    max_shift: Int = field(8, ge=0)
    # 3D only: probability per z-section of lowering its contrast to contrast_scale about its mean
    low_contrast_section: Float = field(0.0, ge=0, le=1)
    contrast_scale: Float = field(0.1, ge=0, le=1)
    # raw * (1 + g) with g a smooth in-plane linear + quadratic gradient, max |g| drawn in [0, illumination]
    illumination: Float = field(0.0, ge=0, lt=1)
    # halo-like (phase contrast) rims: raw + a * (raw - gaussian(raw, halo_sigma)), a drawn in [0, halo]
    halo: Float = field(0.0, ge=0)
    halo_sigma: Float = field(4.0, gt=0)  # in-plane, voxels


@section
class SyntheticConfig:
    """A synthetic training source mixed with the real ones (co-training): a generator of
    :mod:`segtrain.synthetic` (:data:`SYNTHETIC_GENERATORS`) and its parameters."""

    _where: ClassVar[str] = "data.synthetic entry"

    generator: Str = "well_image"  # well_image (2D) or em_volume (3D, or 2D with a 2-entry shape)
    params: dict[Str, Any] = field({})  # the generator's arguments, e.g. {shape: [128, 128]}
    weight: Float = 1.0  # mixing weight among the training sources (see data.synthetic_ratio)


@section
class DataConfig:
    _where: ClassVar[str] = "data"

    train: list[SourceConfig] = field([])
    val: list[SourceConfig] = field([])
    voxel_size: list[PositiveFloat] | None = None  # world units per voxel; None = from files or 1
    patch_shape: list[Positive] = field([32, 96, 96])
    min_annotated_fraction: Float = field(0.5, ge=0, le=1)  # of a training patch, else another patch is drawn
    ignore_label: Int | None = None  # label value treated as "not annotated"
    normalize: Literal["percentile", "dtype", "none"] = "percentile"
    in_channels: Int = field(1, gt=0)
    augment: AugmentConfig = field(AugmentConfig)
    val_patches: Int = field(8, gt=0)  # fixed validation patches for the validation loss
    val_max_voxels: Int = field(4_000_000, ge=0)  # whole-volume validation metrics only below this size
    # class-weighted patch sampling: training patches are centred on a voxel of a class drawn with
    # probability ~ frequency**0.5 ("inverse_sqrt": each voxel weighted by 1/sqrt(its class's
    # frequency)) or uniformly over the classes present ("inverse"); classes are the label values
    # for task classes, background / foreground otherwise; "none" = off
    class_sampling: Literal["none", "inverse_sqrt", "inverse"] = "none"
    # synthetic co-training: generated images with exact labels, mixed into the training patches
    synthetic: list[SyntheticConfig] = field([])
    # patches from synthetic sources per patch from real ones (2.0 = 2:1); the synthetic entries' weights
    # then share that part among themselves; None = every source mixed by its own weight
    synthetic_ratio: Float | None = field(None, ge=0)


@section
class ModelConfig:
    _where: ClassVar[str] = "model"

    task: TaskName = "affinities"  # a registered task (segtrain.tasks)
    architecture: Literal["unet3d", "smp"] = "unet3d"
    # affinities / LSD heads
    offsets: list[list[Int]] | None = None  # None = nearest neighbours of the data's dimension
    lsds: Bool = True
    lsd_sigma: Float = field(5.0, gt=0)  # world units
    lsd_downsample: Int = field(1, gt=0)
    # instances: width in pixels of the boundary target inside each object (1 = the object pixels
    # touching another label or background; 2 adds the next ring), so touching objects are parted
    boundary_width: Int = field(1, gt=0)
    n_classes: Int = 2  # for task "classes" (including background)
    # 3D U-Net
    num_fmaps: Int = field(12, gt=0)
    fmap_inc_factor: Int = field(5, gt=0)
    # per level and axis; isotropic by default, [[1, 2, 2], [1, 2, 2], [2, 2, 2]] for anisotropic EM
    # (levels where z is still coarser than y/x then convolve in-plane only)
    downsample_factors: list[list[AtLeastOne]] = field([[2, 2, 2], [2, 2, 2], [2, 2, 2]])
    kernel_size: Int = field(3, gt=0)
    batch_norm: Bool = False
    # networks trained side by side, each from its own initialisation on its own patches, their
    # probabilities averaged when predicting (a seed ensemble: training costs that many times
    # the time and memory; docs/training.md "Ensembles")
    ensemble: Int = field(1, gt=0, le=8)
    # 2D smp model
    smp_architecture: Str = "Unet"
    encoder: Str = "resnet18"
    encoder_weights: Str | None = None  # None, or a local weights file; names like "imagenet" need a download
    encoder_depth: Int = 5


STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_true")
"""Values of ``train.strategy`` (Lightning strategy names; every one runs one process per device)."""

PRECISIONS = ("auto", "32-true", "32", "16-mixed", "bf16-mixed", "64-true")


def _one_of(*allowed: str) -> typing.Callable[[Any], str | None]:
    def check(value):
        return None if value in allowed else f"must be one of {', '.join(allowed)}, not {value!r}."
    return check


def _focal_alpha_check(value) -> str | None:
    if isinstance(value, list):
        if not value or any(v < 0 for v in value) or not any(v > 0 for v in value):
            return f"must list non-negative weights per class, not all zero, not {value}."
        return None
    return None if 0 <= value <= 1 else f"must be between 0 and 1, not {value}."


def _devices_check(value) -> str | None:
    if isinstance(value, str):
        return None if value == "auto" else f"must be a number of devices (1 or more) or auto, not {value!r}."
    return None if value >= 1 else f"must be 1 or more (or auto), not {value}."


def _num_workers_check(value) -> str | None:
    if isinstance(value, str):
        return None if value == "auto" else f"must be a number of worker processes (0 or more) or auto, not {value!r}."
    return None if value >= 0 else f"must be 0 or more (or auto), not {value}."


@section
class TrainConfig:
    _where: ClassVar[str] = "train"

    max_steps: Int = field(100_000, gt=0)
    batch_size: Int = field(1, gt=0)
    lr: Float = field(5e-5, gt=0)
    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: Float = field(0.0, ge=0)
    scheduler: Literal["none", "plateau", "cosine"] = "plateau"
    warmup_steps: Int = field(0, ge=0)  # for "cosine"
    # fine-tuning (a run started from another run's weights: --init-from, the Train panel's Fine-tune):
    # it trains at lr * finetune_lr_scale with finetune_warmup_steps of warm-up (the run's config.yaml
    # holds the values used, with the scale consumed: 1.0)
    finetune_lr_scale: Float = field(0.1, gt=0)
    finetune_warmup_steps: Int = field(0, ge=0)
    plateau_patience: Int = field(5, ge=0)  # validation rounds without improvement before the LR drops
    plateau_factor: Float = field(0.5, gt=0, lt=1)
    val_every: Int = field(1000, gt=0)  # steps
    checkpoint_every: Int = field(5000, gt=0)  # steps between periodic checkpoints (step-N.ckpt; last.ckpt links the newest)
    keep_checkpoints: Int = field(2, ge=0)  # periodic checkpoints kept (the newest); best.ckpt and final.ckpt are always kept
    monitor: Str = "auto"  # validation metric that picks "best" and drives the schedule; auto = by task
    # validation rounds; None = off
    early_stopping_patience: Annotated[Int | None, Says("must be at least 1 (or null to turn it off)")] = field(None, ge=1)
    early_stopping_min_delta: Float = field(0.0, ge=0)  # smaller changes of the monitored metric are no improvement
    # an exponential moving average of the weights (Lightning's EMAWeightAveraging), updated after every
    # step from ema_start * max_steps on (the first update copies the weights): validation, every
    # checkpoint and so every prediction use the average; None = off (docs/training.md, "EMA during training")
    ema_decay: Annotated[Float | None, Says("must be above 0 and below 1 (or null to turn it off)")] = field(None, gt=0, lt=1)
    ema_start: Float = field(0.5, ge=0, lt=1)  # share of max_steps trained before the average starts
    seed: Int = 0
    precision: Annotated[Str, checked(_one_of(*PRECISIONS))] = "auto"  # auto = bf16/16-mixed on CUDA, 32-true on CPU
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    loss: Literal["auto", "mse", "bce", "focal", "dice", "focal_dice", "bce_dice", "ce", "ce_dice"] = "auto"
    pos_weight: Float = field(1.0, gt=0)  # positive-class weight for binary losses
    focal_gamma: Float = field(2.0, ge=0)
    # focal loss alpha: a number in [0, 1] weights foreground (background gets 1 - alpha); a list
    # weights each class (n_classes entries for task classes, [background, foreground] for masks and
    # instances); None = no alpha (pos_weight alone)
    focal_alpha: Annotated[Float | list[Float] | None, checked(_focal_alpha_check)] = None
    balance: Bool = True  # class-balance affinity MSE by the share of positive affinities
    lsd_weight: Float = field(1.0, ge=0)
    report_interval: Float = field(0.5, ge=0)  # seconds between progress reports (except validation/end)
    preview_every: Int = field(1, ge=1)  # validation rounds between image previews
    threads: Int | None = field(None, ge=1)  # torch CPU threads; None = torch default
    # DataLoader worker processes that sample, augment and make targets off the training step;
    # auto = min(4, cores - 1) when training on a GPU, 0 on the CPU; 0 = in the training process
    num_workers: Annotated[Int | Str, checked(_num_workers_check)] = "auto"
    # several devices / machines (Lightning DDP; see docs/training.md "Several GPUs or machines").
    # batch_size is per device: the effective batch is batch_size * devices * num_nodes.
    # processes (GPUs, or CPU processes) per machine; "auto" = all GPUs (1 on CPU)
    devices: Annotated[Int | Str, checked(_devices_check)] = 1
    # auto (ddp when devices * num_nodes > 1), ddp, ddp_find_unused_parameters_true
    strategy: Annotated[Str, checked(_one_of(*STRATEGIES))] = "auto"
    num_nodes: Int = field(1, ge=1)  # machines; the same command runs on each (SLURM/torchrun set the ranks)


@section
class SegmentConfig:
    _where: ClassVar[str] = "segment"

    fragments: Literal["watershed", "waterz"] = "watershed"
    boundary_threshold: Float = field(0.5, ge=0, le=1)
    min_seed_distance: Int = field(10, ge=0)
    min_size: Int = field(20, ge=0)
    per_slice: Bool = False
    scoring: ScoringName = "hist_quant_50"  # a name in segtrain.scoring.SCORING_TABLE
    thresholds: list[Float] | None = None  # sweep thresholds; None = the sweep's default
    # affinities: the merge threshold, chosen on validation data (the run's validation sweep at the
    # loaded checkpoint's step, or `segtrain tune`); None = not chosen yet (there is no blind default)
    threshold: Float | None = field(None, ge=0, le=1)
    probability_threshold: Float = field(0.5, ge=0, le=1)  # masks / instances: foreground where probability > this
    instance_method: Literal["components", "watershed"] = "watershed"
    # instances (foreground + boundary): seeds are foreground pixels whose boundary probability is
    # below seed_boundary_max; seeds smaller than seed_min_size pixels are dropped. `segtrain tune`
    # chooses these (and probability_threshold, min_size) on annotated images.
    seed_boundary_max: Float = field(0.5, ge=0, le=1)
    seed_min_size: Int = field(0, ge=0)
    # masks / instances: the median size (pixels) of the objects the model segments at the scale it was
    # trained and tuned at, measured on its own predictions by `segtrain tune`; None = unknown. On an
    # image whose objects are larger or smaller, min_size and seed_min_size scale with them, and
    # prediction can zoom the image to match (predict.match_object_size)
    object_size: Float | None = field(None, gt=0)


@section
class PredictConfig:
    _where: ClassVar[str] = "predict"

    tile_shape: list[Positive] | None = None  # None = the whole array when it is small, else model default
    margin: list[NonNegative] | None = None  # context per side at inner tile borders; None = model default
    batch_size: Int = field(1, gt=0)
    # test-time augmentation: average over the first tta of identity, the flips of each axis and their
    # combinations, then the same with y and x swapped (equal y/x voxel sizes): 1 (off), 2, 4, ... 2**(ndim+1)
    tta: Int = field(1, gt=0)
    # masks / instances of 2D models: estimate each image's object size with a first pass and predict
    # it zoomed so that its objects have the size the model was tuned at (segment.object_size), as
    # Cellpose rescales to its cell diameter; outputs come back on the image's own grid. Off by default:
    # on real held-out dishes with cells a third of the area it lowered instance F1 (0.56 -> 0.50, issue
    # 25), where it recovers synthetic zooms; a choice to make per data set (docs/training.md)
    match_object_size: Bool = False


_CONFIDENCE = Says("must be a confidence between 0.5 and 1 (or one per class)")


@section
class SelfTrainConfig:
    """Self-training: iteration 0 trains on the labelled data; each further iteration predicts the
    unlabelled images, keeps the confident pixels as pseudo-labels (the others carry no loss) and
    trains again on labelled + pseudo-labelled data (``segtrain selftrain``)."""

    _where: ClassVar[str] = "selftrain"

    iterations: Int = field(0, ge=0)  # self-training iterations after the supervised iteration 0; 0 = off
    unlabelled: list[Str] = field([])  # image files to pseudo-label
    # confidence a pixel's predicted class needs to become a pseudo-label: one number, or one per class
    # (masks/instances: [background, foreground]; classes: model.n_classes; affinities: [boundary, object]),
    # moved from threshold_start (iteration 1) to threshold_end (the last iteration) by the schedule
    threshold_start: Annotated[Confidence | Annotated[list[Confidence], Field(min_length=1)], _CONFIDENCE] = 0.95
    threshold_end: Annotated[Confidence | Annotated[list[Confidence], Field(min_length=1)], _CONFIDENCE] = 0.91
    schedule: Literal["linear", "constant"] = "linear"
    pseudo_weight: Float = field(0.5, ge=0, le=1)  # loss weight of a confident pseudo-labelled pixel (a labelled one has 1)
    pseudo_fraction: Float = field(0.5, gt=0, lt=1)  # share of training patches drawn from the pseudo-labelled images
    steps: Int | None = field(None, gt=0)  # training steps per iteration; None = train.max_steps
    from_previous: Bool = True  # each iteration starts from the previous one's weights (else from scratch)
    mean_teacher: Bool = False  # pseudo-labels from an exponential moving average of the weights
    ema_decay: Float = field(0.99, gt=0, lt=1)  # per training step, for mean_teacher


def plain_name_problem(value: str) -> str | None:
    """Why ``value`` cannot name a folder inside another one (a run name: ``../../x`` or
    ``/tmp/x`` would put the run folder outside the runs root), or None."""
    if not value.strip() or value.strip(".") == "" or "/" in value or "\\" in value or "\0" in value:
        return (f"must be a plain folder name (no '/', '\\' or '..'; the run folder goes inside the runs "
                f"folder), not {value!r}.")
    return None


@section
class Config:
    _where: ClassVar[str] = ""

    data: DataConfig = field(DataConfig)
    model: ModelConfig = field(ModelConfig)
    train: TrainConfig = field(TrainConfig)
    segment: SegmentConfig = field(SegmentConfig)
    predict: PredictConfig = field(PredictConfig)
    selftrain: SelfTrainConfig = field(SelfTrainConfig)
    name: Annotated[Str, checked(plain_name_problem)] = "run"
    preset: Str | None = None

    @model_validator(mode="after")
    def _possible_together(self) -> Config:
        """The checks across fields and sections (:func:`validate_config`)."""
        _check_across(self)
        return self

    @property
    def task(self) -> str:
        return self.model.task

    @property
    def ndim(self) -> int:
        """Spatial dimensions of the model's input (from ``data.patch_shape``)."""
        return len(self.data.patch_shape)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def copy(self) -> Config:
        return copy.deepcopy(self)

    def validate(self) -> Config:
        """Check values that are each well-typed but impossible together; returns self."""
        validate_config(self)
        return self



# ----------------------------------------------------------------------------------------------
# conversion from a mapping


def config_from_dict(values: dict, base: Config | None = None) -> Config:
    """Build and validate a :class:`Config` from a mapping.

    With ``base`` (or a ``preset`` key naming one), the mapping overrides only the settings it
    names; otherwise unnamed settings take their defaults.
    """
    if not isinstance(values, dict):
        raise ConfigError("A configuration must be a mapping of sections (data, model, train, segment).")
    values = copy.deepcopy(values)
    if base is None and values.get("preset"):
        base = preset(values["preset"])
    merged = _merge(base.to_dict(), values) if base is not None else values
    return from_mapping(Config, merged)


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            out[key] = _merge(base[key], value)
        else:
            out[key] = value
    return out


def segment_config(values: dict | None = None, where: str = "segment") -> SegmentConfig:
    """A :class:`SegmentConfig` from a mapping (e.g. a prediction's attributes): the defaults for
    the settings it does not name; an unknown key or a bad value raises :class:`ConfigError`."""
    if values is None:
        return SegmentConfig()
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping of segment settings, not {values!r}.")
    return from_mapping(SegmentConfig, values, where)


def update_section(config: Config, section: str, values: dict) -> Config:
    """Set ``config.<section>.<key> = value`` for each item (converted and checked like a config
    file's values), then check the whole config; raises :class:`ConfigError` with one sentence."""
    target = getattr(config, section)
    names = [f.name for f in dataclasses.fields(target)]
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"Unknown setting {section}.{key}; valid settings in {section} are: {', '.join(names)}.")
        setattr(target, key, value)
    return validate_config(config)


def validate_config(config: Config) -> Config:
    """Raise :class:`ConfigError` for impossible values; return the config unchanged. Every field is
    checked again (a list changed in place too), then the rules across fields (the model validator)."""
    from_mapping(Config, config.to_dict())
    return config


def _check_across(config: Config) -> None:
    """The rules that relate several fields or sections (Config's model validator)."""
    d, m = config.data, config.model
    ndim = len(d.patch_shape)
    if ndim not in (2, 3):
        raise ConfigError(f"data.patch_shape must have 2 or 3 entries (2D or 3D), not {d.patch_shape}.")
    if d.voxel_size is not None and len(d.voxel_size) != ndim:
        raise ConfigError(
            f"data.voxel_size has {len(d.voxel_size)} entries but data.patch_shape has {ndim}; give one per axis."
        )
    for split in ("train", "val"):
        for i, src in enumerate(getattr(d, split)):
            if not src.raw:
                raise ConfigError(f"data.{split}[{i}].raw is empty; name the image file of this source.")
            if src.weight < 0:
                raise ConfigError(f"data.{split}[{i}].weight must not be negative, not {src.weight}.")
            if src.crop is not None and any(len(c) != 2 or c[0] >= c[1] for c in src.crop):
                raise ConfigError(
                    f"data.{split}[{i}].crop must list [start, stop] with start < stop per axis, not {src.crop}."
                )
    if m.architecture == "unet3d":
        if ndim != 3:
            raise ConfigError(
                "model.architecture unet3d needs a 3D data.patch_shape; use architecture smp for 2D data."
            )
        for i, f in enumerate(m.downsample_factors):
            if len(f) != ndim or any(x < 1 for x in f):
                raise ConfigError(
                    f"model.downsample_factors[{i}] must have {ndim} entries >= 1, not {f}."
                )
        div = divisor(config)
        for axis, (p, q) in enumerate(zip(d.patch_shape, div)):
            if p % q:
                raise ConfigError(
                    f"data.patch_shape {d.patch_shape} must be divisible by the total downsampling {div} "
                    f"(axis {axis}); use a multiple of {q}."
                )
    else:
        if ndim != 2:
            raise ConfigError("model.architecture smp builds 2D models; set data.patch_shape to 2 entries.")
        if not 1 <= m.encoder_depth <= 5:
            raise ConfigError(f"model.encoder_depth must be between 1 and 5, not {m.encoder_depth}.")
        q = 2**m.encoder_depth
        if any(p % q for p in d.patch_shape):
            raise ConfigError(
                f"data.patch_shape {d.patch_shape} must be divisible by {q} for an encoder of depth {m.encoder_depth}."
            )
    if m.offsets is not None:
        for o in m.offsets:
            if len(o) != ndim or not any(o):
                raise ConfigError(f"model.offsets entry {o} must have {ndim} entries, not all zero.")
    task = task_of(m)
    if task.semantic and m.n_classes < 2:
        raise ConfigError(f"model.n_classes must be at least 2 for task classes, not {m.n_classes}.")
    loss = resolved_loss(config)
    allowed = task.losses
    if loss not in allowed:
        raise ConfigError(f"train.loss {loss!r} does not fit task {m.task}; use one of {', '.join(sorted(allowed))}.")
    alpha = config.train.focal_alpha
    if alpha is not None:
        if "focal" not in loss:
            raise ConfigError(f"train.focal_alpha weights focal losses only, but train.loss is {loss!r}; "
                              "set train.loss to focal or focal_dice, or focal_alpha to null.")
        want = task.n_pixel_classes(m.n_classes)
        if isinstance(alpha, list) and len(alpha) != want:
            what = f"model.n_classes ({want})" if task.semantic else "2 (background, foreground)"
            raise ConfigError(f"train.focal_alpha lists {len(alpha)} weights; give one per class: {what}.")
    _validate_synthetic(config)
    _validate_selftrain(config)
    p = config.predict
    for name in ("tile_shape", "margin"):
        v = getattr(p, name)
        if v is not None and len(v) != ndim:
            raise ConfigError(f"predict.{name} must have {ndim} entries like data.patch_shape, not {v}.")
    tta_counts = [2**k for k in range(ndim + 1 + (d.voxel_size is None or d.voxel_size[-1] == d.voxel_size[-2]))]
    if p.tta not in tta_counts:
        raise ConfigError(f"predict.tta must be one of {', '.join(map(str, tta_counts))} (transforms averaged, 1 = off), "
                          f"not {p.tta}.")
    monitor_metric(config)  # raises for an unknown metric


def _validate_synthetic(config: Config) -> None:
    """Synthetic sources name a known generator, its own parameters and the model's dimensions."""
    if not config.data.synthetic:
        return
    import inspect

    from segtrain.synthetic import GENERATOR_NDIM, GENERATORS

    ndim = len(config.data.patch_shape)
    for i, entry in enumerate(config.data.synthetic):
        where = f"data.synthetic[{i}]"
        if entry.generator not in GENERATORS:
            raise ConfigError(f"{where}.generator {entry.generator!r} is not a synthetic generator; "
                              f"use one of {', '.join(GENERATORS)}.")
        accepted = [n for n in inspect.signature(GENERATORS[entry.generator]).parameters if n != "seed"]
        unknown = [k for k in entry.params if k not in accepted]
        if unknown:
            raise ConfigError(f"{where}.params names {', '.join(unknown)}, which {entry.generator} does not take; "
                              f"its parameters are: {', '.join(accepted)}.")
        if entry.weight < 0:
            raise ConfigError(f"{where}.weight must not be negative, not {entry.weight}.")
        shape = entry.params.get("shape")
        made = len(shape) if isinstance(shape, (list, tuple)) else GENERATOR_NDIM[entry.generator]
        if made != ndim:
            raise ConfigError(f"{where} makes {made}D images but data.patch_shape is {ndim}D; "
                              f"use a {ndim}D generator or give params.shape {ndim} entries.")
        if isinstance(shape, (list, tuple)) and any(not isinstance(v, int) or v < p
                                                     for v, p in zip(shape, config.data.patch_shape)):
            raise ConfigError(f"{where}.params.shape {list(shape)} must be whole numbers at least data.patch_shape "
                              f"{config.data.patch_shape}.")


def selftrain_classes(config: Config) -> int:
    """Classes a self-training threshold list has one entry for: model.n_classes for task classes,
    else 2 (background / foreground, or boundary / object for affinities)."""
    return task_of(config).n_pixel_classes(config.model.n_classes)


def _validate_selftrain(config: Config) -> None:
    s = config.selftrain
    n = selftrain_classes(config)
    for name in ("threshold_start", "threshold_end"):
        value = getattr(s, name)
        if isinstance(value, list) and len(value) != n:
            raise ConfigError(f"selftrain.{name} lists {len(value)} thresholds; give one number or one per class ({n}).")
    if s.iterations and (config.train.devices not in (1, "auto") or config.train.num_nodes > 1):
        raise ConfigError("Self-training runs on one device; set train.devices and train.num_nodes to 1.")


def divisor(config: Config) -> tuple[int, ...]:
    """Per-axis factor every model input size must be a multiple of."""
    m = config.model
    ndim = len(config.data.patch_shape)
    if m.architecture == "unet3d":
        out = [1] * ndim
        for f in m.downsample_factors:
            out = [a * b for a, b in zip(out, f)]
        return tuple(out)
    return (2**m.encoder_depth,) * ndim


def resolved_loss(config: Config) -> str:
    if config.train.loss != "auto":
        return config.train.loss
    return task_of(config.model).default_loss


METRIC_MODES = {"val/loss": "min", "val/voi": "min", "val/voi_split": "min", "val/voi_merge": "min",
                "val/arand": "min", "val/dice": "max", "val/iou": "max", "val/f1": "max",
                "val/precision": "max", "val/recall": "max"}


def monitor_metric(config: Config) -> tuple[str, str]:
    """``(metric name, "min" | "max")`` that selects the best checkpoint and drives LR/early stop."""
    name = config.train.monitor
    if name == "auto":
        return task_of(config.model).monitor
    if not name.startswith("val/"):
        name = "val/" + name
    if name not in METRIC_MODES:
        valid = ", ".join(m[4:] for m in METRIC_MODES)
        raise ConfigError(f"Unknown train.monitor {config.train.monitor!r}; valid metrics are: auto, {valid}.")
    return name, METRIC_MODES[name]


# ----------------------------------------------------------------------------------------------
# YAML


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config; relative data paths are resolved against its folder."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"Config file {path} does not exist; check the path.")
    if not path.is_file():
        raise ConfigError(f"Config file {path} is a folder, not a file; give the YAML file.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"Config file {path} is not UTF-8 text (byte {error.start} cannot be read); save it as "
                          "UTF-8 (plain text) YAML.") from None
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"Config file {path} is not valid YAML{where}; fix its syntax.") from None
    config = config_from_dict(values)
    for src in [*config.data.train, *config.data.val]:
        for attr in ("raw", "labels", "known"):
            value = getattr(src, attr)
            if value and not Path(value).is_absolute():
                setattr(src, attr, str((path.parent / value).resolve()))
    config.selftrain.unlabelled = [v if Path(v).is_absolute() else str((path.parent / v).resolve())
                                   for v in config.selftrain.unlabelled]
    return config


def save_config(config: Config, path: str | Path) -> Path:
    """Write the full config (every setting, defaults included) as YAML, atomically."""
    from segtrain.io.atomic import atomic_path

    path = Path(path)
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return path


# ----------------------------------------------------------------------------------------------
# presets


def _em3d() -> Config:
    return Config(
        name="em3d",
        preset="em3d",
        data=DataConfig(
            patch_shape=[48, 128, 128],
            augment=AugmentConfig(blur=1.0, missing_section=0.05, elastic=2.0),
            min_annotated_fraction=0.5,
        ),
        model=ModelConfig(
            task="affinities", architecture="unet3d", lsds=True, lsd_sigma=5.0, num_fmaps=12,
            fmap_inc_factor=5, downsample_factors=[[2, 2, 2], [2, 2, 2], [2, 2, 2]],
        ),
        train=TrainConfig(max_steps=100_000, batch_size=1, lr=5e-5, val_every=1000,
                          checkpoint_every=5000, early_stopping_patience=20, scheduler="plateau",
                          plateau_patience=8),
        # waterz's own initial watershed beat the distance-transform seeds on em3d-fibsem
        # (VOI 0.68 vs 0.92 for the same em3d_quick network; see docs/training.md)
        segment=SegmentConfig(fragments="waterz", scoring="hist_quant_50", min_seed_distance=10),
        # test-time augmentation over the 8 flips: on em3d-fibsem's validation slab VOI 1.03 -> 0.35 for
        # the final em3d_quick checkpoint and 0.48 -> 0.31 for the best (docs/training.md), at 8x the time
        predict=PredictConfig(tile_shape=[64, 384, 384], margin=[16, 16, 16], tta=8),
    )


def _em3d_quick() -> Config:
    c = _em3d()
    c.name = c.preset = "em3d_quick"
    c.data.patch_shape = [24, 64, 64]
    c.data.augment.blur = 0.5
    c.model.num_fmaps = 8
    c.model.fmap_inc_factor = 2
    c.model.downsample_factors = [[2, 2, 2], [2, 2, 2]]
    c.model.lsd_sigma = 3.0
    c.train = TrainConfig(max_steps=3000, batch_size=2, lr=1e-3, optimizer="adamw", scheduler="cosine",
                          warmup_steps=100, val_every=250, checkpoint_every=1000,
                          early_stopping_patience=None)
    c.segment.min_seed_distance = 5
    c.segment.min_size = 10
    c.predict = PredictConfig(tile_shape=[64, 512, 512], margin=[8, 16, 16], tta=8)
    return c


def _wells2d() -> Config:
    return Config(
        name="wells2d",
        preset="wells2d",
        data=DataConfig(patch_shape=[256, 256], min_annotated_fraction=0.5,
                        augment=AugmentConfig(blur=1.0)),
        # a boundary 2 pixels wide inside each cell: instance F1 0.86 -> 0.93 on held-out cells2d-phase
        # sets (1,200 steps, settings tuned on the other sets; docs/training.md)
        model=ModelConfig(task="instances", architecture="smp", smp_architecture="Unet",
                          encoder="resnet18", encoder_weights=None, encoder_depth=5, lsds=False,
                          boundary_width=2),
        train=TrainConfig(max_steps=20_000, batch_size=8, lr=3e-4, optimizer="adamw", scheduler="plateau",
                          val_every=500, checkpoint_every=2000, early_stopping_patience=20,
                          plateau_patience=5, pos_weight=1.0),
        segment=SegmentConfig(probability_threshold=0.5, instance_method="watershed", min_size=30),
        predict=PredictConfig(tile_shape=[1088, 1088], margin=[32, 32]),
    )


def _wells2d_quick() -> Config:
    c = _wells2d()
    c.name = c.preset = "wells2d_quick"
    c.data.patch_shape = [192, 192]
    c.train = TrainConfig(max_steps=1500, batch_size=4, lr=1e-3, optimizer="adamw", scheduler="cosine",
                          warmup_steps=50, val_every=250, checkpoint_every=500, early_stopping_patience=None)
    return c


def _isbi2d_quick() -> Config:
    """2D EM membranes (ISBI 2012): smp U-Net predicting 2D affinities, agglomerated like 3D."""
    c = _wells2d_quick()
    c.name = c.preset = "isbi2d_quick"
    c.model.task = "affinities"
    c.model.lsds = True
    c.model.lsd_sigma = 6.0
    # waterz's own fragments: VOI 0.52 against 1.09 for distance-transform seeds on ISBI validation
    # slices with the same 400-step network (docs/training.md)
    c.segment = SegmentConfig(fragments="waterz", scoring="hist_quant_50", min_seed_distance=5, min_size=10)
    c.predict = PredictConfig(tile_shape=[576, 576], margin=[32, 32])
    return c


PRESETS = {
    "em3d": _em3d,
    "em3d_quick": _em3d_quick,
    "wells2d": _wells2d,
    "wells2d_quick": _wells2d_quick,
    "isbi2d_quick": _isbi2d_quick,
}


def preset(name: str) -> Config:
    """A fresh copy of a named preset config."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ConfigError(f"Unknown preset {name!r}; valid presets are: {', '.join(PRESETS)}.")
    return validate_config(PRESETS[name]())
