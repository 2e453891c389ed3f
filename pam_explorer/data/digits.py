"""Embedded "Multi-Label Digits": 2x2 grids of real 8x8 digits from ``sklearn.datasets.load_digits``.

Each picture holds four digit images drawn uniformly (with replacement across pictures) from a
pool of source images; label ``d`` is 1 iff digit ``d`` appears in at least one of the four cells.
The 1,797 source images are split once, stratified by class, into three disjoint pools
(train 60 % / val 15 % / test 25 %), so no source image is seen in more than one split.
Everything is composed in memory with vectorised tensor ops; nothing is cached on disk.

The grid composition (:func:`pool_split`, :func:`compose_grid`) is shared with the
Fashion-MNIST loader in :mod:`pam_explorer.data.real`.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from pam_explorer.core.config import DataConfig
from pam_explorer.core.errors import DataError

SPLITS = ("train", "val", "test")
DIGIT_NAMES: tuple[str, ...] = tuple(f"digit {d}" for d in range(10))
POOL_FRACTIONS = (0.60, 0.15, 0.25)  # train / val / test share of each class's source images
DIGITS_IMAGE_SIZE = 32  # natural picture size (DataConfig.image_size None): 16x16 cells


@dataclass(frozen=True)
class MultiLabelSplit:
    """One split of a multi-label data set.

    images: float32 (N, C, H, W), values in [0, 1].
    labels: float32 (N, L), values in {0, 1}.
    label_names: L names, one per label column.
    source_ids: int64 (N, K) indices of the source images each picture was built from
        (K = 4 grid cells for digits / Fashion-MNIST, K = 1 row of the attribute file for
        CelebA), or None when unknown.
    """

    images: torch.Tensor
    labels: torch.Tensor
    label_names: tuple[str, ...]
    source_ids: torch.Tensor | None = None

    def __post_init__(self) -> None:
        # Fail at construction, not deep inside a training loop, on mismatched shapes.
        if self.images.dim() != 4:
            raise DataError(f"images must be (N, C, H, W), got shape {tuple(self.images.shape)}")
        if self.labels.dim() != 2 or self.labels.shape[0] != self.images.shape[0]:
            raise DataError(
                f"labels must be (N, L) with N={self.images.shape[0]}, got {tuple(self.labels.shape)}"
            )
        if self.labels.shape[1] != len(self.label_names):
            raise DataError(
                f"{self.labels.shape[1]} label columns but {len(self.label_names)} label names"
            )
        if self.source_ids is not None and self.source_ids.shape[0] != self.images.shape[0]:
            raise DataError("source_ids must have one row per image")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_labels(self) -> int:
        return int(self.labels.shape[1])


def split_generator(seed: int, name: str) -> torch.Generator:
    """A generator per (seed, split name), so one split's size never changes another's pictures."""
    # crc32 is stable across processes, unlike hash() of a str.
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + zlib.crc32(name.encode()))


def pool_split(
    classes: torch.Tensor, seed: int, fractions: tuple[float, ...] = POOL_FRACTIONS
) -> list[torch.Tensor]:
    """Split source indices into disjoint pools, stratified by class.

    classes: int64 (M,) class of each source image.
    Returns one sorted int64 index tensor per fraction; together they partition range(M).
    """
    gen = split_generator(seed, "pools")
    bounds = torch.tensor(fractions, dtype=torch.float64).cumsum(0)
    pools: list[list[torch.Tensor]] = [[] for _ in fractions]
    for c in torch.unique(classes).tolist():
        idx = torch.nonzero(classes == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        # Rounded cumulative cut points keep every index in exactly one pool.
        cuts = [0] + [int(round(float(b) * len(idx))) for b in bounds[:-1]] + [len(idx)]
        for k in range(len(fractions)):
            pools[k].append(idx[cuts[k]: cuts[k + 1]])
    return [torch.sort(torch.cat(p)).values for p in pools]


def resize_cells(images: torch.Tensor, cell: int) -> torch.Tensor:
    """Bilinearly resize source images (M, C, h, w) in [0, 1] to (M, C, cell, cell) in [0, 1]."""
    x = images.float()
    if x.shape[-1] == cell and x.shape[-2] == cell:
        return x.clone()
    # Antialias only when shrinking (e.g. 28 -> 16), where plain bilinear would alias strokes.
    shrink = cell < x.shape[-1] or cell < x.shape[-2]
    out = F.interpolate(x, size=(cell, cell), mode="bilinear", align_corners=False, antialias=shrink)
    return out.clamp_(0.0, 1.0)  # antialiasing kernels can overshoot slightly


def compose_grid(
    cells: torch.Tensor,
    classes: torch.Tensor,
    pool: torch.Tensor,
    n: int,
    num_classes: int,
    image_size: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Compose n 2x2 pictures from a pool of pre-resized cells.

    cells: float32 (M, C, c, c); classes: int64 (M,); pool: int64 (P,) indices into cells.
    Returns images (n, C, image_size, image_size), labels (n, num_classes) in {0, 1},
    source_ids int64 (n, 4) in row-major cell order (top-left, top-right, bottom-left, bottom-right).
    """
    source_ids = pool[torch.randint(len(pool), (n, 4), generator=generator)]
    m, ch, c, _ = cells.shape
    # (n, 4, C, c, c) -> (n, C, 2, c, 2, c) -> (n, C, 2c, 2c): one gather + one reshape, no loop.
    grid = cells[source_ids].view(n, 2, 2, ch, c, c).permute(0, 3, 1, 4, 2, 5)
    images = grid.reshape(n, ch, 2 * c, 2 * c)
    if 2 * c != image_size:
        # Odd image_size: pad bottom/right with background rather than blur the digits.
        pad = image_size - 2 * c
        images = F.pad(images, (0, pad, 0, pad))
    labels = F.one_hot(classes[source_ids], num_classes).amax(dim=1).float()
    return images.contiguous(), labels, source_ids


