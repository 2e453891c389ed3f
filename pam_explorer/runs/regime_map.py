"""The regime map read off a study's stage records (pure of computation: JSON in, JSON out).

A study (:mod:`.study`) keeps one experiment folder per cell, ``ROOT/<preset>_<method>/`` with
``config.json`` and ``stages/<scheme>_s<seed>.json``. This module reads those records, takes the
seeds where all three schemes finished, reads every scheme's cost off its curves at tolerance
delta and summarises PAM's gains over seeds, as the experiment's report does
(:func:`pam_explorer.runs.report.at_tolerance`: average = mean over task subsets of
c_baseline / c_PAM, peak = max, per seed, then mean and 95 % CI over seeds: a t-interval below 5
seeds, a percentile bootstrap from 5). Each cell also gives B1's compression per task (the
unpruned network's FLOPs over those read off, per seed): the headroom it actually had.

The axes: headroom = the LeNet-5 width of the cell's committed networks, relatedness = the shared
labels of the overlap series and their I(Y^A; Y^B) in bits (data/catalogue.py); a cell of another
preset sits on neither axis (its preset name is its label).
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from pam_explorer.core.errors import DataError
from pam_explorer.data.catalogue import HEADROOM_WIDTHS, OVERLAP_MI, OVERLAPS, overlap_name
from pam_explorer.runs import report as rep
from pam_explorer.runs import stats
from pam_explorer.runs.experiment_config import SCHEMES
from pam_explorer.runs.readoff import figures_at
from pam_explorer.runs.stage_run import RECORD_META

MAP_FORMAT = "pam-explorer-regime-map/1"
GAINS = ("vs_B1", "vs_B2")
KINDS = ("average", "peak")
METHOD_NAMES = {"taylor": "P2", "vib": "P1"}


def axes_of(preset: str) -> dict:
    """{"width": LeNet-5 width or None, "overlap": shared labels or None, "mi_bits": I(Y^A;Y^B)
    or None} of a preset of the regime map's series."""
    for infix, width in HEADROOM_WIDTHS.items():
        for k in OVERLAPS:
            if overlap_name(k, infix) == preset:
                return {"width": width, "overlap": k, "mi_bits": OVERLAP_MI[k]}
    return {"width": None, "overlap": None, "mi_bits": None}


def cell_records(folder: Path) -> tuple[dict, dict[int, dict[str, dict]]]:
    """(config.json, {seed: {scheme: stage record}}) of a cell folder; stage records are read
    as they are (no key check: a committed record is data to read, not a stage to resume)."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{folder / 'config.json'} is not a readable cell configuration ({exc})") from None
    records: dict[int, dict[str, dict]] = {}
    for seed in config.get("seeds", []):
        for name in SCHEMES:
            path = folder / "stages" / f"{name}_s{seed}.json"
            if path.is_file():
                records.setdefault(int(seed), {})[name] = _read(path)
    return config, records


def _read(path: Path) -> dict:
    """A stage record as it is, without its key and version. Unlike ``stage_run.read_record`` it
    accepts a published-schedule record whose figures are null (no checkpoint above the floor):
    that is a result of the map (the scheme missed the floor in that seed), not a broken file."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"stage record {path} cannot be read ({exc}); delete it to recompute that "
                        "stage") from None
    if not isinstance(record, dict):
        raise DataError(f"stage record {path} holds a JSON {type(record).__name__}, not a stage record")
    record.pop(RECORD_META, None)
    return record


def b1_compression(record: Mapping, delta: float, tasks: Sequence[str]) -> dict[str, float] | None:
    """{task: unpruned FLOPs / FLOPs read off at ``delta``} of a B1 stage record of the
    published schedule (None without a curve or without a checkpoint above the floor)."""
    curves = record.get("curve")
    figures = figures_at(record, delta, tasks) if isinstance(curves, Mapping) else None
    if figures is None:
        return None
    return {t: curves[t][0]["flops"][t] / curves[t][figures["points"][t]]["flops"][t] for t in tasks}


def summarise_cell(config: Mapping, records: Mapping[int, Mapping[str, Mapping]], delta: float,
                   tasks: Sequence[str]) -> dict:
    """One cell of the map (see the module docstring) from its config and stage records."""
    planned = [int(s) for s in config.get("seeds", [])]
    complete = [s for s in planned if set(records.get(s, {})) >= set(SCHEMES)]
    out: dict = {"preset": config["preset"], "prune": config["prune"],
                 "method": METHOD_NAMES.get(config["prune"], config["prune"]), "rank": config.get("rank"),
                 "pace": config.get("pace", "flops"),
                 **axes_of(config["preset"]), "seeds_planned": planned, "seeds": complete,
                 "complete": complete == planned, "gains": {}, "flops": {}, "missing": {}}
    if not complete:
        return out
    at = rep.at_tolerance({str(s): records[s] for s in complete}, delta, tasks)
    out["gains"] = dict(at["gains"])
    out["flops"] = {name: row.get("flops") for name, row in at["schemes"].items()}
    out["missing"] = at["missing"]
    comp = {s: b1_compression(records[s]["B1"], delta, tasks) for s in complete}
    per_task = {t: [c[t] for c in comp.values() if c is not None] for t in tasks}
    out["b1_compression"] = {t: {"mean": stats.mean(v), "min": min(v), "per_seed": v}
                             for t, v in per_task.items() if v}
    return out


