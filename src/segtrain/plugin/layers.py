"""Qt-free glue between napari layers and the core: layer <-> Volume, annotation conventions, the
per-viewer session the dock widgets share, and lazy label arrays for the live threshold slider.

The annotation layer convention (0 unknown, objects, ``BACKGROUND_LABEL``, ``IGNORE_LABEL``) is
:mod:`segtrain.annotation`'s; the "Data & annotation" widget creates such a layer.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from psygnal import Signal

from segtrain.annotation import (  # noqa: F401 - the panels use them from here
    BACKGROUND_LABEL,
    IGNORE_LABEL,
    annotated_count,
    training_arrays,
)
from segtrain.config import segment_config  # noqa: F401 - also for the panels
from segtrain.io import Volume
from segtrain.io.volume import DEFAULT_AXES, jsonable
from segtrain.runs import default_runs_root
from segtrain.tasks import HEAD_KINDS, REGISTRY, find_task, is_auxiliary
from segtrain.record import PredictionRecord
from segtrain.errors import InputError

#: key in ``layer.metadata`` under which the widgets keep what they know about a layer (a LayerInfo)
META = "segtrain"

#: key in an image layer's ``metadata`` of its id: the layers made from it keep the id (``LayerInfo.image_id``),
#: so that they still know their image after it was renamed; never saved with the image
IMAGE_ID = "segtrain_image_id"

LAYER_KINDS = (*HEAD_KINDS, "segmentation", "annotation", "uncertainty")



@dataclass
class LayerInfo:
    """What the panels know about a layer they made, kept as ``layer.metadata['segtrain']`` and
    exchanged between Predict, Segment and Export.

    ``kind``: affinities | lsds | probabilities (predictions), segmentation, annotation,
    uncertainty (the disagreement between test-time augmented predictions).
    ``task`` / ``model_ndim``: what the model that made it predicts (a 2D model's stack of images
    is 3D data with ``model_ndim`` 2). ``settings``: the segment settings that turn the prediction
    into a segmentation (the run's, tuned ones included) or that made the segmentation.
    ``threshold``: the segmentation's merge or probability threshold. ``run`` / ``checkpoint``:
    where the model came from. ``source``: the layer it was made from. ``image``: the image layer
    it derives from, through every step (a prediction's image, its segmentation's, the
    corrections'), by its name when the layer was made; ``image_id`` the same image by its
    :data:`IMAGE_ID`, which survives renaming the image; see :func:`image_of`. ``array`` (a prediction's
    channel-first array), ``channel(s)`` (what is displayed) and ``fragments`` (a merge-tree
    segmentation's fragments) and ``proofreader`` (the segmentation's edits, see
    :mod:`segtrain.proofread`) live only in memory; :meth:`to_attrs` is what a saved file keeps.
    """

    kind: str
    task: str | None = None
    model_ndim: int | None = None
    settings: Any = None  # a segtrain.config.SegmentConfig
    threshold: float | None = None
    run: str | None = None
    checkpoint: str | None = None
    source: str | None = None
    image: str | None = None
    image_id: str | None = None
    array: Any = field(default=None, repr=False)
    channel: int | None = None
    channels: tuple[int, ...] | None = None
    fragments: Any = field(default=None, repr=False)
    proofreader: Any = field(default=None, repr=False)  # a segtrain.proofread.Proofreader: edits on top

    SAVED = ("kind", "threshold", "source", "image")  # besides the record of how it was made

    @property
    def record(self) -> PredictionRecord:
        """How the layer (or the prediction it derives from) was made."""
        return PredictionRecord(task=self.task, model_ndim=self.model_ndim, settings=self.settings,
                                run=self.run, checkpoint=self.checkpoint)

    def to_attrs(self) -> dict:
        """The JSON-able part (the record's attributes, settings as a mapping; no arrays)."""
        own = {k: getattr(self, k) for k in self.SAVED if getattr(self, k) is not None}
        return {**own, **self.record.to_attrs()}

    @classmethod
    def of_record(cls, kind: str, record: PredictionRecord | None, **more) -> LayerInfo:
        """The info of a layer of ``kind`` made as ``record`` says (None: no record)."""
        record = record or PredictionRecord()
        return cls(kind=kind, task=record.task, model_ndim=record.model_ndim, settings=record.settings,
                   run=record.run, checkpoint=record.checkpoint, **more)

    @classmethod
    def from_attrs(cls, attrs: dict, where: str = "the layer") -> LayerInfo | None:
        """The info a file written from a layer kept (its attributes), or None if it has none; a
        malformed record of how it was made raises InputError naming ``where`` and the field
        (:meth:`PredictionRecord.from_attrs`)."""
        kind = attrs.get("kind")
        if kind not in LAYER_KINDS:
            return None
        return cls.of_record(kind, PredictionRecord.from_attrs(attrs, where),
                             **{k: attrs.get(k) for k in cls.SAVED if k != "kind"})


def layer_info(layer: Any) -> LayerInfo | None:
    """The :class:`LayerInfo` of a layer the panels made, or of a layer read from a file they
    wrote (its attributes); None for other layers."""
    metadata = getattr(layer, "metadata", None) or {}
    info = metadata.get(META)
    if isinstance(info, LayerInfo):
        return info
    return LayerInfo.from_attrs(metadata, f"The layer {getattr(layer, 'name', '')!r}")


def layer_kind(layer: Any) -> str | None:
    """The kind (:class:`LayerInfo`) of a layer the panels made or wrote, None for other layers."""
    info = layer_info(layer) if layer is not None else None
    return None if info is None else info.kind


def kind_is(kind: str) -> Callable[[Any], bool]:
    """A predicate for layer lists: the layers of ``kind`` (e.g. ``kind_is("segmentation")``)."""
    return lambda layer: layer_kind(layer) == kind


#: words in a Labels layer's name that say it is ground truth (e.g. 'em labels', 'gt', 'instances_ids')
GT_WORDS = ("gt", "ground", "truth", "label", "instances", "ids")


def image_id(image: Any) -> str:
    """The stable id of an image layer (:data:`IMAGE_ID` in its metadata), made the first time it is
    asked for: unlike its name, renaming the layer keeps it."""
    import uuid

    found = image.metadata.get(IMAGE_ID)
    if not found:
        found = image.metadata[IMAGE_ID] = uuid.uuid4().hex
    return found


def _image_with_id(viewer: Any, wanted: str) -> Any:
    return next((other for other in viewer.layers if other.__class__.__name__ == "Image"
                 and other.metadata.get(IMAGE_ID) == wanted), None)


def link_to_image(layer: Any, viewer: Any) -> None:
    """Give a layer the panels made (its :class:`LayerInfo` names its image) the id of that image
    while the name still says which it is (when the layer is added, or first asked about)."""
    info = (getattr(layer, "metadata", None) or {}).get(META)
    if not isinstance(info, LayerInfo) or info.image_id or not info.image or info.image not in viewer.layers:
        return
    image = viewer.layers[info.image]
    if image.__class__.__name__ == "Image" and image is not layer:
        info.image_id = image_id(image)


def image_of(layer: Any, viewer: Any) -> str | None:
    """The name of the image layer ``layer`` belongs to, or None when that cannot be told.

    A layer the panels made knows it (``LayerInfo.image_id``, kept through prediction,
    segmentation and corrections: its current name, also after a rename; else the name it had,
    ``LayerInfo.image``); an image no panel made is its own; the Data panel's ground truth and
    annotation belong to its image; other labels belong to the one image of their shape when there
    is exactly one. The name is returned even when that layer has been closed since."""
    info = layer_info(layer)
    if info is not None and (info.image or info.image_id):
        link_to_image(layer, viewer)
        image = _image_with_id(viewer, info.image_id) if info.image_id else None
        if image is not None:
            info.image = image.name  # what is shown and saved: the name it has now
        return info.image
    if info is None and layer.__class__.__name__ == "Image":
        return layer.name
    if layer.__class__.__name__ != "Labels":
        return None
    s = session(viewer)
    if s.image_layer and layer.name in (s.gt_layer, s.annotation_layer):
        return s.image_layer
    shape = tuple(layer.data.shape)
    same = [other.name for other in viewer.layers if other.__class__.__name__ == "Image"
            and layer_info(other) is None and spatial_shape(other) == shape]
    return same[0] if len(same) == 1 else None


def source_image(layer: Any, viewer: Any) -> Any:
    """The image layer in ``viewer`` that ``layer`` (labels: an annotation, corrections) was made
    on; :class:`segtrain.errors.InputError` with one sentence when that cannot be told, the image
    was closed, or the shapes disagree."""

    name = image_of(layer, viewer)
    if name is None:
        raise InputError(f"Which image '{layer.name}' was made on is not known; choose that image and "
                         f"'{layer.name}' in Data & annotation and press Start instead.")
    if name not in viewer.layers:
        raise InputError(f"'{layer.name}' was made on the image '{name}', which is no longer open; "
                         "open it again to train on the pair.")
    image = viewer.layers[name]
    if spatial_shape(image) != tuple(layer.data.shape):
        raise InputError(f"'{layer.name}' has shape {tuple(layer.data.shape)} but its image '{name}' has shape "
                         f"{spatial_shape(image)}; they cannot be trained on together.")
    return image


def named_like_ground_truth(layer: Any) -> bool:
    """Whether ``layer`` is labels no panel made, named like ground truth (:data:`GT_WORDS`)."""
    return (layer is not None and layer.__class__.__name__ == "Labels" and layer_info(layer) is None
            and any(word in layer.name.lower() for word in GT_WORDS))


def is_ground_truth(layer: Any, viewer: Any) -> bool:
    """Whether ``layer`` is ground truth, which the panels never edit: the Data panel's ground
    truth, or labels no panel made that are named like ground truth (:func:`named_like_ground_truth`)."""
    if layer is None or layer.__class__.__name__ != "Labels" or layer_info(layer) is not None:
        return False
    return layer.name == session(viewer).gt_layer or named_like_ground_truth(layer)


def derived_name(parent: Any, what: str, viewer: Any) -> str:
    """The name of a layer made from ``parent``: its image's name and what it is (``'B
    segmentation'``, ``'B corrections'``), never a pile of every step's name."""
    return f"{image_of(parent, viewer) or parent.name} {what}"

#: the tasks the Data panel offers, by name: their labels
TASKS = {task.name: task.label for task in REGISTRY.values() if task.label}


def spatial_scale(layer: Any) -> tuple[float, ...]:
    """The layer's voxel size for its spatial (last, non-RGB) dimensions."""
    n = spatial_ndim(layer)
    return tuple(float(s) for s in layer.scale[-n:])


def spatial_translate(layer: Any) -> tuple[float, ...]:
    n = spatial_ndim(layer)
    return tuple(float(t) for t in layer.translate[-n:])


def spatial_ndim(layer: Any) -> int:
    return int(layer.ndim)


def spatial_shape(layer: Any) -> tuple[int, ...]:
    shape = tuple(int(s) for s in layer.data.shape)
    if getattr(layer, "rgb", False):
        shape = shape[:-1]
    return shape


def _drop_arrays(value: Any) -> Any:
    """``value`` without array-valued entries (numpy, dask, zarr, lazy labels) at any depth."""
    def kept(v: Any) -> bool:
        return isinstance(v, (list, tuple, dict)) or np.ndim(v) == 0

    if isinstance(value, dict):
        return {k: _drop_arrays(v) for k, v in value.items() if kept(v)}
    if isinstance(value, (list, tuple)):
        return [_drop_arrays(v) for v in value if kept(v)]
    return value


def layer_attrs(metadata: dict | None) -> dict:
    """The attributes a saved layer keeps from its metadata: every JSON-able entry, arrays dropped;
    the widgets' own entry (``metadata['segtrain']``: threshold, source, settings, kind ...)
    contributes its JSON-able items at top level (where the reader puts them back)."""
    metadata = dict(metadata or {})
    own = metadata.pop(META, None)
    metadata.pop("voxel_size_in_file", None)  # what the reader knew, not an attribute of the data
    metadata.pop(IMAGE_ID, None)  # which layer of this session, not an attribute of the data
    attrs = jsonable(_drop_arrays(metadata))
    if isinstance(own, LayerInfo):
        attrs.update(jsonable(own.to_attrs()))
    elif isinstance(own, dict):
        attrs.update(jsonable(_drop_arrays(own)))
    return attrs


def volume_from_layer_data(data: Any, meta: dict, layer_type: str):
    """A :class:`segtrain.io.Volume` from napari layer data and its state (``meta``: ``name``,
    ``scale``, ``translate``, ``metadata``, ``rgb``, ``multiscale``; what a napari writer is given,
    or ``layer.as_layer_data_tuple()``): voxel size from the scale, offset from the translate,
    ``is_labels`` from the layer type, attributes from :func:`layer_attrs`."""
    if meta.get("multiscale") and isinstance(data, (list, tuple)):
        data = data[0]  # highest resolution
    if isinstance(data, LookupLabels) or not hasattr(data, "dtype"):
        data = np.asarray(data)  # a LookupLabels: the whole volume, relabelled
    if meta.get("rgb"):
        axes = ("y", "x", "c") if data.ndim == 3 else ("z", "y", "x", "c")
    else:
        axes = DEFAULT_AXES.get(data.ndim, ())
    is_labels = str(layer_type).lower() == "labels"
    return Volume(
        data=data,
        voxel_size=tuple(float(s) for s in meta.get("scale") or ()),
        offset=tuple(float(t) for t in meta.get("translate") or ()),
        axes=axes,
        name=str(meta.get("name") or ("labels" if is_labels else "image")),
        is_labels=is_labels,
        attrs=layer_attrs(meta.get("metadata")),
    )


def aligned_kwargs(layer: Any, name: str, info: LayerInfo, ndim: int | None = None) -> dict:
    """kwargs for a new layer aligned (scale/translate of the last ``ndim`` axes) with ``layer``."""
    n = ndim or layer.ndim
    return {
        "name": name,
        "scale": tuple(layer.scale[-n:]),
        "translate": tuple(layer.translate[-n:]),
        "metadata": {META: info},
    }


PREDICTION_OPACITY = 0.5  # predictions over the image, which stays visible (normal blending)


def _spatial_kwargs(image: Any, ndim: int) -> dict:
    if image is None:
        return {}
    return {"scale": tuple(image.scale[-ndim:]), "translate": tuple(image.translate[-ndim:])}


def prediction_layer_args(array: np.ndarray, image: Any, name: str, kind: str,
                          channels: tuple[int, ...] = (0, 1, 2), channel: int | None = None,
                          info: LayerInfo | None = None) -> tuple[np.ndarray, dict]:
    """(data, add_image kwargs) to show a channel-first prediction aligned with ``image``.

    Affinities / LSDs with >= 3 channels become an RGB image of ``channels`` (channels last, a
    view); ``channel`` picks one channel as a grey image (probabilities). The layer's
    :class:`~segtrain.plugin.layers.LayerInfo` (a copy of ``info``, which carries what the model
    is and the run's segment settings) keeps the full array for the Segment and Export panels.
    """
    array = np.asarray(array)
    spatial_ndim = image.ndim if image is not None else (array.ndim - 1 if array.ndim > 2 else 2)
    meta = dataclasses.replace(info or LayerInfo(kind), kind=kind, array=array,
                               source=getattr(image, "name", None), image=getattr(image, "name", None),
                               image_id=None if image is None else image_id(image))
    kwargs = {"name": name, "metadata": {META: meta}}
    grey = {"colormap": "magma", "contrast_limits": (0.0, 1.0)}
    if array.ndim == spatial_ndim:  # no channel axis
        data = array
        kwargs.update(grey)
    elif channel is not None or array.shape[0] < 3:
        channel = channel or 0
        data = array[channel]
        kwargs.update(grey)
        meta.channel = channel
    else:
        picked = [c for c in channels if c < array.shape[0]][:3]
        while len(picked) < 3:
            picked.append(picked[-1])
        data = ChannelsLast(array, tuple(picked))  # napari reads the displayed slice only
        kwargs.update(rgb=True, contrast_limits=(0.0, 1.0))
        meta.channels = tuple(picked)
    kwargs.update(_spatial_kwargs(image, spatial_ndim))
    kwargs.update(blending="translucent", opacity=PREDICTION_OPACITY, visible=not is_auxiliary(kind))
    return data, kwargs


def uncertainty_layer_args(array: np.ndarray, image: Any, name: str,
                           info: LayerInfo | None = None) -> tuple[np.ndarray, dict]:
    """(data, add_image kwargs) for the uncertainty map (``(1, *spatial)`` or ``(*spatial)``) of a
    prediction: hidden at first, colormap magma, added onto what lies below it (dark = sure adds
    nothing), contrast up to its 99.9th percentile; its :class:`LayerInfo` has kind
    ``uncertainty`` and keeps the full array."""
    array = np.asarray(array, dtype=np.float32)
    spatial_ndim = image.ndim if image is not None else array.ndim - (array.shape[0] == 1)
    data = array[0] if array.ndim > spatial_ndim else array
    meta = dataclasses.replace(info or LayerInfo("uncertainty"), kind="uncertainty", array=data,
                               source=getattr(image, "name", None), image=getattr(image, "name", None),
                               image_id=None if image is None else image_id(image), channel=None, channels=None)
    high = sampled_percentile(data, 99.9)
    kwargs = {"name": name, "metadata": {META: meta}, "colormap": "magma",
              "contrast_limits": (0.0, high if high > 0 else 1.0), "blending": "additive", "opacity": 1.0,
              "visible": False, **_spatial_kwargs(image, spatial_ndim)}
    return data, kwargs


def probability_layers(array: np.ndarray, task: str) -> list[tuple[str, int]]:
    """(layer suffix, channel) for each probability channel worth its own image layer."""
    found = find_task(task)
    return found.probability_layers(array.shape[0]) if found is not None else [("probabilities", 0)]


def unique_name(viewer: Any, base: str) -> str:
    names = {layer.name for layer in viewer.layers}
    if base not in names:
        return base
    i = 1
    while f"{base} [{i}]" in names:
        i += 1
    return f"{base} [{i}]"


def upsert_layer(viewer: Any, kind: str, data: Any, name: str, **kwargs: Any):
    """Update layer ``name`` in place if it exists with the same type and dimensionality (cheap:
    no new layer, controls or visual), else add it."""
    if name in viewer.layers:
        layer = viewer.layers[name]
        same = (layer.__class__.__name__.lower() == kind and layer.data.ndim == np.ndim(data)
                and bool(getattr(layer, "rgb", False)) == bool(kwargs.get("rgb", False)))
        if same:
            layer.data = data
            for key in ("scale", "translate", "contrast_limits"):
                if key in kwargs:
                    setattr(layer, key, kwargs[key])
            for key in ("blending", "opacity"):
                if key in kwargs:
                    setattr(layer, key, kwargs[key])
            if "metadata" in kwargs:
                layer.metadata.update(kwargs["metadata"])
            return layer
        viewer.layers.remove(name)
    add = getattr(viewer, f"add_{kind}")
    return add(data, name=name, **kwargs)


SAMPLE_ELEMENTS = 2**20
"""Statistics for display (contrast limits) read about this many voxels, not the whole volume."""


def sampled_percentile(data: np.ndarray, q: float) -> float:
    """The ``q``-th percentile of ``data`` on a regular grid of about :data:`SAMPLE_ELEMENTS` voxels
    (every s-th along each axis): a display setting in constant time, whatever the volume's size;
    0.0 for an empty array."""
    if not data.size:
        return 0.0
    step = 1
    while np.prod([-(-n // step) for n in data.shape]) > SAMPLE_ELEMENTS:
        step += 1
    return float(np.percentile(np.asarray(data[tuple(slice(None, None, step) for _ in data.shape)]), q))


class ChannelsLast:
    """Array-like RGB view of three channels of a channel-first prediction, for napari: only the
    part napari asks for (the displayed slice) is moved channels last and clipped to [0, 1] (float32;
    uint8 stays as it is), so showing a prediction costs one slice, not a copy of the volume."""

    def __init__(self, array: np.ndarray, channels: tuple[int, ...]):
        self.array, self.channels = array, tuple(channels)
        self.dtype = np.dtype(np.uint8 if array.dtype == np.uint8 else np.float32)
        self.shape = (*array.shape[1:], len(self.channels))
        self.ndim = len(self.shape)
        self.size = int(np.prod(self.shape))

    def _region(self, spatial: tuple) -> np.ndarray:
        region = np.stack([np.asarray(self.array[(c, *spatial)]) for c in self.channels], axis=-1)
        if self.dtype != np.uint8:
            region = np.clip(region, 0.0, 1.0).astype(np.float32, copy=False)
        return region

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            at = next(i for i, k in enumerate(key) if k is Ellipsis)
            key = (*key[:at], *[slice(None)] * (self.ndim - len(key) + 1), *key[at + 1:])
        if all(isinstance(k, (int, np.integer, slice)) for k in key) and len(key) <= self.ndim:
            spatial, channel = key[:self.ndim - 1], key[self.ndim - 1:]
            return self._region(spatial)[(Ellipsis, *channel)]
        return np.asarray(self)[key]  # fancy indexing: the whole array (rare, e.g. a test)

    def __array__(self, dtype=None, copy=None):
        full = self._region(())
        return full.astype(dtype, copy=False) if dtype is not None else full

    def __len__(self) -> int:
        return self.shape[0]


class LookupLabels:
    """Array-like segmentation that napari slices lazily: ``relabel(region)`` is applied only to
    the part napari asks for (the displayed slice), so a threshold change costs one slice.

    ``relabel`` takes a fragments region (numpy) and returns its segmentation; replace it with
    :meth:`set_relabel` and call ``layer.refresh()``.
    """

    def __init__(self, fragments: np.ndarray, relabel, dtype=np.uint64):
        self.fragments = fragments
        self._relabel = relabel
        self.dtype = np.dtype(dtype)
        self.shape = tuple(fragments.shape)
        self.ndim = len(self.shape)
        self.size = int(np.prod(self.shape))

    def set_relabel(self, relabel) -> None:
        self._relabel = relabel

    def __getitem__(self, key):
        region = np.asarray(self.fragments[key])
        return np.asarray(self._relabel(region)).astype(self.dtype, copy=False)

    def __array__(self, dtype=None, copy=None):
        full = self[...]
        return full.astype(dtype, copy=False) if dtype is not None else full

    def __len__(self) -> int:
        return self.shape[0]


@dataclass
class Session:
    """What the dock widgets of one viewer share (chosen layers, task, runs, the threshold)."""

    changed = Signal(str)

    image_layer: str | None = None
    gt_layer: str | None = None
    annotation_layer: str | None = None
    task: str = "affinities"
    voxel_size: tuple[float, ...] | None = None
    sparse: bool = True
    runs_root: Path = field(default_factory=default_runs_root)  # $SEGTRAIN_RUNS or the user data folder
    run_dir: Path | None = None
    checkpoint: Path | None = None
    threshold: float | None = None
    edited: str | None = None  # the labels layer Proofread edited last (the Measurements panel follows it)
    batch_out: Path | None = None  # the output folder of the batch Proofread steps through
    batch_corrections: list[str] = field(default_factory=list)  # corrections layers of a batch: one Fine-tune

    def set(self, **values: Any) -> None:
        for key, value in values.items():
            setattr(self, key, value)
            self.changed.emit(key)


_SESSIONS: "weakref.WeakKeyDictionary[Any, Session]" = weakref.WeakKeyDictionary()


def release_removed_layer(event: Any) -> None:
    """A layer the panels made gives its large arrays back when it leaves the viewer. napari (or
    Qt objects it deletes later) can keep a removed layer object alive for a while; its data
    (predictions, fragments, the proofreading state) must not stay alive with it."""
    from segtrain.plugin import collector

    collector.layer_removed(event.value)
    layer = event.value
    info = (getattr(layer, "metadata", None) or {}).get(META)
    if not isinstance(info, LayerInfo):
        return
    info.array = info.fragments = info.proofreader = None
    data = layer.data
    if getattr(data, "ndim", 0) and not isinstance(data, list):
        tail = (data.shape[-1],) if getattr(layer, "rgb", False) else ()
        layer.data = np.zeros((1,) * (data.ndim - len(tail)) + tail, dtype=getattr(data, "dtype", np.float32))


def _stamp_inserted_layer(event: Any) -> None:
    from segtrain.plugin import collector

    collector.layer_inserted(event.value)


def session(viewer: Any) -> Session:
    """The :class:`Session` shared by all segtrain widgets docked in ``viewer``."""
    try:
        return _SESSIONS[viewer]
    except KeyError:
        _SESSIONS[viewer] = s = Session()
        viewer.layers.events.removed.connect(release_removed_layer)
        owner = weakref.ref(viewer)
        viewer.layers.events.inserted.connect(lambda event: owner() is not None
                                              and link_to_image(event.value, owner()))
        viewer.layers.events.inserted.connect(_stamp_inserted_layer)
        return s
    except TypeError:  # not weak-referenceable: keep it on the object
        if not hasattr(viewer, "_segtrain_session"):
            viewer._segtrain_session = Session()
        return viewer._segtrain_session
