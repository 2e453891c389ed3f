"""The data files of a project (:mod:`pam_explorer.data.project`): a CSV with pictures, or an NPZ.

Both readers return a :class:`ProjectArrays`: images (N, C, S, S) uint8 (or float32 in [0, 1]
from an NPZ that stores floats, so pictures are not re-quantised), labels (N, L) uint8 in {0, 1}
for the L label columns the tasks use, and split codes (N,) int8 (0 train, 1 val, 2 test; None
when the project asks for a seeded split). Every malformed input raises a
:class:`~pam_explorer.core.errors.DataError` (a missing file: DataMissing) whose one-line
message names the file and the row, column or array: "labels.csv row 4 (line 5), column
'three': '2' is not 0 or 1 ...". Rows are numbered from 1 after the header; lines as an editor
shows them. Nothing here writes anything.

Pictures are PNG or JPEG, read with Pillow and converted to grey ("L") or RGB; a picture of
another size is resized (bilinear) only when the project says ``resize = true``.
"""
from __future__ import annotations

import csv
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pam_explorer.core.errors import DataError, DataMissing

SPLIT_NAMES = ("train", "val", "test")
PICTURE_FORMATS = ("PNG", "JPEG")
BINARY = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}  # the spellings of a label value a CSV may use
BINARY_NOTE = "only binary label columns are supported: 1 = the label is present, 0 = absent"


@dataclass(frozen=True)
class ProjectArrays:
    """A project's pictures and labels, checked (see the module docstring for shapes)."""

    images: np.ndarray
    labels: np.ndarray
    split: np.ndarray | None


@dataclass(frozen=True)
class PictureFormat:
    """How pictures must look: ``channels`` (1 grey, 3 RGB), side ``size`` in pixels, ``resize``."""

    channels: int
    size: int
    resize: bool


# --------------------------------------------------------------------------- CSV + pictures
def csv_header(path: Path) -> list[str]:
    """The column names of the CSV at ``path``; DataMissing / DataError naming the file."""
    rows = _csv_rows(path)
    header = next(rows, None)
    if not header or not any(h.strip() for h in header):
        raise DataError(f"{path.name} is empty: its first row must name the columns (path, split, labels)")
    names = [h.strip() for h in header]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(f"{path.name}: column(s) {dupes} appear more than once in the header")
    if "path" not in names:
        raise DataError(f"{path.name}: no 'path' column (columns: {', '.join(names)}); the header must "
                        "name the column of picture paths 'path'")
    return names


def read_csv(path: Path, images: Path, labels: Sequence[str], seeded: bool,
             fmt: PictureFormat) -> ProjectArrays:
    """Pictures, the ``labels`` columns and the split of the CSV at ``path``.

    ``images``: the folder the ``path`` column is relative to (a path may not leave it).
    ``seeded``: no split column is needed (the project asks for a seeded split).
    """
    names = csv_header(path)
    if "split" not in names and not seeded:
        raise DataError(f"{path.name}: no 'split' column; give every row train, val or test (the rows "
                        "your networks were trained on must not land in val or test), or set "
                        "split = \"seeded\" under [data] for a seeded 80/10/10 split")
    cols = [names.index(c) for c in labels]
    rows = _csv_rows(path)
    next(rows)  # the header
    pics, labs, codes = [], [], []
    for i, row in enumerate(rows, 1):
        if not any(cell.strip() for cell in row):
            continue  # a blank line (often the last one)
        where = f"{path.name} row {i} (line {i + 1})"
        if len(row) != len(names):
            raise DataError(f"{where}: {len(row)} fields, but the header has {len(names)}")
        labs.append([_binary(row[c], where, names[c]) for c in cols])
        if "split" in names:
            codes.append(_split_code(row[names.index("split")], where))
        pics.append(read_picture(_picture_path(images, row[names.index("path")], where), fmt, where))
    if not pics:
        raise DataError(f"{path.name} has a header but no rows: it needs one row per picture")
    split = np.asarray(codes, dtype=np.int8) if codes else None
    _check_splits(split, path.name)
    return ProjectArrays(np.stack(pics), np.asarray(labs, dtype=np.uint8).reshape(len(pics), len(cols)),
                         split)


def _csv_rows(path: Path):
    if not path.is_file():
        raise DataMissing(f"{path} does not exist (the project's CSV of pictures and labels)")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            yield from csv.reader(fh)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path.name} is not a readable UTF-8 CSV file ({exc})") from exc


