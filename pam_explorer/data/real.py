"""Real-data loaders behind the Multi-Label Digits interface: Fashion-MNIST grids and CelebA.

Both read a local root laid out like torchvision's data sets: ``DataConfig.root``; if None,
the env var ``PAM_DATA_ROOT``; else ``./data_root`` (git-ignored):

    <root>/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    <root>/celeba/list_attr_celeba.txt
    <root>/celeba/list_eval_partition.txt
    <root>/celeba/img_align_celeba/*.jpg

When files are missing, a download through torchvision is tried ONLY if the env var
``PAM_ALLOW_DOWNLOAD=1`` is set (so tests and offline runs never hang on the network);
otherwise, or if that fails, DataMissing (a FileNotFoundError) says exactly which files to put where.
"""
from __future__ import annotations

import gzip
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from pam_explorer.core.config import DataConfig
from pam_explorer.core.errors import DataError, DataMissing
from pam_explorer.data.digits import (
    SPLITS,
    MultiLabelSplit,
    compose_splits,
    pool_split,
    resize_cells,
    split_generator,
)

FASHION_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte",
}
CELEBA_ATTRIBUTES: tuple[str, ...] = tuple(
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard "
    "Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair "
    "Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
    .split()
)
FASHION_VAL_FRACTION = 0.2  # share of the official training images reserved as the val pool
FASHION_IMAGE_SIZE = 32  # natural picture size (DataConfig.image_size None): 16x16 cells
CELEBA_IMAGE_SIZE = 32
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def data_root(config: DataConfig) -> Path:
    """The local data root: config.root, else $PAM_DATA_ROOT, else ./data_root."""
    return Path(config.root or os.environ.get("PAM_DATA_ROOT") or "data_root")


def _download_allowed() -> bool:
    return os.environ.get("PAM_ALLOW_DOWNLOAD") == "1"


