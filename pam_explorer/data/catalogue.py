"""The built-in task presets and the data sets behind them, without torch.

A preset is a named split of a data set's label columns into tasks (:class:`Preset`). This module
holds the Preset class, the shape of every built-in data set (label count, channels, natural
picture size) and the built-in presets; it imports neither torch nor a loader, so the command
line can list the presets in ``--help`` at once. The registry, the loaders and the label tools
that need torch are in :mod:`pam_explorer.data.presets`.
"""
from __future__ import annotations

from dataclasses import dataclass

from pam_explorer.core.config import DataConfig
from pam_explorer.core.errors import ConfigError

# Per data set: label columns, image channels, and the picture side when DataConfig.image_size is
# None (the size the committed networks expect). tests/data/test_presets.py checks them against
# the loaders' own constants.
DATASET_NUM_LABELS: dict[str, int] = {"digits": 10, "fashion": 10, "celeba": 40, "mnist": 10}
DATASET_IN_CHANNELS: dict[str, int] = {"digits": 1, "fashion": 1, "celeba": 3, "mnist": 1}
DATASET_IMAGE_SIZE: dict[str, int] = {"digits": 32, "fashion": 32, "celeba": 32, "mnist": 56}


@dataclass(frozen=True)
class Preset:
    """Tasks of one data set: task k predicts label columns ``task_labels[k]``."""

    name: str
    dataset: str  # "digits" | "fashion" | "celeba" | "mnist"
    task_names: tuple[str, ...]
    task_labels: tuple[tuple[int, ...], ...]
    description: str
    # bits beyond chance (the default MI profile); 0.05 gave the lowest uniform-mix FLOPs of
    # 0.02 / 0.05 / 0.1 after finetuning and pruning (digits-2task, P2, seed 0; docs/estimator.md)
    default_alpha: float = 0.05

    def __post_init__(self) -> None:
        if self.dataset not in DATASET_NUM_LABELS:
            raise ConfigError(f"Preset {self.name!r}: unknown dataset {self.dataset!r}, "
                              f"known: {sorted(DATASET_NUM_LABELS)}")
        self._check_tasks(DATASET_NUM_LABELS[self.dataset])

    def _check_tasks(self, n: int) -> None:
        """ConfigError unless every task has a unique name without '+' and distinct columns in [0, n)."""
        if len(self.task_names) != len(self.task_labels) or len(self.task_names) < 1:
            raise ConfigError(f"Preset {self.name!r}: need one label tuple per task name")
        if len(set(self.task_names)) != len(self.task_names) or any("+" in t for t in self.task_names):
            # "+" joins task names into subset names (DESIGN: "A+B"), so it cannot appear inside one.
            raise ConfigError(f"Preset {self.name!r}: task names must be unique and contain no '+'")
        for t, cols in zip(self.task_names, self.task_labels):
            if not cols or len(set(cols)) != len(cols) or not all(0 <= c < n for c in cols):
                raise ConfigError(f"Preset {self.name!r}: task {t!r} needs distinct label "
                                  f"columns in [0, {n}), got {cols!r}")

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    @property
    def in_channels(self) -> int:
        """Channels of the data set's images (1 digits/fashion, 3 celeba); a property, not a field,
        so the trajectory cache keys (built from the preset's fields) stay as they were."""
        return DATASET_IN_CHANNELS[self.dataset]

    @property
    def image_size(self) -> int:
        """Natural picture side of the data set (used when DataConfig.image_size is None); a
        property for the same reason as in_channels."""
        return DATASET_IMAGE_SIZE[self.dataset]

    @property
    def key_name(self) -> str:
        """What stage-cache keys name the data by: the preset's name (a project: its content)."""
        return self.name

    @property
    def title(self) -> str:
        """A short name for run folders and downloads (a project: its ``name`` key)."""
        return self.name

    def data_config(self, config: DataConfig = DataConfig()) -> DataConfig:
        """``config`` with image_size filled in (its own, else :attr:`image_size`): the data this
        preset's loader composes, so cache keys of equal data are equal."""
        return config.sized(self.image_size)

    def task_index(self, task: int | str) -> int:
        """Position of a task given by index or name."""
        if isinstance(task, str):
            if task not in self.task_names:
                raise ConfigError(f"Preset {self.name!r} has no task {task!r}; tasks: "
                                  f"{list(self.task_names)}")
            return self.task_names.index(task)
        if not 0 <= task < self.num_tasks:
            raise ConfigError(f"Preset {self.name!r}: task index {task} out of range [0, {self.num_tasks})")
        return int(task)


@dataclass(frozen=True)
class SizedPreset(Preset):
    """A preset whose pictures are composed at ``size`` pixels instead of its data set's natural
    side (e.g. Multi-Label MNIST at 28 px: 2x2 grids of 14-px digits, a quarter of the FLOPs).
    A subclass, so the fields, and with them the trajectory keys, of every other preset stay."""

    size: int = 0  # picture side in pixels (>= 16: a 2x2 grid)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 16:
            raise ConfigError(f"Preset {self.name!r}: size must be an integer >= 16, got {self.size!r}")

    @property
    def image_size(self) -> int:
        return self.size


