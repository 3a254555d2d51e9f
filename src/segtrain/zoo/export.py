"""Export a run as a BioImage.IO model package (spec 0.5), tested with bioimageio.core before it
is written.

The package holds the weights twice: a pure ``state_dict`` for :class:`segtrain.models.packaged.ZooNetwork`
(``ArchitectureFromLibraryDescr`` with the run's config as its kwargs) and TorchScript. The run's
normalisation is the input's preprocessing; the outputs are the activated heads (affinities, LSDs,
probabilities), named per channel; how to decode them (affinity offsets, LSD channels, the segment
settings the run's validation and `segtrain tune` chose) is in the description and in
``config.segtrain``, as the spec has no vocabulary for watershed/waterz decoding. Test tensors are
cut from the run's validation image (or an image given), the cover shows input | prediction |
segmentation of that cut.
"""

from __future__ import annotations

import getpass
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segtrain.errors import InputError
from segtrain.tasks import is_affinities, is_lsds

#: the id of the input tensor of packages segtrain writes
INPUT_ID = "raw"
#: the licence a package gets when none is given
DEFAULT_LICENSE = "MIT"
#: largest test cut per spatial axis (voxels; rounded down to the network's divisor)
TEST_CUT = {2: (128, 128), 3: (16, 64, 64)}
#: the citations a package gets when none is given: the methods its network and outputs use
UNET_CITE = ("Ronneberger, Fischer, Brox (2015): U-Net: Convolutional Networks for Biomedical Image Segmentation",
             "10.1007/978-3-319-24574-4_28")
AFFINITY_CITE = ("Funke et al. (2018): Large Scale Image Segmentation with Structured Loss based Deep Learning for "
                 "Connectome Reconstruction", "10.1109/TPAMI.2018.2835450")
LSD_CITE = ("Sheridan et al. (2023): Local shape descriptors for neuron segmentation", "10.1038/s41592-022-01711-z")


@dataclass
class PackageInfo:
    """What the user says about a package; None: the default (name and description from the run,
    the login name as author, MIT licence, the U-Net (and affinity / LSD) papers as citations)."""

    name: str | None = None
    description: str | None = None
    authors: Sequence[str] = ()
    license: str | None = None
    cite: Sequence[str] = ()
    doi: Sequence[str] = ()  # one DOI (or URL) per citation, in order
    tags: Sequence[str] = field(default_factory=tuple)


Progress = Callable[[str], None]


def export_run(run, output: str | Path, info: PackageInfo | None = None, which: str = "newest",
               test_image=None, overwrite: bool = False, progress: Progress | None = None) -> Path:
    """Write the BioImage.IO package (``.zip``) of a run folder's checkpoint (``which`` as in
    :func:`segtrain.predict.load_model`) to ``output``, after bioimageio.core's ``test_model``
    passed on it.

    ``test_image``: an array or image path to cut the test tensors from (default: the run's first
    validation image read from a file, as run.json records it). Raises :class:`InputError` (one
    sentence, nothing written) when the run, the test image or the test fails.
    """
    from segtrain.io.atomic import atomic_path, check_output
    from segtrain.predict import load_model
    from segtrain.predict.package import quiet_bioimageio

    output = Path(output)
    if output.suffix != ".zip":
        raise InputError(f"A BioImage.IO package is a .zip file; name the output e.g. {output.with_suffix('.zip')}.")
    check_output(output, overwrite, fmt="zip")
    say = progress or (lambda text: None)
    info = info or PackageInfo()
    say("loading the run")
    loaded = load_model(run, device="cpu", which=which)
    if loaded.folder is None:
        raise InputError(f"{run} is a checkpoint outside a run folder; export the run folder it belongs to.")
    cut, voxel_size = cut_of(loaded, test_image)
    with tempfile.TemporaryDirectory(prefix="segtrain-zoo-") as work, quiet_bioimageio():
        work = Path(work)
        say("writing weights, test tensors and cover")
        descr = package_description(loaded, cut, voxel_size, info, work)
        say("testing the package with bioimageio.core")
        check_package(descr)
        say("writing the package")
        with atomic_path(output, overwrite=overwrite, fmt="zip") as tmp:
            _save_package(descr, tmp, work)
    return output