def read_idx(path: Path) -> np.ndarray:
    """Parse an idx-ubyte file (optionally gzipped) into an array of its stored shape."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an idx file (bad magic number)")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    data = np.frombuffer(raw, dtype=_IDX_DTYPES[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims} but holds {data.size} values")
    return data.reshape(dims)


def _find_fashion_files(raw_dir: Path) -> dict[str, Path] | None:
    found: dict[str, Path] = {}
    for key, stem in FASHION_FILES.items():
        for cand in (raw_dir / stem, raw_dir / f"{stem}.gz"):
            if cand.is_file():
                found[key] = cand
                break
        else:
            return None
    return found


def _fashion_files(root: Path) -> dict[str, Path]:
    """Paths of the four Fashion-MNIST idx files, downloading them if allowed; else raise."""
    raw_dir = root / "FashionMNIST" / "raw"
    found = _find_fashion_files(raw_dir)
    if found is None and _download_allowed():
        try:
            from torchvision.datasets import FashionMNIST

            for train in (True, False):
                FashionMNIST(str(root), train=train, download=True)
        except Exception:  # network/mirror failures fall through to the clear error below
            pass
        found = _find_fashion_files(raw_dir)
    if found is None:
        names = ", ".join(f"{s}[.gz]" for s in FASHION_FILES.values())
        raise DataMissing(
            f"Fashion-MNIST not found: expected the files {names} in '{raw_dir}'. Put the files "
            "from https://github.com/zalandoresearch/fashion-mnist there (or set DataConfig.root / "
            "$PAM_DATA_ROOT to the folder holding FashionMNIST/raw), or set PAM_ALLOW_DOWNLOAD=1 "
            "to let torchvision download them."
        )
    return found


def load_fashion_multilabel(config: DataConfig = DataConfig()) -> dict[str, MultiLabelSplit]:
    """Multi-Label Fashion-MNIST: 2x2 grids of 28x28 items, composed like Multi-Label Digits.

    Each split: images (N, 1, image_size, image_size) in [0, 1], labels (N, 10) "class c is
    present", source_ids (N, 4) indices into the concatenation [official train (60k); t10k].
    Pools: the official training images are split 80/20 (stratified, by seed) into the train
    and val pools; the test pool is the whole t10k set, so the three pools are disjoint.
    image_size None: 32 (16x16 cells).
    """
    files = _fashion_files(data_root(config))
    arrays = {k: read_idx(p) for k, p in files.items()}
    return compose_idx_grids(arrays, config.sized(FASHION_IMAGE_SIZE), FASHION_CLASSES)


def compose_idx_grids(arrays: dict[str, np.ndarray], config: DataConfig,
                      label_names: tuple[str, ...]) -> dict[str, MultiLabelSplit]:
    """2x2 grids from an MNIST-format set (Fashion-MNIST, MNIST), composed like Multi-Label Digits.

    arrays: "train_images" uint8 (M_tr, 28, 28), "train_labels" (M_tr,), "test_images" uint8
    (M_te, 28, 28), "test_labels" (M_te,) as :func:`read_idx` returns them; config.image_size set.
    Pools: the official training images are split 80/20 (stratified, by seed) into the train and
    val pools; the test pool is the whole test set, so the three pools are disjoint. Returns
    images (N, 1, image_size, image_size) float32 in [0, 1], labels (N, 10), source_ids (N, 4)
    into [official train; test].
    """
    tr_x, te_x, tr_y, te_y = (arrays[k] for k in ("train_images", "test_images", "train_labels",
                                                  "test_labels"))
    if (tr_x.ndim != 3 or te_x.shape[1:] != tr_x.shape[1:] or tr_x.dtype != np.uint8
            or te_x.dtype != np.uint8 or (len(tr_x), len(te_x)) != (len(tr_y), len(te_y))):
        raise DataError(f"idx files do not fit together: images {tr_x.shape} {tr_x.dtype} / "
                        f"{te_x.shape} {te_x.dtype} (uint8 expected), labels {tr_y.shape} / {te_y.shape}")
    images = torch.from_numpy(np.concatenate([tr_x, te_x])).unsqueeze(1)
    classes = torch.from_numpy(np.concatenate([tr_y, te_y]).astype(np.int64))
    n_tr = len(tr_y)
    train_pool, val_pool = pool_split(
        classes[:n_tr], config.seed, (1.0 - FASHION_VAL_FRACTION, FASHION_VAL_FRACTION)
    )
    pools = [train_pool, val_pool, torch.arange(n_tr, len(classes))]
    cell = config.image_size // 2
    # native 28x28 cells are composed as bytes (compose_splits scales them), others resized in float
    cells = images if cell == images.shape[-1] else resize_cells(images.float() / 255.0, cell)
    return compose_splits(cells, classes, pools, config, label_names)


def _celeba_paths(root: Path) -> tuple[Path, Path, Path]:
    base = root / "celeba"
    return base / "list_attr_celeba.txt", base / "list_eval_partition.txt", base / "img_align_celeba"


def _celeba_present(root: Path) -> bool:
    attr, part, img_dir = _celeba_paths(root)
    return attr.is_file() and part.is_file() and img_dir.is_dir()


def _ensure_celeba(root: Path) -> None:
    """Make sure the CelebA tree exists, downloading it if allowed; else raise DataMissing."""
    if not _celeba_present(root) and _download_allowed():
        try:
            from torchvision.datasets import CelebA

            CelebA(str(root), split="all", target_type="attr", download=True)
        except Exception:  # Google Drive quota errors are common: fall through to the message
            pass
    if not _celeba_present(root):
        attr, part, img_dir = _celeba_paths(root)
        raise DataMissing(
            f"CelebA not found: expected '{attr}', '{part}' and the aligned images "
            f"'{img_dir}/*.jpg' (from the official CelebA 'Align&Cropped Images' and 'Anno'/'Eval' "
            "folders). Put them there (or set DataConfig.root / $PAM_DATA_ROOT to the folder "
            "holding celeba/), or set PAM_ALLOW_DOWNLOAD=1 to let torchvision try to download them."
        )


def read_celeba_tables(root: Path) -> tuple[list[str], torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Parse the attribute and partition files.

    Returns (file names (R,), attributes float32 (R, 40) in {0, 1}, partition int64 (R,) with
    0 = train / 1 = val / 2 = test, attribute names).
    """
    attr_path, part_path, _ = _celeba_paths(root)
    lines = attr_path.read_text().splitlines()
    names = tuple(lines[1].split())
    rows = [ln.split() for ln in lines[2:] if ln.strip()]
    files = [r[0] for r in rows]
    attrs = torch.tensor([[int(v) for v in r[1:]] for r in rows], dtype=torch.int64)
    if attrs.shape[1:] != (len(names),):
        raise DataError(f"{attr_path}: {len(names)} attribute names but rows of {attrs.shape[1:]}")
    part_of = {}
    for ln in part_path.read_text().splitlines():
        if ln.strip():
            fname, p = ln.split()
            part_of[fname] = int(p)
    missing = [f for f in files if f not in part_of]
    if missing:
        raise DataError(f"{part_path}: no partition for {len(missing)} files, e.g. {missing[0]}")
    partition = torch.tensor([part_of[f] for f in files], dtype=torch.int64)
    return files, (attrs > 0).float(), partition, names  # file stores -1/1


