"""Finding and reading sweeps on disk (for the dashboard): run folders holding a sweep.json.

:func:`find_sweeps` looks one level under each runs root (where the dashboard starts runs, or
where ``sweep --out runs/NAME`` puts one) with a stat per folder, no JSON read; callers cache
:func:`load_sweep` by (path, mtime), so a page rerun costs a directory listing.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pam_explorer.core.errors import DataError, DataMissing
from pam_explorer.runs.sweep_report import FORMAT
from pam_explorer.zoo.pretrained import DEFAULT_ARCH


@dataclass(frozen=True)
class SweepFile:
    """A sweep.json on disk: its path and modification time (ns), the cache key of its content."""

    path: str
    mtime_ns: int

    @property
    def folder(self) -> str:
        return str(Path(self.path).parent)


def find_sweeps(roots: Iterable[str | Path]) -> list[SweepFile]:
    """Every ``<root>/<folder>/sweep.json``, newest first."""
    found = []
    for root in roots:
        try:
            entries = list(os.scandir(root))
        except OSError:
            continue
        for entry in entries:
            path = os.path.join(entry.path, "sweep.json")
            try:
                found.append(SweepFile(path, os.stat(path).st_mtime_ns))
            except OSError:
                continue
    return sorted(found, key=lambda f: -f.mtime_ns)


def load_sweep(path: str | Path) -> dict:
    """A sweep.json, checked to be one (format, points, baselines); DataMissing / DataError."""
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataMissing(f"{path} not found") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not readable JSON ({exc})") from None
    if not (isinstance(raw, Mapping) and raw.get("format") == FORMAT and isinstance(raw.get("points"), list)
            and isinstance(raw.get("baselines"), Mapping)):
        raise DataError(f"{path} is not a sweep report ({FORMAT})")
    return dict(raw)


def read_points(folder: str | Path) -> list[dict]:
    """The job rows of ``folder``/points.json (the sweep's progress per point); [] if none yet."""
    try:
        raw = json.loads((Path(folder) / "points.json").read_text())
    except (OSError, ValueError):
        return []
    rows = raw.get("points") if isinstance(raw, Mapping) else None
    return [r for r in rows if isinstance(r, Mapping)] if isinstance(rows, list) else []


def matches(sweep: Mapping, preset: str, arch: str = DEFAULT_ARCH) -> bool:
    """Whether ``sweep`` measured ``preset`` on its committed ``arch`` networks and has a measured
    point (sweeps written before ``arch`` existed measured the default one)."""
    config = sweep.get("config") if isinstance(sweep.get("config"), Mapping) else {}
    return sweep.get("preset") == preset and config.get("arch", DEFAULT_ARCH) == arch \
        and any("flops" in p for p in sweep["points"])


__all__ = ["SweepFile", "find_sweeps", "load_sweep", "read_points", "matches"]