# --- the test cut ---------------------------------------------------------------------------------
def validation_image(loaded) -> tuple[object, tuple[float, ...] | None]:
    """The run's first validation image that was read from a file (run.json's data record), its
    recorded crop applied: ``(array, voxel_size)``."""
    from segtrain.io import read_volume

    data = loaded.folder.data()
    for split in ("val", "train"):
        for source in data.get(split) or []:
            raw = source.get("raw") or {}
            if not raw.get("path") or not Path(raw["path"]).exists():
                continue
            volume = read_volume(raw["path"], raw.get("dataset"))
            array = volume.data
            if "c" in volume.axes and volume.axes.index("c") != 0:  # channels first, as training read it
                array = np.moveaxis(np.asarray(array), volume.axes.index("c"), 0)
            crop = source.get("crop") or []
            config = loaded.config
            lead = 1 if array.ndim > config.ndim and config.data.in_channels > 1 else 0  # channels first
            index = (slice(None),) * lead + tuple(slice(a, b) for a, b in crop)
            return array[index], tuple(volume.voxel_size[-loaded.config.ndim:]) if volume.voxel_size_given else None
    raise InputError(f"Run {loaded.folder.name} records no validation or training image read from a file (its data "
                     "was given as arrays); give an image to cut the test tensors from (--test-image).")