def _binary(cell: str, where: str, column: str) -> int:
    value = BINARY.get(cell.strip())
    if value is None:
        raise DataError(f"{where}, column {column!r}: {cell.strip()!r} is not 0 or 1 ({BINARY_NOTE})")
    return value


def _split_code(cell: str, where: str) -> int:
    name = cell.strip().lower()
    if name not in SPLIT_NAMES:
        raise DataError(f"{where}, column 'split': {cell.strip()!r} is not one of train, val, test")
    return SPLIT_NAMES.index(name)


def _picture_path(images: Path, cell: str, where: str) -> Path:
    rel = cell.strip()
    if not rel:
        raise DataError(f"{where}, column 'path': empty; give the picture's path relative to {images}")
    full = (images / rel).resolve()
    if not full.is_relative_to(images.resolve()):
        raise DataError(f"{where}, column 'path': {rel!r} is outside the images folder {images}")
    return full


def read_picture(path: Path, fmt: PictureFormat, where: str) -> np.ndarray:
    """One picture as uint8 (C, S, S); ``where`` (file and row) starts every error message."""
    try:
        with Image.open(path) as im:
            kind = im.format
            im.load()
            pic = im.convert("L" if fmt.channels == 1 else "RGB")
    except FileNotFoundError as exc:
        raise DataMissing(f"{where}: picture {path} does not exist") from exc
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{where}: {path.name} cannot be read as a picture ({exc})") from exc
    if kind not in PICTURE_FORMATS:
        raise DataError(f"{where}: {path.name} is a {kind} file; pictures must be PNG or JPEG")
    if pic.size != (fmt.size, fmt.size):
        if not fmt.resize:
            raise DataError(f"{where}: {path.name} is {pic.size[0]}x{pic.size[1]} pixels, but image_size is "
                            f"{fmt.size} (set resize = true in the project file to resize pictures)")
        pic = pic.resize((fmt.size, fmt.size), Image.Resampling.BILINEAR)
    arr = np.asarray(pic, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


# --------------------------------------------------------------------------- NPZ
def npz_label_names(path: Path) -> list[str]:
    """The label column names of the NPZ at ``path``: its ``label_names``, else "0", "1", ..."""
    arrays = _open_npz(path)
    labels = _array(arrays, "labels", path)
    if labels.ndim != 2:
        raise DataError(f"{path.name}: labels has shape {labels.shape}; it must be (N, L), one 0/1 "
                        "column per label")
    if "label_names" not in arrays.files:
        return [str(i) for i in range(labels.shape[1])]
    names = _array(arrays, "label_names", path)
    if names.ndim != 1 or names.dtype.kind not in "US" or len(names) != labels.shape[1]:
        raise DataError(f"{path.name}: label_names must be {labels.shape[1]} strings (one per label "
                        f"column), got shape {names.shape} of {names.dtype}")
    out = [str(n.decode() if isinstance(n, bytes) else n) for n in names]
    if len(set(out)) != len(out):
        repeated = sorted({n for n in out if out.count(n) > 1})
        raise DataError(f"{path.name}: label_names repeat a name: {repeated}")
    return out


def read_npz(path: Path, columns: Sequence[int], seeded: bool, fmt: PictureFormat) -> ProjectArrays:
    """Pictures, the label ``columns`` and the split of the NPZ at ``path`` (see the project file)."""
    arrays = _open_npz(path)
    images, labels = _array(arrays, "images", path), _array(arrays, "labels", path)
    split = _array(arrays, "split", path) if "split" in arrays.files else None
    lengths = {"images": len(images), "labels": len(labels), **({"split": len(split)} if split is not None
                                                                 else {})}
    if len(set(lengths.values())) > 1:
        raise DataError(f"{path.name}: arrays of different lengths ("
                        + ", ".join(f"{k} {n}" for k, n in lengths.items())
                        + "); every array needs one row per picture")
    if split is None and not seeded:
        raise DataError(f"{path.name}: no 'split' array; give every picture train, val or test (the "
                        "pictures your networks were trained on must not land in val or test), or set "
                        "split = \"seeded\" under [data] for a seeded 80/10/10 split")
    labels = _npz_labels(labels[:, list(columns)], path, list(columns))
    codes = None if split is None else _npz_split(split, path)
    _check_splits(codes, path.name)
    return ProjectArrays(_npz_images(images, path, fmt), labels, codes)


def _open_npz(path: Path):
    if not path.is_file():
        raise DataMissing(f"{path} does not exist (the project's NPZ of pictures and labels)")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path.name} is not a readable .npz file ({exc})") from exc


