"""A project file: the user's own labelled pictures and single-task networks, as a TOML file.

:func:`read_project` reads ``pam.toml`` (stdlib ``tomllib``), checks it and its data, and returns
a :class:`ProjectPreset`: a :class:`~pam_explorer.data.catalogue.Preset` whose name is the file's
absolute path (``get_preset(path)`` resolves it again), so the explorer, the experiment, the
sweep and export use a project wherever they use a preset. The contract (README, "Your own
networks and data")::

    name = "shop-attributes"     # run folders and exports
    image_size = 56              # pictures are this size (pixels, square, >= 16)
    resize = false               # true: resize other sizes; false: another size is an error
    channels = 1                 # 1 (grey) or 3 (RGB)
    alpha = 0.05                 # optional: the explorer's first alpha (bits)
    [data]
    csv = "labels.csv"           # columns path, split (train/val/test) and 0/1 labels
    images = "pictures"          # the folder `path` is relative to (default: this file's)
    # or npz = "data.npz"        # images (N, C, H, W) uint8 / float in [0, 1], labels (N, L) 0/1,
    #                            # split (N,), label_names (L,)
    # split = "seeded"           # no split column: a seeded 80/10/10 split (warns: leakage risk)
    [tasks.A]
    labels = ["zero", "one"]     # label columns this task predicts (may overlap other tasks')
    net = "nets/A.safetensors"   # optional (default nets/<task>.safetensors, what `train` writes)
    arch = "lenet5"              # a registered architecture; other keys are its options

Paths are relative to the file's folder. Every error names the file and the key, row or column.
The data is read once per process (memoised on the files' sizes and times). Networks are
loaded by :mod:`pam_explorer.graph.networks`; here they are only named, and hashed for
:meth:`ProjectPreset.content_key`.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import math
import tomllib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pam_explorer.core.config import DataConfig
from pam_explorer.core.errors import ConfigError, DataError, DataMissing
from pam_explorer.data import project_files as pf
from pam_explorer.data.catalogue import Preset
from pam_explorer.data.digits import MultiLabelSplit

PROJECT_SUFFIX = ".toml"
NETS_DIR = "nets"  # where `train --project` writes a task's network that the file does not name
TOP_KEYS = ("name", "image_size", "resize", "channels", "alpha", "description", "data", "tasks")
DATA_KEYS = ("csv", "images", "npz", "split")
TASK_KEYS = ("labels", "net", "arch")  # any other key of a task is an architecture option
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskNet:
    """Where a task's network is and how it is built: ``path`` (absolute), ``named`` (the file
    names it; False: the default nets/<task>.safetensors), ``arch`` (None: from the checkpoint's
    sidecar) and architecture ``options`` as sorted (key, value) pairs."""

    path: str
    named: bool
    arch: str | None
    options: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class ProjectPreset(Preset):
    """A project as a preset (see the module docstring). ``name`` is the file's absolute path;
    ``task_labels`` index ``label_names``, the label columns the tasks use."""

    project_name: str = ""
    channels: int = 1
    size: int = 32
    resize: bool = False
    label_names: tuple[str, ...] = ()
    nets: tuple[TaskNet, ...] = ()
    data_key: str = ""  # sha256 of the pictures, labels, label names and split

    def __post_init__(self) -> None:
        if self.dataset != "project":
            raise ConfigError(f"ProjectPreset.dataset: must be 'project', got {self.dataset!r}")
        self._check_tasks(len(self.label_names))

    @property
    def in_channels(self) -> int:
        return self.channels

    @property
    def image_size(self) -> int:
        return self.size

    @property
    def key_name(self) -> str:
        return f"project:{self.data_key}"

    @property
    def title(self) -> str:
        return self.project_name

    @property
    def folder(self) -> Path:
        return Path(self.name).parent

    def data_config(self, config: DataConfig = DataConfig()) -> DataConfig:
        """``config`` at the project's picture size (its own size does not apply)."""
        return dataclasses.replace(config, image_size=self.size)

    def load_splits(self, config: DataConfig = DataConfig()) -> dict[str, MultiLabelSplit]:
        """Train/val/test as float32 pictures (N, C, S, S) in [0, 1] and labels (N, L). A split
        with more pictures than ``config.n_train`` / ``n_val`` / ``n_test`` keeps that many,
        drawn with ``config.seed`` (a compute budget, as on presets); smaller ones keep their order."""
        arrays = _data_of(self)
        out = {}
        caps = (config.n_train, config.n_val, config.n_test)
        for code, (split, cap) in enumerate(zip(pf.SPLIT_NAMES, caps)):
            idx = np.flatnonzero(arrays.split == code)
            if len(idx) > cap:
                idx = np.sort(np.random.default_rng([config.seed, code]).choice(idx, cap, replace=False))
            images = torch.from_numpy(arrays.images[idx])
            images = images.float().div_(255) if images.dtype == torch.uint8 else images.float()
            out[split] = MultiLabelSplit(images, torch.from_numpy(arrays.labels[idx]).float(),
                                         self.label_names)
        return out

    def split_sizes(self) -> dict[str, int]:
        """Pictures per split in the project's data (before any cap)."""
        codes = _data_of(self).split
        return {s: int((codes == k).sum()) for k, s in enumerate(pf.SPLIT_NAMES)}

    def task_label_names(self) -> dict[str, list[str]]:
        """{task: its label names} in task order."""
        return {t: [self.label_names[c] for c in cols] for t, cols in zip(self.task_names, self.task_labels)}

    def content_key(self) -> str:
        """What a run of this project depends on beyond settings: the data (pictures, labels,
        split), the tasks' label columns and every network file's bytes (a missing one as
        missing). Run configurations record it (ExperimentConfig.project_key)."""
        h = hashlib.sha256(self.data_key.encode())
        for t, cols, net in zip(self.task_names, self.task_labels, self.nets):
            h.update(repr((t, [self.label_names[c] for c in cols], net.arch, net.options)).encode())
            h.update(_file_hash(net.path).encode())
        return h.hexdigest()[:32]