def cut_of(loaded, image=None) -> tuple[np.ndarray, tuple[float, ...]]:
    """``(cut, voxel_size)``: the centre of the validation image (or ``image``), at most
    :data:`TEST_CUT` per axis and a multiple of the network's divisor per axis, channels first
    (``(C, *spatial)``)."""
    from segtrain.config import divisor

    config = loaded.config
    ndim, channels = config.ndim, config.data.in_channels
    voxel_size = None
    if image is None:
        array, voxel_size = validation_image(loaded)
    elif isinstance(image, (str, Path)):
        from segtrain.io import read_volume

        volume = read_volume(image)
        array = volume.data
        if volume.voxel_size_given:
            voxel_size = tuple(volume.voxel_size[-ndim:])
    else:
        array = image
    array = np.asarray(array)
    if array.ndim == ndim + 1 and channels == 1 and array.shape[0] != 1:
        array = array[array.shape[0] // 2]  # a 2D model's stack of slices: its middle slice
    if array.ndim == ndim:
        array = array[None]
    if array.ndim != ndim + 1 or array.shape[0] != channels:
        raise InputError(f"The test image of shape {array.shape} does not fit the run's {ndim}D model with {channels} "
                         f"input channel(s); give a {ndim}D image.")
    div = divisor(config)
    size = [min(n, cap) // d * d for n, cap, d in zip(array.shape[1:], TEST_CUT[ndim], div)]
    if min(size) == 0:
        raise InputError(f"The test image of shape {array.shape[1:]} is smaller than the network's smallest input "
                         f"{tuple(div)}; give a larger image.")
    start = [(n - s) // 2 for n, s in zip(array.shape[1:], size)]
    cut = array[(slice(None), *(slice(a, a + s) for a, s in zip(start, size)))]
    if voxel_size is None:
        voxel_size = tuple(config.data.voxel_size or (1.0,) * ndim)
    return np.ascontiguousarray(cut), tuple(float(v) for v in voxel_size)


# --- the description --------------------------------------------------------------------------------
def channel_names(config, head) -> list[str]:
    """One identifier per channel of an output."""
    from segtrain.tasks import task_of

    if is_affinities(head.name):
        return [f"affinity_{i}" for i in range(head.channels)]
    if is_lsds(head.name):
        axes = "zyx"[-config.ndim:]
        pairs = ["zy", "zx", "yx"] if config.ndim == 3 else ["yx"]
        names = [f"offset_{a}" for a in axes] + [f"variance_{a}" for a in axes] + \
                [f"correlation_{p}" for p in pairs] + ["size"]
        return names if len(names) == head.channels else [f"lsd_{i}" for i in range(head.channels)]
    task = task_of(config.model)
    if task.semantic:
        return [f"class_{i}" for i in range(head.channels)]
    if task.boundary_channel and head.channels == 2:
        return ["foreground", "boundary"]
    return ["foreground"] if head.channels == 1 else [f"channel_{i}" for i in range(head.channels)]


def decoding(loaded) -> dict:
    """``config.segtrain`` of the package: task, heads, offsets, LSD settings, segment settings."""
    import dataclasses

    from segtrain.models.build import offsets_for
    from segtrain.tasks import task_of

    config = loaded.config
    task = task_of(config.model)
    record = {"task": config.task, "ndim": config.ndim, "input": INPUT_ID,
              "outputs": [{"id": h.name, "channels": h.channels, "activation": h.activation,
                           "channel_names": channel_names(config, h)} for h in loaded.model.heads],
              "normalize": config.data.normalize,
              "segment": dataclasses.asdict(config.segment),
              "run": loaded.folder.name, "checkpoint": loaded.checkpoint.name, "step": loaded.step,
              "run_config": config.to_dict()}
    if task.agglomerates:
        record["affinity_offsets"] = [list(o) for o in offsets_for(config)]
        record["affinity_convention"] = ("1 = same object; channel i: the voxel and the voxel at its position plus "
                                         "affinity_offsets[i] (voxels)")
    if any(is_lsds(h.name) for h in loaded.model.heads):
        record["lsd_sigma"] = config.model.lsd_sigma
    return record


def output_description(config, head) -> str:
    """At most 128 characters (the spec's limit); the details are in the README and config.segtrain."""
    if is_affinities(head.name):
        text = ("Affinities (1 = same object), offsets config.segtrain.affinity_offsets; decode: watershed + waterz "
                "(config.segtrain.segment)")
    elif is_lsds(head.name):
        text = f"Local shape descriptors (Sheridan et al. 2022), sigma {config.model.lsd_sigma:g}; auxiliary output"
    else:
        text = (f"{config.task} probabilities ({', '.join(channel_names(config, head))}); decode with "
                "config.segtrain.segment")
    return text[:128]


def output_details(config, head, record: dict) -> str:
    """The README's longer description of an output."""
    if is_affinities(head.name):
        return (f"affinities (sigmoid, 1 = same object) for the offsets {record['affinity_offsets']} (voxels, axes "
                f"{'zyx'[-config.ndim:]}); decode: fragments by seeded watershed on the boundary map, then waterz "
                "agglomeration with the settings in `config.segtrain.segment` (scoring, merge threshold)")
    if is_lsds(head.name):
        return (f"local shape descriptors, Gaussian sigma {config.model.lsd_sigma} world units: "
                + ", ".join(channel_names(config, head)) + "; an auxiliary output, not needed to segment")
    return (f"probabilities ({head.activation}) of the task {config.task}: {', '.join(channel_names(config, head))}; "
            "decode with `config.segtrain.segment` (probability_threshold, seeds, min_size)")


def package_description(loaded, cut: np.ndarray, voxel_size: tuple[float, ...], info: PackageInfo, work: Path):
    """The ModelDescr (spec 0.5) of a loaded run with its files written into ``work``."""
    import torch
    from bioimageio.spec.model import v0_5 as spec

    from segtrain.config import divisor
    from segtrain.io.normalize import intensity_range, normalize
    from segtrain.models.packaged import ZooNetwork, scripted_network

    config = loaded.config
    ndim = config.ndim
    network = ZooNetwork(config.to_dict()).eval()
    network.load_state_dict(loaded.model.state_dict())
    weights = work / "weights.pt"
    torch.save(network.state_dict(), weights)
    mode = config.data.normalize
    test_input = cut.astype(np.float32) if mode != "dtype" else cut
    low, high = intensity_range(test_input, mode)
    x = torch.from_numpy(normalize(test_input, low, high)[None])
    with torch.no_grad():
        outputs = [t.numpy() for t in network(x)]
    scripted = work / "weights.torchscript.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(scripted_network(network, x), scripted)
    np.save(work / "test_input.npy", test_input[None])
    for head, value in zip(network.heads, outputs):
        if not np.isfinite(value).all():
            raise InputError(f"The run's {head.name} on the test image are not finite (NaN); the checkpoint is broken: "
                             "export another one.")
        np.save(work / f"test_output_{head.name}.npy", value)
    record = decoding(loaded)
    cover = work / "cover.png"
    write_cover(cover, normalize(test_input, low, high), {h.name: v[0] for h, v in zip(network.heads, outputs)},
                loaded, voxel_size)
    spatial_ids = list("zyx"[-ndim:])
    div = divisor(config)
    input_axes = [spec.BatchAxis(), spec.ChannelAxis(channel_names=[f"channel_{i}" for i in range(cut.shape[0])])]
    input_axes += [spec.SpaceInputAxis(id=spec.AxisId(a), size=spec.ParameterizedSize(min=d, step=d), scale=v)
                   for a, d, v in zip(spatial_ids, div, voxel_size)]
    preprocessing = [spec.EnsureDtypeDescr(kwargs=spec.EnsureDtypeKwargs(dtype="float32"))]
    if mode == "percentile":
        preprocessing.append(spec.ScaleRangeDescr(kwargs=spec.ScaleRangeKwargs(
            axes=[spec.AxisId("channel"), *map(spec.AxisId, spatial_ids)], min_percentile=1.0,
            max_percentile=99.8)))
    elif mode == "dtype" and np.issubdtype(cut.dtype, np.integer):
        preprocessing.append(spec.ScaleLinearDescr(kwargs=spec.ScaleLinearKwargs(
            gain=1.0 / float(np.iinfo(cut.dtype).max), offset=0.0)))
    inputs = [spec.InputTensorDescr(
        id=spec.TensorId(INPUT_ID), axes=input_axes, test_tensor=spec.FileDescr(source=work / "test_input.npy"),
        data=spec.IntervalOrRatioDataDescr(type=str(test_input.dtype)), preprocessing=preprocessing,
        description=f"The image, {ndim}D, channels first; normalised as in training ({mode}).")]
    outputs_descr = []
    for head in network.heads:
        axes = [spec.BatchAxis(), spec.ChannelAxis(channel_names=channel_names(config, head))]
        axes += [spec.SpaceOutputAxis(id=spec.AxisId(a), scale=v,
                                      size=spec.SizeReference(tensor_id=spec.TensorId(INPUT_ID),
                                                              axis_id=spec.AxisId(a)))
                 for a, v in zip(spatial_ids, voxel_size)]
        outputs_descr.append(spec.OutputTensorDescr(
            id=spec.TensorId(head.name), axes=axes, description=output_description(config, head),
            test_tensor=spec.FileDescr(source=work / f"test_output_{head.name}.npy"),
            data=spec.IntervalOrRatioDataDescr(type="float32")))
    kwargs = {"config": network_config_kwargs(config)}
    import segtrain

    version = getattr(segtrain, "__version__", None)
    torch_version = spec.Version(torch.__version__.split("+")[0])
    weights_descr = spec.WeightsDescr(
        pytorch_state_dict=spec.PytorchStateDictWeightsDescr(
            source=weights, pytorch_version=torch_version,
            architecture=spec.ArchitectureFromLibraryDescr(
                callable=spec.Identifier("ZooNetwork"), import_from="segtrain.models.packaged", kwargs=kwargs),
            dependencies=None),
        torchscript=spec.TorchscriptWeightsDescr(source=scripted, pytorch_version=torch_version,
                                                 parent="pytorch_state_dict"))
    documentation = work / "README.md"
    documentation.write_text(readme(loaded, record, voxel_size))
    name = info.name or f"segtrain {config.task} {ndim}D {loaded.folder.name}"
    description = info.description or (
        f"A {ndim}D {config.task} network trained with napari-segtrain (run {loaded.folder.name}, "
        f"{loaded.checkpoint.name}, step {loaded.step}); outputs {', '.join(h.name for h in network.heads)}; "
        "decoding settings in config.segtrain.")
    authors = [spec.Author(name=a) for a in (info.authors or [getpass.getuser() or "unknown"])]
    cite = [cite_entry(spec, text, where) for text, where in citations(info, config, network.heads)]
    tags = list(info.tags or []) + ["segtrain", config.task, f"{ndim}d", "pytorch"]
    return spec.ModelDescr(
        name=name, description=description, authors=authors, cite=cite,
        license=info.license or DEFAULT_LICENSE, documentation=spec.FileDescr(source=documentation),
        covers=[spec.FileDescr(source=cover)],
        inputs=inputs, outputs=outputs_descr, weights=weights_descr, tags=tags,
        training_data=training_data(loaded),
        config=spec.Config(segtrain=record, **({"segtrain_version": version} if version else {})))


def citations(info: PackageInfo, config, heads) -> list[tuple[str, str]]:
    """``(text, DOI or URL)`` of each citation: the user's (one DOI or URL each, in order), else the
    methods the network uses."""
    if info.cite or info.doi:
        if len(info.cite) != len(info.doi):
            raise InputError(f"{len(info.cite)} --cite text(s) but {len(info.doi)} --doi; give one --doi (or URL) per "
                             "--cite, in the same order (BioImage.IO needs a DOI or URL for every citation).")
        return list(zip(info.cite, info.doi))
    from segtrain.tasks import task_of

    return ([UNET_CITE] + ([AFFINITY_CITE] if task_of(config.model).agglomerates else [])
            + ([LSD_CITE] if any(is_lsds(head.name) for head in heads) else []))


def cite_entry(spec, text: str, where: str):
    if where.startswith(("http://", "https://")):
        return spec.CiteEntry(text=text, url=where)
    return spec.CiteEntry(text=text, doi=where.removeprefix("doi:").removeprefix("https://doi.org/"))


def network_config_kwargs(config) -> dict:
    values = config.to_dict()
    values.get("model", {})["encoder_weights"] = None
    return values


def training_data(loaded):
    """The data the run was trained on, as an inline dataset description (names, shapes, hashes of
    run.json's data record)."""
    from bioimageio.spec.dataset.v0_3 import DatasetDescr

    data = loaded.folder.data()
    if not data:
        return None
    lines = []
    for split in ("train", "val"):
        for source in data.get(split) or []:
            raw = source.get("raw") or {}
            where = Path(raw["path"]).name if raw.get("path") else source.get("name") or source.get("kind")
            lines.append(f"{split}: {where} {raw.get('shape', '')} {raw.get('dtype', '')} hash {raw.get('hash', '?')}")
    return DatasetDescr(name=f"training data of run {loaded.folder.name} (fingerprint {data.get('fingerprint')})",
                        description="; ".join(lines)[:1000] or "not recorded")


def readme(loaded, record: dict, voxel_size) -> str:
    config = loaded.config
    lines = [f"# {config.task} {config.ndim}D network from napari-segtrain", "",
             f"Run `{loaded.folder.name}`, checkpoint `{loaded.checkpoint.name}` (step {loaded.step}); "
             f"voxel size {tuple(voxel_size)} (world units of the training data).", "",
             "## Input", "", f"`{INPUT_ID}`: channels first; normalisation `{config.data.normalize}` "
             "(percentile: the 1st and 99.8th percentile of the image map to 0 and 1).", "", "## Outputs", ""]
    for head in loaded.model.heads:
        lines.append(f"- `{head.name}` ({head.channels} channels): {output_details(config, head, record)}")
    lines += ["", "## Decoding", "",
              "The spec has no vocabulary for watershed/waterz decoding: `config.segtrain.segment` holds the settings "
              "the run's validation and `segtrain tune` chose. With napari-segtrain installed, "
              "`segtrain predict --run this.zip IMAGE out.zarr` then `segtrain segment` reproduce the run exactly.", ""]
    return "\n".join(lines)


# --- the cover ------------------------------------------------------------------------------------
def cover_segmentation(outputs: dict[str, np.ndarray], loaded, voxel_size) -> np.ndarray | None:
    """The segmentation of the test cut with the run's segment settings (None where none can be made)."""
    from segtrain.postprocess import OutputSpec, instances, segment_affinities
    from segtrain.tasks import task_of

    config = loaded.config
    settings = config.segment
    task = task_of(config.model)
    try:
        if task.agglomerates:
            tree = segment_affinities(outputs["affinities"], settings, voxel_size=voxel_size, model_ndim=config.ndim)
            return tree.segmentation(settings.threshold if settings.threshold is not None else 0.5)
        if task.semantic:
            return np.argmax(outputs["probabilities"], axis=0)
        return instances(outputs["probabilities"], settings, OutputSpec.of(config))
    except Exception:  # noqa: BLE001 - the cover shows what it can; the package does not depend on it
        return None


def _gray(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, np.float32)
    low, high = np.percentile(image, [1, 99]) if image.size else (0, 1)
    return (np.clip((image - low) / max(high - low, 1e-6), 0, 1) * 255).astype(np.uint8)


def _rgb_of(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=-1)


def _labels_rgb(labels: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(0)
    ids, inverse = np.unique(labels, return_inverse=True)
    colors = rng.integers(40, 255, (len(ids), 3), dtype=np.uint8)
    colors[ids == 0] = 0
    return colors[inverse.reshape(labels.shape)]


def write_cover(path: Path, image: np.ndarray, outputs: dict[str, np.ndarray], loaded, voxel_size) -> None:
    """input | prediction | segmentation of the middle section, on a 2:1 canvas."""
    from PIL import Image

    config = loaded.config
    middle = (lambda a: a[a.shape[0] // 2]) if config.ndim == 3 else (lambda a: a)
    from segtrain.tasks import task_of

    task = task_of(config.model)
    first = next(iter(outputs.values()))
    if task.agglomerates:  # affinities: the in-plane ones, averaged
        prediction = _rgb_of(_gray(middle(outputs[task.head][-2:].mean(axis=0))))
    else:
        prediction = _rgb_of(_gray(middle(first[0] if first.shape[0] < 3 else first[1:].max(axis=0))))
    panels = [_rgb_of(_gray(middle(image[0]))), prediction]
    seg = cover_segmentation(outputs, loaded, voxel_size)
    if seg is not None:
        panels.append(_labels_rgb(middle(np.asarray(seg))))
    gap = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    strip = np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1)
    height, width = strip.shape[:2]
    scale = max(1, 256 // max(height, 1))
    strip = np.kron(strip, np.ones((scale, scale, 1), np.uint8))
    height, width = strip.shape[:2]
    canvas_w = max(width, 2 * height)
    canvas = np.full((canvas_w // 2, canvas_w, 3), 255, np.uint8)
    top, left = (canvas.shape[0] - height) // 2, (canvas_w - width) // 2
    canvas[top:top + height, left:left + width] = strip
    Image.fromarray(canvas).save(path)


# --- testing and writing ------------------------------------------------------------------------
def check_package(descr) -> None:
    """Run bioimageio.core's ``test_model`` on the description (every weights format, its batch
    sizes and parameterised sizes); raise :class:`InputError` with the first failure."""
    from bioimageio.core import test_model

    from segtrain.predict.package import quiet_bioimageio

    with quiet_bioimageio():
        summary = test_model(descr)
    if summary.status != "passed":
        raise InputError(f"The package failed bioimageio.core's test ({first_failure(summary)}); nothing was written.")


def first_failure(summary) -> str:
    for detail in summary.details:
        if detail.status == "failed":
            error = next(iter(detail.errors), None)
            text = f"{detail.name}: {error.msg}" if error is not None else detail.name
            return " ".join(text.split())[:300]
    return summary.status


def _save_package(descr, path: Path, work: Path) -> None:
    """Write the package zip into ``work``, then move it to ``path`` (the atomic temporary)."""
    from bioimageio.spec import save_bioimageio_package

    from segtrain.predict.package import quiet_bioimageio

    with quiet_bioimageio():
        written = save_bioimageio_package(descr, output_path=work / "package.zip")
    shutil.move(str(written), str(path))
