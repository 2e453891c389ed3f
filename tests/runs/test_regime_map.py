"""The regime map: a cell's gains equal those recomputed from its stage records, independently.

Independent reference: the paper's gain definitions (Sec. 6.1) written out here on plain lists:
each curve made monotone by a pool-adjacent-violators fit written here (not scikit-learn's),
read off at the last checkpoint whose every task is within delta of the reference, B1's cost of
a subset the sum of its tasks' networks, average = mean over subsets of c_base / c_PAM, peak =
max, then the mean over seeds and a Student-t 95 % interval from scipy (fewer than 5 seeds) or
the bootstrap interval (5 or more, compared through the seeded bootstrap of runs/stats.py).
"""
from __future__ import annotations

import dataclasses
import json
import math
import statistics
from pathlib import Path

import pytest
from scipy import stats as scipy_stats

from pam_explorer.core.io import write_json_atomic
from pam_explorer.core.paths import results_root
from pam_explorer.runs import regime_map as rm
from pam_explorer.runs.experiment_config import ExperimentConfig
from pam_explorer.runs.stats import bootstrap_ci

TASKS = ("A", "B")
SUBSETS = ("A", "B", "A+B")
REF = {"A": 97.0, "B": 96.0}


def _pav(values: list[float]) -> list[float]:
    """Least-squares non-increasing fit (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight]
    for v in values:
        blocks.append([v, 1.0])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
            (m2, w2), (m1, w1) = blocks.pop(), blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2])
    return [m for m, w in blocks for _ in range(int(w))]


def _pick(points: list[dict], tasks, delta: float, ref: dict) -> int | None:
    """The last finetuned point of the fit at or above the floor; the untrained first point (the
    net as given) stays out of the fit and counts only on its own, when nothing else passes."""
    trained = [i for i, p in enumerate(points) if p.get("finetuned", True)]
    fits = {t: _pav([points[i]["val_accuracy"][t] for i in trained]) for t in tasks}
    best = None
    for j, i in enumerate(trained):
        if not all(fits[t][j] >= ref[t] - delta - 1e-9 for t in tasks):
            break
        best = i
    if best is None:
        best = next((i for i, p in enumerate(points) if not p.get("finetuned", True)
                     and all(p["val_accuracy"][t] >= ref[t] - delta - 1e-9 for t in tasks)), None)
    return best


def _costs(rec: dict, delta: float) -> dict[str, float] | None:
    curve, ref = rec["curve"], rec["reference_val_accuracy"]
    if isinstance(curve, dict):  # B1: a curve per task network
        picks = {t: _pick(curve[t], [t], delta, ref) for t in TASKS}
        if None in picks.values():
            return None
        one = {t: curve[t][picks[t]]["flops"][t] for t in TASKS}
        return {"A": one["A"], "B": one["B"], "A+B": one["A"] + one["B"]}
    i = _pick(curve, TASKS, delta, ref)
    return None if i is None else {s: curve[i]["flops"][s] for s in SUBSETS}


def recomputed_gains(records: dict[int, dict[str, dict]], delta: float) -> dict:
    """{vs: {"average", "peak", "average_ci95", "peak_ci95", "n"}} from the stage records."""
    out: dict = {}
    for base in ("B1", "B2"):
        avg, peak = [], []
        for seed in sorted(records):
            c = {name: _costs(records[seed][name], delta) for name in ("PAM", base)}
            if c["PAM"] is None or c[base] is None:
                continue
            ratios = [c[base][s] / c["PAM"][s] for s in SUBSETS]
            avg.append(sum(ratios) / len(ratios))
            peak.append(max(ratios))
        row: dict = {"n": len(avg)}
        for kind, xs in (("average", avg), ("peak", peak)):
            m = statistics.fmean(xs)
            if len(xs) >= 5:
                ci = bootstrap_ci(xs)
            else:
                half = scipy_stats.t.ppf(0.975, len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))
                ci = (m - half, m + half)
            row[kind], row[f"{kind}_ci95"] = m, list(ci)
        out[f"vs_{base}"] = row
    return out


# ----------------------------------------------------------------------------- synthetic cells
def _point(flops: dict, val: dict) -> dict:
    tasks = [t for t in TASKS if t in val]
    return {"flops": flops, "params": {k: v // 10 for k, v in flops.items()}, "val_accuracy": val,
            "test_accuracy": dict(val), "val_se": {t: 0.1 for t in tasks}, "test_se": {t: 0.1 for t in tasks}}


def _merged(start: float, accs: list[tuple[float, float]], share: float) -> dict:
    """A merged curve: all-task FLOPs falling 10 % per checkpoint; A and B each run ``share``."""
    curve = []
    for i, (a, b) in enumerate(accs):
        full = start * (1 - 0.1 * i)
        curve.append(_point({"A": int(full * share), "B": int(full * share * 0.9), "A+B": int(full)},
                            {"A": a, "B": b}))
    return {"curve": curve, "reference_val_accuracy": dict(REF), "flops": curve[0]["flops"],
            "accuracy": {"A": 1.0, "B": 1.0}, "seconds": 10.0}


def _b1(start: float, accs: dict[str, list[float]]) -> dict:
    curves = {t: [_point({t: int(start * (1 - 0.12 * i))}, {t: a}) for i, a in enumerate(v)]
              for t, v in accs.items()}
    return {"curve": curves, "reference_val_accuracy": dict(REF), "flops": {"A": 1, "B": 1, "A+B": 2},
            "accuracy": {"A": 1.0, "B": 1.0}, "seconds": 20.0}


def _cell(folder: Path, seeds: tuple[int, ...], incomplete: int | None = None) -> dict[int, dict]:
    """A cell folder of hand-made records (non-monotone accuracies, seeds that differ); seed
    ``incomplete`` gets only its B1 record."""
    cfg = ExperimentConfig(preset="mnist28-wide-overlap-0", prune="taylor", seeds=seeds, rank="published")
    (folder / "stages").mkdir(parents=True)
    write_json_atomic(folder / "config.json", dataclasses.asdict(cfg))
    records = {}
    for s in seeds:
        wob = 0.3 * (s % 3)  # seed-dependent noise, up and down
        rec = {
            "B1": _b1(1e6 * (1 + 0.05 * s), {"A": [97.2, 97.0 + wob, 96.8, 96.9 - wob, 95.0, 93.0],
                                             "B": [96.1, 95.9, 95.2 + wob, 95.8, 95.1, 90.0]}),
            "B2": _merged(1.6e6, [(97.1, 96.0), (96.9, 95.8 - wob), (96.7 + wob, 95.6), (96.0, 95.0)], 1.0),
            "PAM": _merged(2.1e6 - 1e5 * s, [(97.3, 96.2), (97.1, 96.0), (96.8, 95.9 - wob),
                                             (96.6, 95.7), (96.4 + wob, 95.2), (95.0, 94.0)], 0.55)}
        records[s] = rec if s != incomplete else {"B1": rec["B1"]}
        for name, r in records[s].items():
            write_json_atomic(folder / "stages" / f"{name}_s{s}.json", r)
    return records


@pytest.mark.parametrize("seeds", [(0, 1, 2), (0, 1, 2, 3, 4)])
def test_a_cells_gains_equal_those_recomputed_from_its_records(tmp_path, seeds):
    records = _cell(tmp_path / "c", seeds + (7,), incomplete=7)
    cell = rm.regime_map(tmp_path, 0.5)["cells"][0]
    assert cell["seeds"] == list(seeds) and not cell["complete"]  # seed 7 lacks B2 and PAM
    want = recomputed_gains({s: records[s] for s in seeds}, 0.5)
    for vs, row in want.items():
        got = cell["gains"][vs]
        assert got["n"] == row["n"] == len(seeds)
        for kind in ("average", "peak"):
            assert got[kind] == pytest.approx(row[kind], rel=1e-9)
            assert got[f"{kind}_ci95"] == pytest.approx(row[f"{kind}_ci95"], rel=1e-9)
    other = recomputed_gains({s: records[s] for s in seeds}, 2.0)  # the read-off depends on delta
    assert other["vs_B1"]["average"] != pytest.approx(want["vs_B1"]["average"], rel=1e-3)


def test_b1_compression_and_the_heat_map_grid(tmp_path):
    records = _cell(tmp_path / "mnist28-wide-overlap-0_taylor", (0, 1, 2))
    rmap = rm.regime_map(tmp_path, 0.5)
    cell = rmap["cells"][0]
    for t in TASKS:  # unpruned FLOPs over the read-off's, per seed
        want = []
        for s in (0, 1, 2):
            curve = records[s]["B1"]["curve"][t]
            want.append(curve[0]["flops"][t] / curve[_pick(curve, [t], 0.5, REF)]["flops"][t])
        assert cell["b1_compression"][t]["per_seed"] == pytest.approx(want)
        assert cell["b1_compression"][t]["min"] == pytest.approx(min(want))
    grid = rm.heat_map(rmap, "taylor", "vs_B2", "peak")
    assert grid["widths"] == [4.0] and grid["overlaps"] == [0] and grid["mi_bits"] == [0.622]
    assert grid["mean"][0][0] == pytest.approx(cell["gains"]["vs_B2"]["peak"])
    assert grid["folder"][0][0] == "mnist28-wide-overlap-0_taylor" and grid["n"][0][0] == 3
    assert grid["verdict"][0][0] in ("above", "below", "no difference")
    assert "mnist28-wide-overlap-0_taylor" in rm.markdown(rmap)
    assert rm.heat_map(rmap, "vib")["mean"] == []  # no P1 cell: an empty grid


def _committed_cells() -> list[Path]:
    root = results_root() / "regime_map"
    return sorted(p.parent for p in root.glob("*/config.json")) if root.is_dir() else []


def test_the_committed_maps_gains_equal_those_recomputed_from_their_records():
    """results/regime_map/map.json (what the dashboard shows) against its cells' stage records."""
    cells = _committed_cells()
    if not cells:
        pytest.skip("no committed regime map")
    rmap = json.loads((results_root() / "regime_map" / "map.json").read_text())
    committed = {c["folder"]: c for c in rmap["cells"]}
    checked = 0
    for folder in cells:
        config, records = rm.cell_records(folder)
        complete = {s: r for s, r in records.items() if set(r) == {"B1", "B2", "PAM"}}
        if not complete:
            continue
        want = recomputed_gains(complete, rmap["delta"])
        for vs, row in want.items():
            for kind in ("average", "peak"):
                assert committed[folder.name]["gains"][vs][kind] == pytest.approx(row[kind], rel=1e-9), folder
                assert committed[folder.name]["gains"][vs][f"{kind}_ci95"] == pytest.approx(
                    row[f"{kind}_ci95"], rel=1e-9), folder
        checked += 1
    assert checked >= 1


