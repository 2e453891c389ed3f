"""A small results root for the regime-map UI tests: two cells of hand-made stage records (the
backend tests' records, tests/runs/test_regime_map.py), one complete with its report.json, one
with a seed unfinished and no report; and B1 records of the explorer's networks."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from pam_explorer.core.io import write_json_atomic
from pam_explorer.cost.estimate import forward_flops
from pam_explorer.data import get_preset
from pam_explorer.runs import experiment
from pam_explorer.runs.experiment_config import ExperimentConfig
from tests.runs.test_regime_map import REF, _cell

HEADLINE = "mnist28-wide-overlap-0_taylor"  # width 4, K = 0
CONTROL = "mnist28-overlap-2_taylor"  # width 1, K = 2: seed 2 has only its B1 record
SEEDS = (0, 1, 2)


def _widths(records: dict[int, dict]) -> dict[int, dict]:
    """The records with the widths a report shows at every checkpoint ({layer: {group: n}}; B1:
    per task network), which the backend tests' records leave out."""
    def merged(point: dict) -> dict:
        return {**point, "widths": {"conv1": {"A": 3, "B": 2, "A+B": 4}}}

    def single(point: dict) -> dict:
        return {**point, "widths": {"conv1": {next(iter(point["val_accuracy"])): 6}}}

    def with_widths(name: str, r: dict) -> dict:
        if name == "B1":
            return {**r, "curve": {t: [single(p) for p in c] for t, c in r["curve"].items()}}
        return {**r, "curve": [merged(p) for p in r["curve"]]}

    return {s: {n: with_widths(n, r) for n, r in rec.items()} for s, rec in records.items()}


def write_report(folder: Path, records: dict[int, dict]) -> None:
    """report.json as the experiment assembles it from these records (no networks: the original
    networks' accuracies are the records' reference)."""
    cfg = ExperimentConfig.from_dict(json.loads((folder / "config.json").read_text()))
    report = experiment._report(cfg, get_preset(cfg.preset), _widths(records), dict(REF), dict(REF), ())
    write_json_atomic(folder / "report.json", report)


def regime_results(root: Path) -> dict[str, dict[int, dict]]:
    """``root``/regime_map with the two cells; returns {folder: {seed: {scheme: record}}}."""
    base = root / "regime_map"
    headline = _cell(base / HEADLINE, SEEDS)
    write_report(base / HEADLINE, headline)
    control = _cell(base / CONTROL, SEEDS, incomplete=2)
    config = json.loads((base / CONTROL / "config.json").read_text())
    write_json_atomic(base / CONTROL / "config.json", {**config, "preset": "mnist28-overlap-2"})
    return {HEADLINE: headline, CONTROL: control}


def b1_records(root: Path, preset: str, nets, accs: dict[str, list[float]]) -> None:
    """An experiment folder under ``root`` with a B1 record of ``nets`` (P2, published schedule):
    each curve starts at the network's FLOPs (counted by FlopCounterMode) and falls by a fifth of
    them per checkpoint; reference accuracies 95 (A) and 92 (B)."""
    spec = get_preset(preset)
    flops = {t: forward_flops(n, spec.in_channels, spec.image_size) for n, t in zip(nets, spec.task_names)}
    curves = {t: [{"flops": {t: int(flops[t] * (1 - 0.2 * i))}, "params": {t: 1}, "val_accuracy": {t: a},
                   "test_accuracy": {t: a}, "val_se": {t: 0.1}, "test_se": {t: 0.1}} for i, a in enumerate(v)]
              for t, v in accs.items()}
    record = {"curve": curves, "reference_val_accuracy": {"A": 95.0, "B": 92.0},
              "flops": {"A": 1, "B": 1, "A+B": 2}, "accuracy": {"A": 1.0, "B": 1.0}}
    folder = root / "headroom-cell"
    (folder / "stages").mkdir(parents=True)
    write_json_atomic(folder / "config.json", dataclasses.asdict(ExperimentConfig(preset=preset)))
    write_json_atomic(folder / "stages" / "B1_s0.json", record)