# --------------------------------------------------------------------------- reading
def read_project(path: str | Path) -> ProjectPreset:
    """The checked project of the file ``path`` (see the module docstring).

    Raises DataMissing for a missing file, DataError (file, key / row / column in the message)
    for anything malformed, ConfigError for a bad setting; nothing is written.
    """
    path = Path(path).expanduser().absolute()
    if not path.is_file():
        raise DataMissing(f"project file {path} does not exist")
    raw = _parse(path)
    return _read(str(path), _stamps(path, raw))


def _parse(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path.name} is not a valid TOML file ({exc})") from exc


def _stamps(path: Path, raw: dict) -> tuple:
    """Sizes and modification times of the file and its data files (the memo's key)."""
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    files = [path] + [path.parent / str(data[k]) for k in ("csv", "npz", "images") if k in data]
    return tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) if f.exists() else (str(f),)
                 for f in files)


@functools.lru_cache(maxsize=4)
def _read(path: str, stamps: tuple) -> ProjectPreset:
    file = Path(path)
    raw = _parse(file)
    where = file.name
    _no_unknown(raw, TOP_KEYS, where, "")
    fmt = pf.PictureFormat(_channels(raw, where), _size(raw, where), _bool(raw, "resize", False, where))
    data = _table(raw, "data", where)
    tasks = _tasks(raw, where)
    names, task_cols = _label_columns(file, data, tasks, where)
    labels = tuple(_used(tasks))
    arrays = _arrays(file, data, labels, [names.index(n) for n in labels], fmt, where)
    key = _data_key(arrays, labels)
    _DATA[key] = arrays
    while len(_DATA) > 4:
        _DATA.popitem(last=False)
    return ProjectPreset(
        name=path, dataset="project", task_names=tuple(tasks),
        task_labels=tuple(tuple(labels.index(n) for n in task_cols[t]) for t in tasks),
        description=str(raw.get("description") or f"project {raw.get('name') or file.stem} ({file})"),
        default_alpha=_alpha(raw, where), project_name=_name(raw, file), channels=fmt.channels,
        size=fmt.size, resize=fmt.resize, label_names=labels,
        nets=tuple(_task_net(file, t, spec, where) for t, spec in tasks.items()), data_key=key)