def _load_face(path: Path, size: int) -> torch.Tensor:
    """One face: centre square crop, resize to size x size; float32 (3, size, size) in [0, 1]."""
    from PIL import Image

    if not path.is_file():
        raise DataMissing(f"CelebA image missing: '{path}'")
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        # PIL's bilinear resize filters over the source support, i.e. antialiases when shrinking.
        im = im.crop((left, top, left + s, top + s)).resize((size, size), Image.BILINEAR)
        arr = np.asarray(im, dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def load_celeba_multilabel(config: DataConfig = DataConfig()) -> dict[str, MultiLabelSplit]:
    """CelebA attributes from the official train/val/test partition.

    Each split: images (N, 3, image_size, image_size) in [0, 1], labels (N, 40) in {0, 1},
    source_ids (N, 1) row indices into list_attr_celeba.txt. N = min(config size, partition
    size); when the partition is larger, a seeded random subset (kept in file order) is used.
    """
    config = config.sized(CELEBA_IMAGE_SIZE)
    root = data_root(config)
    _ensure_celeba(root)
    files, attrs, partition, names = read_celeba_tables(root)
    img_dir = _celeba_paths(root)[2]
    sizes = {"train": config.n_train, "val": config.n_val, "test": config.n_test}
    out: dict[str, MultiLabelSplit] = {}
    for p, split in enumerate(SPLITS):
        rows = torch.nonzero(partition == p).flatten()
        if len(rows) > sizes[split]:
            pick = torch.randperm(len(rows), generator=split_generator(config.seed, split))
            rows = torch.sort(rows[pick[: sizes[split]]]).values
        paths = [img_dir / files[i] for i in rows.tolist()]
        # JPEG decoding releases the GIL, so threads give a real speed-up on thousands of files.
        with ThreadPoolExecutor(max_workers=8) as pool:
            faces = list(pool.map(lambda q: _load_face(q, config.image_size), paths))
        images = torch.stack(faces) if faces else torch.zeros(0, 3, config.image_size, config.image_size)
        out[split] = MultiLabelSplit(images, attrs[rows], names, rows.unsqueeze(1))
    return out


__all__ = [
    "load_fashion_multilabel", "load_celeba_multilabel", "read_idx", "read_celeba_tables",
    "data_root", "compose_idx_grids", "FASHION_CLASSES", "CELEBA_ATTRIBUTES", "FASHION_IMAGE_SIZE",
    "CELEBA_IMAGE_SIZE",
]