def regime_map(root: str | Path, delta: float = 0.5, folders: Sequence[str] | None = None) -> dict:
    """The map of every cell folder under ``root`` (or of ``folders``, in that order; a folder
    without config.json is skipped): {"format", "delta", "cells": [cell, ...]}, each cell as
    :func:`summarise_cell` gives it plus its ``folder``."""
    from pam_explorer.data import get_preset

    root = Path(root)
    names = list(folders) if folders is not None else sorted(
        p.name for p in root.iterdir() if (p / "config.json").is_file()) if root.is_dir() else []
    cells = []
    for name in names:
        if not (root / name / "config.json").is_file():
            continue
        config, records = cell_records(root / name)
        tasks = list(get_preset(config["preset"]).task_names)
        cells.append({"folder": name, **summarise_cell(config, records, delta, tasks)})
    return {"format": MAP_FORMAT, "delta": float(delta), "cells": cells}


def heat_map(rmap: Mapping, prune: str = "taylor", vs: str = "vs_B1", kind: str = "average") -> dict:
    """The grid the dashboard draws for one method, baseline and gain kind: rows = headroom
    (LeNet-5 widths, ascending), columns = relatedness (shared labels, ascending; "mi_bits" gives
    their I(Y^A;Y^B)); per cell the mean gain, its 95 % CI [lo, hi], the verdict ("above" /
    "below" / "no difference" / "single seed"), the seeds and the cell's folder (its runs), or None
    where the map has no finished seed. Cells off the axes are left out."""
    on_axes = [c for c in rmap["cells"] if c["prune"] == prune and c["width"] is not None]
    widths = sorted({c["width"] for c in on_axes})
    overlaps = sorted({c["overlap"] for c in on_axes})
    grid = lambda: [[None] * len(overlaps) for _ in widths]  # noqa: E731
    out = {"prune": prune, "vs": vs, "kind": kind, "widths": widths, "overlaps": overlaps,
           "mi_bits": [OVERLAP_MI[k] for k in overlaps], "mean": grid(), "ci95": grid(), "verdict": grid(),
           "n": grid(), "folder": grid()}
    for c in on_axes:
        i, j = widths.index(c["width"]), overlaps.index(c["overlap"])
        out["folder"][i][j] = c["folder"]
        g = c["gains"].get(vs)
        if g:
            out["mean"][i][j], out["ci95"][i][j] = g[kind], g[f"{kind}_ci95"]
            out["verdict"][i][j], out["n"][i][j] = g[f"{kind}_verdict"], g["n"]
    return out


def markdown(rmap: Mapping) -> str:
    """The map as a table: a row per cell, PAM's gains with 95 % CIs and verdicts."""
    head = ["cell", "method", "width", "shared labels (bits)", "seeds", "B1 compression A / B"] + [
        f"{k} {vs.replace('_', ' ')}" for vs in GAINS for k in KINDS]
    paces = sorted({c.get("pace", "flops") for c in rmap["cells"]})
    lines = [f"Regime map at tolerance {rmap['delta']} (gains of PAM, mean [95 % CI] over seeds, "
             f"verdict); schedule pace {' / '.join(paces) or '-'}.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in rmap["cells"]:
        comp = c.get("b1_compression", {})
        row = [c["folder"], c["method"], f"{c['width']:g}" if c["width"] else "-",
               f"{c['overlap']} ({c['mi_bits']:.2f})" if c["overlap"] is not None else "-",
               f"{len(c['seeds'])}/{len(c['seeds_planned'])}",
               " / ".join(f"{v['mean']:.2f}x (min {v['min']:.2f})" for v in comp.values()) or "-"]
        for vs in GAINS:
            for k in KINDS:
                g = c["gains"].get(vs)
                row.append("-" if not g else f"{g[k]:.3f} [{g[k + '_ci95'][0]:.3f}, {g[k + '_ci95'][1]:.3f}] "
                                             f"{g[k + '_verdict']}")
        lines.append("| " + " | ".join(row) + " |")
    notes = [f"{c['folder']}: no checkpoint above the floor in seed(s) {c['missing']}; its gains are over "
             "the other seeds." for c in rmap["cells"] if c["missing"]]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


__all__ = ["regime_map", "summarise_cell", "cell_records", "b1_compression", "heat_map", "markdown",
           "axes_of", "MAP_FORMAT", "GAINS", "KINDS"]
