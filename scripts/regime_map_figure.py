"""The regime map as a static figure (SVG) for BENCHMARKS.md and docs/regime_map.md.

    python scripts/regime_map_figure.py        # results/regime_map/map.json -> docs/figures/regime_map.svg

One panel per pruning method and baseline (PAM's average gain at the map's tolerance): rows are
headroom (LeNet-5 width), columns relatedness (shared labels K and I(Y^A;Y^B)); each cell gives
the mean gain, its 95 % CI, the verdict and the seeds, coloured blue above 1 and red below (white
at 1, full colour at 2x either way). The cells are :func:`pam_explorer.runs.regime_map.heat_map`'s,
the grid the dashboard draws. Written as plain SVG: the dashboard's plotly needs kaleido for a
static image, which the project does not install for one figure.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from html import escape
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pam_explorer.runs import regime_map as rm  # noqa: E402

CELL_W, CELL_H, LEFT, TOP, GAP = 150, 74, 70, 64, 40
METHODS = {"taylor": "P2 (Taylor)", "vib": "P1 (VIB)"}
BASELINES = {"vs_B1": "vs B1 (no merging)", "vs_B2": "vs B2 (MTZ)"}


def colour(gain: float | None) -> str:
    """White at 1, blue above, red below, saturated at a factor of 2."""
    if gain is None or gain <= 0:
        return "#eeeeee"
    t = max(-1.0, min(1.0, math.log2(gain)))
    mix = lambda full: round(255 + (full - 255) * abs(t))  # noqa: E731
    return "#%02x%02x%02x" % ((mix(33), mix(102), mix(172)) if t > 0 else (mix(178), mix(24), mix(43)))


def _text(x: float, y: float, s: str, size: int = 12, weight: str = "normal", anchor: str = "middle") -> str:
    return (f'<text x="{x:.0f}" y="{y:.0f}" font-size="{size}" font-weight="{weight}" '
            f'text-anchor="{anchor}">{escape(s)}</text>')


def panel(grid: dict, title: str, x0: float, y0: float) -> list[str]:
    out = [_text(x0 + LEFT, y0 + 18, title, 14, "bold", "start")]
    for j, (k, bits) in enumerate(zip(grid["overlaps"], grid["mi_bits"])):
        out.append(_text(x0 + LEFT + (j + 0.5) * CELL_W, y0 + TOP - 10, f"K = {k} ({bits:.2f} bits)"))
    rows = list(reversed(range(len(grid["widths"]))))  # the widest networks on top
    for r, i in enumerate(rows):
        y = y0 + TOP + r * CELL_H
        out.append(_text(x0 + LEFT - 8, y + CELL_H / 2 + 4, f"width {grid['widths'][i]:g}", anchor="end"))
        for j in range(len(grid["overlaps"])):
            x, mean = x0 + LEFT + j * CELL_W, grid["mean"][i][j]
            out.append(f'<rect x="{x}" y="{y}" width="{CELL_W}" height="{CELL_H}" fill="{colour(mean)}" '
                       'stroke="#888"/>')
            if mean is None:
                out.append(_text(x + CELL_W / 2, y + CELL_H / 2 + 4, "not run"))
                continue
            lo, hi = grid["ci95"][i][j]
            out += [_text(x + CELL_W / 2, y + 22, f"{mean:.2f}", 15, "bold"),
                    _text(x + CELL_W / 2, y + 40, f"[{lo:.3f}, {hi:.3f}]", 11),
                    _text(x + CELL_W / 2, y + 58, f"{grid['verdict'][i][j]}, {grid['n'][i][j]} seeds", 11)]
    return out


def figure(rmap: dict) -> str:
    methods = [m for m in METHODS if any(c["prune"] == m for c in rmap["cells"])]
    grids = [[rm.heat_map(rmap, m, vs, "average") for vs in BASELINES] for m in methods]
    n_cols = max(len(g["overlaps"]) for row in grids for g in row)
    n_rows = max(len(g["widths"]) for row in grids for g in row)
    pw, ph = LEFT + n_cols * CELL_W + GAP, TOP + n_rows * CELL_H + GAP
    width, height = 2 * pw, len(methods) * ph + 30
    body = [_text(10, height - 10, f"PAM's average gain (c_baseline / c_PAM, mean [95 % CI] over seeds) at "
                  f"tolerance {rmap['delta']:g} points; blue: PAM cheaper, red: dearer.", 12, anchor="start")]
    for a, m in enumerate(methods):
        for b, vs in enumerate(BASELINES):
            body += panel(grids[a][b], f"{METHODS[m]}, {BASELINES[vs]}", b * pw, a * ph)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>'
            + "".join(body) + "</svg>\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--map", type=Path, default=REPO / "results" / "regime_map" / "map.json")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "figures" / "regime_map.svg")
    args = p.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(figure(json.loads(args.map.read_text())))
    print(args.out)


if __name__ == "__main__":
    main()