# The regime map's series (docs/regime_map.md): task A predicts digits 0-4 and task B five
# digits shifted by OVERLAPS[k] into A's, so both tasks keep 5 labels of the same per-label
# frequency (every digit is equally likely in every cell) and only their joint distribution
# changes; I(Y^A; Y^B) in bits for uniform digits (exact, by enumerating the 10^4 cell draws).
OVERLAPS = (0, 2, 4)
OVERLAP_MI = {0: 0.622, 1: 1.270, 2: 2.023, 3: 2.837, 4: 3.687}
HEADROOM_WIDTHS = {"": 1.0, "-wide": 4.0}  # preset infix -> LeNet-5 width of its committed networks
REGIME_SIZE = 28  # pixels: 2x2 grids of 14-px MNIST digits


def overlap_labels(k: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Label columns of tasks A and B sharing ``k`` labels (0 <= k <= 5): A = 0-4, B = 5-k .. 9-k."""
    return _r(0, 4), _r(5 - k, 9 - k)


def overlap_name(k: int, infix: str = "") -> str:
    """The preset of overlap ``k`` whose networks have the width of ``infix`` (HEADROOM_WIDTHS)."""
    return f"mnist28{infix}-overlap-{k}"


def _overlap_family() -> list[Preset]:
    out: list[Preset] = []
    for infix, width in HEADROOM_WIDTHS.items():
        room = "the width-1 control, no headroom" if width == 1 else f"width {width:g}, headroom"
        for k in OVERLAPS:
            a, b = overlap_labels(k)
            out.append(SizedPreset(
                overlap_name(k, infix), "mnist", ("A", "B"), (a, b),
                f"Multi-Label MNIST at {REGIME_SIZE} px; A: digits 0-4, B: digits {b[0]}-{b[-1]} ({k} shared "
                f"label(s), I(Y^A;Y^B) ~ {OVERLAP_MI[k]:.2f} bits); LeNet-5s at {room}", size=REGIME_SIZE))
    return out


def _r(lo: int, hi: int) -> tuple[int, ...]:
    return tuple(range(lo, hi + 1))


def builtin_presets() -> tuple[Preset, ...]:
    """The built-in presets in registration order. MI figures in descriptions are exact values for
    uniform digit classes (measured plug-in values on the default train split are within ~0.02 bits)."""
    return (*_digit_family("digits", "digits", ""),
            Preset("fashion-2task", "fashion", ("A", "B"), (_r(0, 4), _r(5, 9)),
                   "Multi-Label Fashion-MNIST; A: classes 0-4, B: classes 5-9"),
            Preset("celeba-2task", "celeba", ("A", "B"), (_r(0, 19), _r(20, 39)),
                   "CelebA attributes; A: attributes 0-19, B: attributes 20-39"),
            *_digit_family("mnist", "mnist", "Multi-Label MNIST (56x56); "),
            *_overlap_family())


def builtin_preset_names() -> list[str]:
    """Names of the built-in presets (what ``--preset`` offers)."""
    return [p.name for p in builtin_presets()]


def _digit_family(prefix: str, dataset: str, note: str) -> list[Preset]:
    """<prefix>-2task, -5task, -inclusion and -related-0..3 on a ten-digit data set (digits, mnist)."""
    out = [Preset(f"{prefix}-2task", dataset, ("A", "B"), (_r(0, 4), _r(5, 9)),
                  f"{note}A: digits 0-4, B: digits 5-9 (I(Y^A;Y^B) ~ 0.62 bits)"),
           Preset(f"{prefix}-5task", dataset, ("T1", "T2", "T3", "T4", "T5"),
                  tuple((2 * k, 2 * k + 1) for k in range(5)),
                  f"{note}Five tasks of two digits each: {{0,1}}, {{2,3}}, {{4,5}}, {{6,7}}, {{8,9}}"),
           Preset(f"{prefix}-inclusion", dataset, ("A", "B"), (_r(0, 9), _r(0, 4)),
                  f"{note}A: all ten digits, B: digits 0-4 (B's labels are a subset of A's)")]
    related = [  # (A, B, exact MI in bits): disjoint digit sets, larger sets couple more
        (_r(0, 1), _r(5, 6), 0.03),
        (_r(0, 2), _r(5, 7), 0.09),
        (_r(0, 2), _r(5, 9), 0.23),
        (_r(0, 2), _r(3, 9), 0.55),
    ]
    for k, (a, b, mi) in enumerate(related):
        out.append(Preset(
            f"{prefix}-related-{k}", dataset, ("A", "B"), (a, b),
            f"{note}A: digits {a[0]}-{a[-1]}, B: digits {b[0]}-{b[-1]} (I(Y^A;Y^B) ~ {mi:.2f} bits)"))
    return out


__all__ = ["Preset", "SizedPreset", "builtin_presets", "overlap_labels", "overlap_name", "OVERLAPS",
           "OVERLAP_MI", "HEADROOM_WIDTHS", "REGIME_SIZE", "builtin_preset_names", "DATASET_NUM_LABELS",
           "DATASET_IN_CHANNELS", "DATASET_IMAGE_SIZE"]