def _array(arrays, key: str, path: Path) -> np.ndarray:
    if key not in arrays.files:
        raise DataError(f"{path.name}: no array {key!r} (it has: {', '.join(arrays.files) or 'none'})")
    try:
        return arrays[key]
    except ValueError as exc:  # an object array: loading it would unpickle
        raise DataError(f"{path.name}: array {key!r} holds Python objects, which are not loaded (no "
                        "pickles); store numbers, or strings as np.array(names, dtype=str)") from exc


def _npz_images(images: np.ndarray, path: Path, fmt: PictureFormat) -> np.ndarray:
    want = f"(N, {fmt.channels}, {fmt.size}, {fmt.size})"
    if images.ndim != 4 or images.shape[1] != fmt.channels:
        raise DataError(f"{path.name}: images has shape {images.shape}; the project needs {want} "
                        f"(channels = {fmt.channels})")
    if images.dtype == np.uint8:
        out = images
    elif images.dtype.kind == "f":
        out = images.astype(np.float32)
        lo, hi = (float(out.min()), float(out.max())) if out.size else (0.0, 0.0)
        if not (np.isfinite(out).all() and lo >= 0.0 and hi <= 1.0):
            raise DataError(f"{path.name}: float images must be finite and in [0, 1], got values in "
                            f"[{lo:g}, {hi:g}] (or store uint8 pictures, 0-255)")
    else:
        raise DataError(f"{path.name}: images are {images.dtype}; store uint8 (0-255) or float in [0, 1]")
    if images.shape[2:] != (fmt.size, fmt.size):
        if not fmt.resize:
            raise DataError(f"{path.name}: images are {images.shape[3]}x{images.shape[2]} pixels, but "
                            f"image_size is {fmt.size} (set resize = true in the project file to resize)")
        out = _resize(out, fmt.size)
    return out


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of (N, C, H, W) pictures with Pillow, per channel (dtype kept)."""
    mode = "L" if images.dtype == np.uint8 else "F"
    out = np.empty((*images.shape[:2], size, size), dtype=images.dtype)
    for n, pic in enumerate(images):
        for c, plane in enumerate(pic):
            small = Image.fromarray(plane, mode).resize((size, size), Image.Resampling.BILINEAR)
            out[n, c] = np.asarray(small)
    return np.clip(out, 0, 1) if mode == "F" else out


def _npz_labels(labels: np.ndarray, path: Path, columns: list[int]) -> np.ndarray:
    bad = ~np.isin(labels, (0, 1))
    if bad.any():
        row, col = (int(x) for x in np.argwhere(bad)[0])
        value = labels[row, col].item()
        raise DataError(f"{path.name}: labels[{row}, {columns[col]}] = {value!r} is not 0 or 1 "
                        f"({BINARY_NOTE})")
    return labels.astype(np.uint8)


def _npz_split(split: np.ndarray, path: Path) -> np.ndarray:
    if split.ndim != 1 or split.dtype.kind not in "US":
        raise DataError(f"{path.name}: split must be N strings (train, val or test), got shape {split.shape} "
                        f"of {split.dtype}")
    names = np.char.lower(np.char.strip(split.astype(str)))
    bad = ~np.isin(names, SPLIT_NAMES)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{path.name}: split[{i}] = {str(split[i])!r} is not one of train, val, test")
    return np.select([names == s for s in SPLIT_NAMES], [0, 1, 2]).astype(np.int8)


def _check_splits(split: np.ndarray | None, name: str) -> None:
    if split is None:
        return
    missing = [s for k, s in enumerate(SPLIT_NAMES) if not (split == k).any()]
    if missing:
        raise DataError(f"{name}: no picture has split {missing[0]!r}; train, val and test each need "
                        "pictures")


def seeded_split(n: int, seed: int = 0) -> np.ndarray:
    """Split codes (n,) of a seeded 80/10/10 split (train/val/test; each at least one picture)."""
    if n < 3:
        raise DataError(f"a seeded split needs at least 3 pictures, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = n_test = max(1, n // 10)
    codes = np.zeros(n, dtype=np.int8)
    codes[order[n - n_val - n_test:n - n_test]] = 1
    codes[order[n - n_test:]] = 2
    return codes


__all__ = ["ProjectArrays", "PictureFormat", "SPLIT_NAMES", "csv_header", "read_csv", "read_picture",
           "npz_label_names", "read_npz", "seeded_split"]
