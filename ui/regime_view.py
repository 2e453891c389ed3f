"""Pure builders of the Results page's regime map (no Streamlit): the heat map of
:func:`pam_explorer.runs.regime_map.heat_map`, its cells' labels and the table of the map's cells.

Every number comes from the backend's map; this module only formats it.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import pandas as pd

from ui.figures import _figure
from ui.labels import DASH

if TYPE_CHECKING:
    import plotly.graph_objects as go

METHODS = {"taylor": "P2 (Taylor)", "vib": "P1 (VIB)"}
BASELINES = {"vs_B1": "vs B1 (no merging)", "vs_B2": "vs B2 (MTZ)"}
KIND_NAMES = {"average": "average", "peak": "peak"}
VERDICTS = {"above": "above 1", "below": "below 1", "no difference": "no difference",
            "single seed": "single seed"}
NOT_RUN = "not run"
NO_SEED = "no seed finished"
HOWTO = ("No regime map here yet: compute it with `python scripts/regime_map.py --rank flops-aware` "
         "(it writes results/regime_map/).")
# diverging around parity (gain 1): red = PAM costs more, blue = PAM costs less
GAP_COLOR = "#EEEEEE"  # a cell without a finished seed
COLORSCALE = [[0.0, "#D6604D"], [0.5, "#F7F7F7"], [1.0, "#4393C3"]]


def row_labels(grid: Mapping) -> list[str]:
    return [f"width {w:g}" for w in grid["widths"]]


def column_labels(grid: Mapping) -> list[str]:
    return [f"K = {k} ({b:.2f} bits)" for k, b in zip(grid["overlaps"], grid["mi_bits"])]


def cell_text(grid: Mapping, i: int, j: int) -> str:
    """What a cell says: mean gain, 95 % CI, seeds and verdict; or why it is empty."""
    mean = grid["mean"][i][j]
    if mean is None:
        return NOT_RUN if grid["folder"][i][j] is None else NO_SEED
    lo, hi = grid["ci95"][i][j]
    n = grid["n"][i][j]
    verdict = VERDICTS.get(grid["verdict"][i][j], str(grid["verdict"][i][j]))
    return f"<b>{mean:.2f}×</b><br>[{lo:.2f}, {hi:.2f}]<br>n = {n} · {verdict}"


def map_title(grid: Mapping, delta: float) -> str:
    return (f"PAM's {grid['kind']} gain {grid['vs'].replace('_', ' ')} under "
            f"{METHODS.get(grid['prune'], grid['prune'])} at delta {delta:g} (mean over seeds, 95 % CI)")


def fig_regime_map(grid: Mapping, delta: float) -> go.Figure:
    """Rows = headroom (LeNet-5 width), columns = relatedness (shared labels, I(Y^A;Y^B)),
    colour = PAM's mean gain (white at parity 1), grey where no seed finished, every cell
    annotated with :func:`cell_text`."""
    rows, cols = row_labels(grid), column_labels(grid)
    means = [v for row in grid["mean"] for v in row if v is not None]
    span = max([abs(v - 1) for v in means] + [0.25])  # symmetric around 1, at least 0.75 .. 1.25
    cells = {"type": "heatmap", "x": cols, "y": rows, "xgap": 3, "ygap": 3}
    gaps = {**cells, "name": NO_SEED, "z": [[0 if v is None else None for v in row] for row in grid["mean"]],
            "colorscale": [[0, GAP_COLOR], [1, GAP_COLOR]], "showscale": False, "hoverinfo": "skip"}
    heat = {**cells, "name": "mean gain", "z": grid["mean"], "colorscale": COLORSCALE, "zmin": 1 - span,
            "zmax": 1 + span, "hoverongaps": False,
            "colorbar": {"title": {"text": "mean gain"}, "thickness": 14},
            "hovertemplate": "%{y} · %{x}<br>mean gain %{z:.3f}<extra></extra>"}
    notes = [{"x": cols[j], "y": rows[i], "text": cell_text(grid, i, j), "showarrow": False,
              "font": {"size": 13, "color": "#111111"}, "bgcolor": "rgba(255,255,255,0.75)", "borderpad": 3}
             for i in range(len(rows)) for j in range(len(cols))]
    axis = {"type": "category", "showgrid": False}
    return _figure(map_title(grid, delta), [gaps, heat], annotations=notes,
                   height=150 + 130 * max(1, len(rows)),
                   xaxis={**axis, "title": {"text": "relatedness: labels B shares with A (I(Y^A;Y^B))"}},
                   yaxis={**axis, "title": {"text": "headroom: LeNet-5 width"}})


def cell_choices(grid: Mapping) -> dict[str, str]:
    """{folder: label} of the map's cells that have a folder (their runs), rows then columns."""
    out = {}
    for i, row in enumerate(grid["folder"]):
        for j, folder in enumerate(row):
            if folder is not None:
                out[folder] = f"{row_labels(grid)[i]} · {column_labels(grid)[j]} · {folder}"
    return out


def _gain_text(g: Mapping | None, kind: str) -> str:
    if not g:
        return DASH
    lo, hi = g[f"{kind}_ci95"]
    return f"{g[kind]:.3f} [{lo:.3f}, {hi:.3f}] {VERDICTS.get(g[f'{kind}_verdict'], g[f'{kind}_verdict'])}"


def missing_text(cell: Mapping) -> str:
    """Seeds planned but not finished, and read-offs missed (no checkpoint above the floor)."""
    done = set(cell["seeds"])
    parts = []
    left = [s for s in cell["seeds_planned"] if s not in done]
    if left:
        parts.append(f"seed{'s' if len(left) > 1 else ''} {', '.join(map(str, left))} not finished")
    for scheme, seeds in (cell.get("missing") or {}).items():
        parts.append(f"{scheme} missed the floor in seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}")
    return "; ".join(parts) or DASH


def cells_table(rmap: Mapping, prune: str, vs: str, kind: str) -> pd.DataFrame | None:
    """One row per cell of ``prune``: its axes, seeds, B1's compression per task (mean, min over
    seeds), PAM's gain (mean [95 % CI] verdict) and what is missing; None without such a cell."""
    rows = []
    for c in rmap["cells"]:
        if c["prune"] != prune:
            continue
        row = {"cell": c["folder"], "width": f"{c['width']:g}" if c["width"] else DASH,
               "shared labels (bits)": f"{c['overlap']} ({c['mi_bits']:.2f})" if c["overlap"] is not None
               else DASH, "seeds": f"{len(c['seeds'])} of {len(c['seeds_planned'])}"}
        for task, v in (c.get("b1_compression") or {}).items():
            row[f"B1 compression {task}"] = f"{v['mean']:.2f}× (min {v['min']:.2f}×)"
        row[f"gain {vs.replace('_', ' ')} ({kind})"] = _gain_text(c["gains"].get(vs), kind)
        row["missing"] = missing_text(c)
        rows.append(row)
    if not rows:
        return None
    frame = pd.DataFrame(rows).fillna(DASH).set_index("cell")
    b1 = [c for c in frame.columns if c.startswith("B1 ")]
    rest = [c for c in frame.columns if c not in b1]
    return frame[rest[:3] + b1 + rest[3:]]  # width, labels, seeds, B1 per task, gain, missing


__all__ = ["fig_regime_map", "cell_text", "cell_choices", "cells_table", "missing_text", "row_labels",
           "column_labels", "map_title", "METHODS", "BASELINES", "KIND_NAMES", "VERDICTS", "HOWTO",
           "NOT_RUN", "NO_SEED"]