@lru_cache(maxsize=1)
def digit_sources() -> tuple[torch.Tensor, torch.Tensor]:
    """The 1,797 sklearn digits: images float32 (1797, 1, 8, 8) scaled by 1/16 into [0, 1],
    classes int64 (1797,). Memoised in memory (read-only use).

    Read from the CSV file sklearn bundles (``sklearn/datasets/data/digits.csv.gz``: 64 pixel
    values, then the class, per row), exactly as ``sklearn.datasets.load_digits`` reads it, but
    without importing sklearn (and scipy), which takes seconds; ``load_digits`` when the file is
    not where this sklearn keeps it."""
    rows = _bundled_digits_csv()
    if rows is None:
        from sklearn.datasets import load_digits  # bundled with sklearn: no network access

        bunch = load_digits()
        return (torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0,
                torch.as_tensor(bunch.target, dtype=torch.int64))
    data = torch.tensor(rows, dtype=torch.float32)  # (1797, 65)
    return data[:, :64].reshape(-1, 1, 8, 8) / 16.0, data[:, 64].to(torch.int64)


def _bundled_digits_csv() -> list[list[float]] | None:
    """Rows of sklearn's digits.csv.gz, found without importing sklearn; None if absent."""
    import gzip
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    try:
        with gzip.open(path, "rt") as fh:
            rows = [[float(x) for x in line.split(",")] for line in fh if line.strip()]
    except OSError:
        return None
    return rows if rows and all(len(r) == 65 for r in rows) else None


def compose_splits(
    cells: torch.Tensor,
    classes: torch.Tensor,
    pools: list[torch.Tensor],
    config: DataConfig,
    label_names: tuple[str, ...],
) -> dict[str, MultiLabelSplit]:
    """Compose train/val/test from three disjoint pools; sizes from config, one generator each.

    cells: float32 (M, C, c, c) in [0, 1], or uint8 (M, C, c, c) in [0, 255] (composed as bytes,
    a quarter of the memory, then scaled to float32 [0, 1] per split: the same values).
    config.image_size must be set (see :meth:`DataConfig.sized`).
    """
    assert config.image_size is not None, "call DataConfig.sized(natural size) first"
    sizes = {"train": config.n_train, "val": config.n_val, "test": config.n_test}
    out: dict[str, MultiLabelSplit] = {}
    for name, pool in zip(SPLITS, pools):
        gen = split_generator(config.seed, name)
        images, labels, ids = compose_grid(
            cells, classes, pool, sizes[name], len(label_names), config.image_size, gen
        )
        if images.dtype == torch.uint8:
            images = images.float().div_(255.0)
        out[name] = MultiLabelSplit(images, labels, label_names, ids)
    return out


def load_digits_multilabel(config: DataConfig = DataConfig()) -> dict[str, MultiLabelSplit]:
    """Multi-Label Digits for ``config``: keys "train", "val", "test".

    Each split: images (N, 1, image_size, image_size) in [0, 1], labels (N, 10) where column d
    means "digit d is present", source_ids (N, 4) indices into ``load_digits()``.
    Deterministic for ``config.seed``; source pools of the three splits are disjoint.
    image_size None: 32.
    """
    config = config.sized(DIGITS_IMAGE_SIZE)
    images, classes = digit_sources()
    cells = resize_cells(images, config.image_size // 2)
    pools = pool_split(classes, config.seed)
    return compose_splits(cells, classes, pools, config, DIGIT_NAMES)


__all__ = [
    "MultiLabelSplit", "load_digits_multilabel", "DIGIT_NAMES", "SPLITS",
    "pool_split", "resize_cells", "compose_grid", "compose_splits", "split_generator",
    "digit_sources", "DIGITS_IMAGE_SIZE",
]
