"""The Results page's regime map: PAM's gains over headroom x relatedness, read off the committed
study records (``results/regime_map``, :mod:`pam_explorer.runs.regime_map`), and a cell's runs.

A page of controls -> one backend call (``regime_map`` then ``heat_map``) -> drawing
(:mod:`ui.regime_view`). A cell folder is an ordinary experiment run folder: its report.json is
shown with the Results page's own view (passed in as ``show_report``: that page owns it).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st

from pam_explorer.core.errors import PamError
from pam_explorer.core.paths import results_root
from pam_explorer.prune.config import TOLERANCES
from pam_explorer.runs import regime_map as rm
from ui import labels as L
from ui import regime_view as V

ShowReport = Callable[[dict, str], None]  # page_results.show_run(run, slot)
SLOT = "regime"


def regime_root() -> Path:
    """Where the study writes its cells: ``<results root>/regime_map``."""
    return results_root() / "regime_map"


def _cells(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if (p / "config.json").is_file()) if root.is_dir() else []


def _stamp(cells: list[Path]) -> int:
    """Newest modification time of the cells' records: a new record is a new map."""
    files = [f for c in cells for f in (c / "config.json", *(c / "stages").glob("*.json"))]
    return max((f.stat().st_mtime_ns for f in files if f.is_file()), default=0)


@st.cache_data(show_spinner=False, max_entries=16)
def _map(root: str, delta: float, stamp: int) -> dict:
    return rm.regime_map(root, delta)  # PamError is not cached


def controls() -> tuple[str, str, str, float]:
    """(prune method, baseline, gain kind, tolerance delta) chosen above the map."""
    c = st.columns(4)
    prune = c[0].selectbox("Pruning method", list(V.METHODS), format_func=V.METHODS.get, key="regime_prune")
    vs = c[1].selectbox("PAM's gain", list(V.BASELINES), format_func=V.BASELINES.get, key="regime_vs")
    kind = c[2].selectbox("Gain", list(V.KIND_NAMES), format_func=V.KIND_NAMES.get, key="regime_kind",
                          help="Average: the mean over task subsets of c_baseline / c_PAM; peak: the "
                               "largest.")
    delta = c[3].selectbox("Tolerance delta (points)", list(TOLERANCES), index=list(TOLERANCES).index(0.5),
                           format_func=lambda d: f"{d:g}", key="regime_delta",
                           help="Every scheme's cost is read off its curves at this accuracy tolerance.")
    return prune, vs, kind, float(delta)


def regime_section(show_report: ShowReport) -> None:
    """The map, its cells' table and, for the cell picked, its runs."""
    root = regime_root()
    cells = _cells(root)
    if not cells:
        st.info(V.HOWTO, icon=":material/grid_on:")
        return
    prune, vs, kind, delta = controls()
    try:
        rmap = _map(str(root), delta, _stamp(cells))
    except PamError as exc:  # an unreadable record: one line, no traceback
        st.warning(f"Cannot read the regime map: {L.plain(exc)}")
        return
    grid = rm.heat_map(rmap, prune, vs, kind)
    if not grid["widths"]:
        st.info(f"The map has no cell pruned by {V.METHODS[prune]} yet.")
    else:
        st.plotly_chart(V.fig_regime_map(grid, delta), key="regime_map_chart")
        st.caption("Rows: headroom (LeNet-5 width of the cell's networks, 4 = four times the channels). "
                   "Columns: relatedness (how many of B's 5 labels are A's, and I(Y^A;Y^B)). Colour: PAM's "
                   "mean gain c_baseline / c_PAM over seeds (white = 1, parity; blue = PAM cheaper). Each "
                   "cell: mean, 95 % CI, seeds, and whether the CI lies above 1, below 1 or across it.")
    table = V.cells_table(rmap, prune, vs, kind)
    if table is not None:
        st.table(table)
        st.caption("B1 compression: each network's unpruned FLOPs over those read off at delta, mean "
                   "(min) over the finished seeds: the headroom the cell had. " + f"Records: {L.code(root)}.")
    _open_cell(root, rmap, V.cell_choices(grid), show_report)


def _open_cell(root: Path, rmap: dict, choices: dict[str, str], show_report: ShowReport) -> None:
    """A select box of the map's cells; the cell picked shows its experiment report."""
    if not choices:
        return
    folder = st.selectbox("Open a cell's runs", list(choices), index=None, format_func=choices.get,
                          placeholder="Pick a cell of the map", key="regime_cell")
    if folder is None:
        return
    cell = next(c for c in rmap["cells"] if c["folder"] == folder)
    if not (root / folder / "report.json").is_file():
        done, planned = len(cell["seeds"]), len(cell["seeds_planned"])
        st.info(f"{L.code(folder)}: its report is written once all its stages are done ({done} of {planned} "
                "seeds finished); `python scripts/regime_map.py --rank flops-aware` resumes the study.")
        return
    show_report({"run_id": folder, "state": "done", "root": str(root), "dir": str(root / folder)}, SLOT)


__all__ = ["regime_section", "regime_root", "controls"]
