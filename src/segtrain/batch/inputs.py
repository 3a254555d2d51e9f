"""What a batch runs over: the images named by folders, globs, files and multi-position files,
each with a unique output name (``key``) and, for plates, its well read from the file name."""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

from segtrain.errors import InputError

#: folders that are one image (containers), not folders of images
CONTAINER_SUFFIXES = (".zarr", ".n5")

#: well patterns tried in order on the file name (after a user's own pattern)
WELL_PATTERNS = (
    re.compile(r"(?i)(?<![a-z0-9])r(?P<row>\d{1,2})c(?P<col>\d{1,2})(?!\d)"),  # r01c01 (Opera / Operetta)
    re.compile(r"(?<![A-Za-z0-9])(?P<letter>[A-P])(?P<col>\d{1,2})(?!\d)"),  # A01, B3 (ImageXpress, most plates)
    re.compile(r"(?i)_(?P<site>s\d{1,4})(?!\d)"),  # _s1: a site / position (MetaMorph)
)


@dataclass(frozen=True)
class BatchImage:
    """One image of a batch: the file, the position inside a multi-position file (None: the whole
    file), the name its outputs are written under, and its well (None: none found)."""

    path: Path
    position: int | None
    key: str
    well: str | None

    def describe(self) -> str:
        return str(self.path) if self.position is None else f"{self.path} (position {self.position})"


def well_of(name: str, pattern: str | None = None) -> str | None:
    """The well (``A01``) or site (``s1``) a file name names, None when none is found.

    ``pattern``: a regular expression tried first; its group ``well`` (or ``row`` and ``col``, or
    its first group, or the whole match) is the well. Built in: ``r01c01`` and ``A01`` give
    ``A01``; ``_s1`` gives ``s1``."""
    if pattern:
        match = compiled_pattern(pattern).search(name)
        if match:
            groups = match.groupdict()
            if groups.get("well"):
                return groups["well"]
            if groups.get("row") and groups.get("col"):
                return _well(groups["row"], groups["col"])
            return match.group(1) if match.groups() and match.group(1) else match.group(0)
        return None
    for regex in WELL_PATTERNS:
        match = regex.search(name)
        if not match:
            continue
        groups = match.groupdict()
        if "site" in groups:
            return groups["site"].lower()
        if "letter" in groups:
            return f"{groups['letter']}{int(groups['col']):02d}"
        if 1 <= int(groups["row"]) <= 32:
            return _well(groups["row"], groups["col"])
    return None


def _well(row: str, col: str) -> str:
    if not row.isdigit():
        return f"{row.upper()}{int(col):02d}"
    r = int(row)
    letter = chr(ord("A") + r - 1) if 1 <= r <= 26 else f"R{r}"
    return f"{letter}{int(col):02d}"


def compiled_pattern(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as error:
        raise InputError(f"The well pattern {pattern!r} is not a regular expression ({error}); give one such "
                         r"as '(?P<well>[A-H]\d\d)'.") from None


def _natural(path: Path) -> list:
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", str(path))]


def _is_image_folder(path: Path) -> bool:
    return path.suffix.lower() in CONTAINER_SUFFIXES


def input_files(inputs: list[str | os.PathLike]) -> list[Path]:
    """The files (and container folders) that ``inputs`` name, in order, each once: a folder gives
    what lies directly in it (hidden entries and subfolders left out), a glob what it matches."""
    found: list[Path] = []
    for given in inputs:
        text = os.path.expanduser(str(given))
        path = Path(text)
        if path.is_dir() and not _is_image_folder(path):
            entries = [p for p in path.iterdir() if not p.name.startswith(".")
                       and (p.is_file() or _is_image_folder(p))]
            found.extend(sorted(entries, key=_natural))
        elif path.exists():
            found.append(path)
        elif glob.has_magic(text):
            matches = [Path(p) for p in glob.glob(text) if not Path(p).name.startswith(".")]
            if not matches:
                raise InputError(f"No file matches {text}; check the pattern (quote it so the shell leaves it).")
            found.extend(sorted(matches, key=_natural))
        else:
            raise InputError(f"{text} does not exist; give an image file, a folder of images or a glob.")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise InputError(f"No files in {', '.join(map(str, inputs))}; give a folder that holds images.")
    return unique


def positions_of(path: Path, model_ndim: int | None) -> int | None:
    """How many positions a file holds for a 2D model (a stack ``(N, y, x)``: N), None for one
    image (or a file whose shape cannot be read: the batch reports it when it reads it)."""
    if model_ndim != 2:
        return None
    import logging

    from segtrain.io import read_volume

    quiet = logging.getLogger("tifffile")
    quiet.disabled = True  # a damaged file is said once, in one sentence, when the batch reads it
    try:
        volume = read_volume(path)  # the axes segtrain reads (3 planes of a TIFF are channels)
        spatial = [n for n, a in zip(volume.data.shape, volume.axes) if a != "c"]
    except Exception:  # noqa: BLE001 - unreadable: the batch says so in one sentence when it gets there
        return None
    finally:
        quiet.disabled = False
    return int(spatial[0]) if len(spatial) == 3 and spatial[0] > 1 else None


def _keys(paths: list[Path]) -> list[str]:
    """Unique output names: the file names without extension, with the folders that tell them
    apart (``set01_raw`` for set01/raw.tif beside set02/raw.tif)."""
    stems = [p.name.split(".")[0] or p.name for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    common = Path(os.path.commonpath([str(p.parent) for p in paths]))
    keys = []
    for path, stem in zip(paths, stems):
        folders = path.parent.relative_to(common).parts
        keys.append("_".join([*folders, stem]))
    seen: dict[str, int] = {}
    unique = []
    for key in keys:  # a.tif beside a.png: a, a-2
        seen[key] = seen.get(key, 0) + 1
        unique.append(key if seen[key] == 1 else f"{key}-{seen[key]}")
    return unique


def batch_images(inputs: list[str | os.PathLike], model_ndim: int | None = None,
                 well_pattern: str | None = None) -> list[BatchImage]:
    """The images of a batch (:func:`input_files`), a multi-position file (a stack for a 2D model)
    giving one image per position, each with its key and well."""
    if well_pattern:
        compiled_pattern(well_pattern)  # a bad pattern: one sentence before any work
    paths = input_files(inputs)
    images = []
    for path, key in zip(paths, _keys(paths)):
        well = well_of(path.name, well_pattern) or well_of(path.parent.name, well_pattern)
        n = positions_of(path, model_ndim) if path.is_file() else None
        if n is None:
            images.append(BatchImage(path, None, key, well))
            continue
        for p in range(n):
            images.append(BatchImage(path, p, f"{key}_p{p:03d}", well_of(f"_s{p + 1}") if well is None else well))
    return images