_DATA: OrderedDict[str, pf.ProjectArrays] = OrderedDict()  # data_key -> arrays, the last few read


def _data_of(project: ProjectPreset) -> pf.ProjectArrays:
    if project.data_key not in _DATA:  # evicted: read the files again; they must hold the same data
        _read.cache_clear()
        if read_project(project.name).data_key != project.data_key:
            raise DataError(f"{Path(project.name).name}: the project's data changed on disk since it was "
                            "opened; open it again")
    return _DATA[project.data_key]


def _no_unknown(table: dict, known: tuple[str, ...], where: str, prefix: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise DataError(f"{where}: unknown key {prefix}{unknown[0]!r}; known keys: {', '.join(known)}")


def _table(raw: dict, key: str, where: str) -> dict:
    value = raw.get(key)
    if not isinstance(value, dict):
        raise DataError(f"{where}: missing [{key}] table" if value is None else
                        f"{where}: {key} must be a table ([{key}]), got {value!r}")
    return value


def _int_key(raw: dict, key: str, where: str, default: int | None, lo: int, hi: int) -> int:
    value = raw.get(key, default)
    if value is None:
        raise DataError(f"{where}: missing key {key!r} (an integer in [{lo}, {hi}])")
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise DataError(f"{where}: {key} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _size(raw: dict, where: str) -> int:
    return _int_key(raw, "image_size", where, None, 16, 1024)


def _channels(raw: dict, where: str) -> int:
    value = _int_key(raw, "channels", where, 1, 1, 3)
    if value == 2:
        raise DataError(f"{where}: channels must be 1 (grey) or 3 (RGB), got 2")
    return value


def _bool(raw: dict, key: str, default: bool, where: str) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise DataError(f"{where}: {key} must be true or false, got {value!r}")
    return value


def _alpha(raw: dict, where: str) -> float:
    value = raw.get("alpha", Preset.default_alpha)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not (math.isfinite(value)
                                                                              and value >= 0):
        raise DataError(f"{where}: alpha must be a number of bits >= 0, got {value!r}")
    return float(value)


def _name(raw: dict, file: Path) -> str:
    value = raw.get("name", file.parent.name or file.stem)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{file.name}: name must be a non-empty string, got {value!r}")
    return value.strip()


def _tasks(raw: dict, where: str) -> dict[str, dict]:
    tasks = _table(raw, "tasks", where)
    for t, spec in tasks.items():
        if not isinstance(spec, dict):
            raise DataError(f"{where}: tasks.{t} must be a table ([tasks.{t}]), got {spec!r}")
        if "+" in t or not t.strip():
            raise DataError(f"{where}: task name {t!r} must be non-empty without '+' (it joins task names)")
        labels = spec.get("labels")
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise DataError(f"{where}: tasks.{t}.labels must be a list of label column names, got {labels!r}")
        if not labels:
            raise DataError(f"{where}: tasks.{t}.labels is empty; every task needs at least one label")
        if len(set(labels)) != len(labels):
            raise DataError(f"{where}: tasks.{t}.labels names a column twice: {labels}")
    if len(tasks) < 2:
        raise DataError(f"{where}: {len(tasks)} task(s) ({', '.join(tasks) or 'none'}); PAM merges at least "
                        "2 networks: add another [tasks.NAME] table")
    return tasks


def _used(tasks: dict[str, dict]) -> list[str]:
    """The label columns the tasks use, in order of first use."""
    return list(dict.fromkeys(n for spec in tasks.values() for n in spec["labels"]))


def _label_columns(file: Path, data: dict, tasks: dict[str, dict], where: str
                   ) -> tuple[list[str], dict[str, list[str]]]:
    """(the data's label column names, {task: its label names}); DataError for an unknown one."""
    _no_unknown(data, DATA_KEYS, where, "data.")
    sources = [k for k in ("csv", "npz") if k in data]
    if len(sources) != 1:
        raise DataError(f"{where}: [data] needs exactly one of csv = \"FILE.csv\" or npz = \"FILE.npz\", "
                        f"got {sources or 'neither'}")
    src = file.parent / _str(data, sources[0], where)
    if sources[0] == "csv":
        names = [n for n in pf.csv_header(src) if n not in ("path", "split")]
    else:
        names = pf.npz_label_names(src)
    for t, spec in tasks.items():
        unknown = [n for n in spec["labels"] if n not in names]
        if unknown:
            raise DataError(f"{where}: tasks.{t}.labels names {unknown[0]!r}, which is not a label column of "
                            f"{src.name} (its label columns: {', '.join(names) or 'none'})")
    return names, {t: spec["labels"] for t, spec in tasks.items()}


def _str(table: dict, key: str, where: str) -> str:
    value = table[key]
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: {key} must be a file or folder name (a string), got {value!r}")
    return value


def _arrays(file: Path, data: dict, labels: tuple[str, ...], columns: list[int], fmt: pf.PictureFormat,
            where: str) -> pf.ProjectArrays:
    """The data of the label columns ``labels`` (their positions among the NPZ's: ``columns``)."""
    split = data.get("split", "column")
    if split not in ("column", "seeded"):
        raise DataError(f"{where}: data.split must be \"column\" (the data's split) or \"seeded\", "
                        f"got {split!r}")
    seeded = split == "seeded"
    if "csv" in data:
        images = file.parent / (_str(data, "images", where) if "images" in data else ".")
        if not images.is_dir():
            raise DataMissing(f"{where}: data.images = {data['images']!r}: folder {images} does not exist")
        arrays = pf.read_csv(file.parent / data["csv"], images, labels, seeded, fmt)
    else:
        arrays = pf.read_npz(file.parent / data["npz"], columns, seeded, fmt)
    if seeded:
        log.warning("%s: split = \"seeded\": a seeded 80/10/10 split; pictures your networks were trained "
                    "on may land in val or test, which makes their accuracy look better than it is", where)
        arrays = pf.ProjectArrays(arrays.images, arrays.labels, pf.seeded_split(len(arrays.images)))
    return arrays


def _data_key(arrays: pf.ProjectArrays, labels: tuple[str, ...]) -> str:
    h = hashlib.sha256(repr((labels, arrays.images.dtype.str, arrays.images.shape)).encode())
    for a in (arrays.images, arrays.labels, arrays.split):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:32]


def _task_net(file: Path, task: str, spec: dict, where: str) -> TaskNet:
    arch = spec.get("arch")
    if arch is not None and (not isinstance(arch, str) or not arch):
        raise DataError(f"{where}: tasks.{task}.arch must be an architecture name, got {arch!r}")
    net = spec.get("net")
    if net is not None and (not isinstance(net, str) or not net.strip()):
        raise DataError(f"{where}: tasks.{task}.net must be a file name, got {net!r}")
    path = file.parent / (net if net is not None else f"{NETS_DIR}/{task}.safetensors")
    options = tuple(sorted((k, v) for k, v in spec.items() if k not in TASK_KEYS))
    return TaskNet(str(path.absolute()), net is not None, arch, options)


@functools.lru_cache(maxsize=64)
def _file_hash_at(path: str, stamp: tuple) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if stamp else "missing"


def _file_hash(path: str) -> str:
    p = Path(path)
    return _file_hash_at(path, (p.stat().st_mtime_ns, p.stat().st_size) if p.is_file() else ())


def project_option(project: ProjectPreset, task: str, key: str) -> str:
    """The project file's name for a task's key, for messages: "pam.toml: tasks.A.net"."""
    if task not in project.task_names:
        raise ConfigError(f"{Path(project.name).name} has no task {task!r}; "
                          f"tasks: {list(project.task_names)}")
    return f"{Path(project.name).name}: tasks.{task}.{key}"


__all__ = ["ProjectPreset", "TaskNet", "read_project", "project_option", "PROJECT_SUFFIX", "NETS_DIR"]