def test_every_complete_committed_cell_has_its_report_of_the_same_records():
    """A fresh clone opens a cell's runs (the Results page reads DIR/report.json): every cell whose
    planned seeds all have their three stage records carries a report of those seeds and costs."""
    cells = _committed_cells()
    if not cells:
        pytest.skip("no committed regime map")
    for folder in cells:
        config, records = rm.cell_records(folder)
        if any(set(records.get(s, {})) != {"B1", "B2", "PAM"} for s in config["seeds"]):
            continue
        report = json.loads((folder / "report.json").read_text())
        assert sorted(report["seeds"]) == sorted(config["seeds"]), folder
        for seed in config["seeds"]:
            pam = report["per_seed"][str(seed)]["schemes"]["PAM"]
            assert pam["flops"] == records[seed]["PAM"]["flops"], folder


def test_a_scheme_that_never_passes_the_floor_is_missing_not_an_error(tmp_path):
    """A published-schedule record whose figures are null (no checkpoint above the floor, as PAM
    on the width-1 control) is a result: that seed is left out of the gains and listed."""
    records = _cell(tmp_path / "c", (0, 1, 2))
    failed = _merged(2e6, [(90.0, 80.0), (89.0, 79.0)], 0.55)
    write_json_atomic(tmp_path / "c" / "stages" / "PAM_s1.json", {**failed, "flops": None, "accuracy": None,
                                                                   "above_floor": False})
    cell = rm.regime_map(tmp_path, 0.5)["cells"][0]
    assert cell["missing"] == {"PAM": ["1"]} and cell["gains"]["vs_B1"]["n"] == 2
    want = recomputed_gains({s: records[s] for s in (0, 2)}, 0.5)
    assert cell["gains"]["vs_B1"]["average"] == pytest.approx(want["vs_B1"]["average"], rel=1e-9)
