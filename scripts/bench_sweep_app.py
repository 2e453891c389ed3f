"""Benchmark: what showing a sweep adds to a rerun of the merge explorer (target < 0.1 s).

    python scripts/bench_sweep_app.py [--sweep DIR/sweep.json] [--moves 20] [--json]

Runs app.py under streamlit.testing.v1.AppTest twice on the default preset, moving the alpha
slider ``--moves`` times: once with an empty runs root (no sweep: the page says so) and once with
a runs root holding one sweep (``--sweep``, else a synthetic one of a full sweep's size: 8 alphas
x 3 seeds). Reports the mean / median seconds per rerun of both, their difference, and the time
of the sweep's own drawing functions inside the rerun (``sweep_alpha_options`` +
``sweep_section``), which is what a browser session pays on the server.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def synthetic_sweep() -> dict:
    """A sweep.json of 8 alphas x 3 seeds (numbers invented, sizes real)."""
    from pam_explorer.runs import sweep_report as sr

    alphas = [0.002 * 2.3 ** k for k in range(8)]
    records = {}
    for s in range(3):
        for name, base in (("B1", 1.6e6), ("B2", 1.0e6)):
            records[(name, s, None)] = _record(base + 1e4 * s)
        for a in alphas:
            records[("PAM", s, a)] = _record(0.8e6 / (1 + a) + 1e4 * s)
    head = {"preset": "digits-2task", "tasks": ["A", "B"], "prune": "taylor", "config": {},
            "torch_threads": 1}
    return sr.build(head, [(a, f"{a:.6g}") for a in alphas], records, [0, 1, 2], {"A": 96.0, "B": 95.0}, 0.5,
                    sr.uniform_mix(["A", "B"]))


def _record(f: float) -> dict:
    return {"flops": {"A": f, "B": 0.9 * f, "A+B": 1.4 * f}, "params": {"A": 1, "B": 1, "A+B": 1},
            "accuracy": {"A": 96.2, "B": 95.1}, "val_accuracy": {"A": 96.0, "B": 95.0}, "seconds": 60.0,
            "groups_before_pruning": {"fc1": {"A": 10, "B": 12, "A+B": 218}}}


def timed(module, name: str, spent: list) -> None:
    fn = getattr(module, name)

    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - t)

    setattr(module, name, wrapper)


def reruns(root: Path, moves: int) -> list[float]:
    import os

    from streamlit.testing.v1 import AppTest

    from pam_explorer.core.config import MIConfig
    from pam_explorer.regroup.explorer import Explorer
    from ui import figures as F

    os.environ["PAM_RUNS_ROOT"] = str(root)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300).run()
    assert not at.exception, at.exception
    exp = Explorer.open("digits-2task", MIConfig())
    options = F.alpha_grid(exp.max_mi(), extra=[exp.preset.default_alpha])
    for a in options[::20]:  # warm-up moves
        at.select_slider[0].set_value(a).run()
    step = max(1, len(options) // moves)
    times = []
    for a in (options[::step] + options[::-step])[:moves]:
        t = time.perf_counter()
        at.select_slider[0].set_value(a).run()
        times.append(time.perf_counter() - t)
        assert not at.exception, at.exception
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", default=None, help="a sweep.json to show (default: synthetic, 8 x 3)")
    ap.add_argument("--moves", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    import ui.sweep_section as section

    spent: list[float] = []
    for name in ("sweep_alpha_options", "sweep_section"):
        timed(section, name, spent)
    with tempfile.TemporaryDirectory() as tmp:
        empty, full = Path(tmp) / "empty", Path(tmp) / "with-sweep"
        (full / "sweep").mkdir(parents=True)
        if args.sweep:
            shutil.copyfile(args.sweep, full / "sweep" / "sweep.json")
        else:
            (full / "sweep" / "sweep.json").write_text(json.dumps(synthetic_sweep()))
        without = reruns(empty, args.moves)
        spent.clear()
        with_sweep = reruns(full, args.moves)
    own = spent[-2 * args.moves:]  # the measured moves: two calls per rerun
    result = {"moves": args.moves, "without_sweep_mean_s": round(statistics.mean(without), 4),
              "with_sweep_mean_s": round(statistics.mean(with_sweep), 4),
              "without_sweep_median_s": round(statistics.median(without), 4),
              "with_sweep_median_s": round(statistics.median(with_sweep), 4),
              "added_mean_s": round(statistics.mean(with_sweep) - statistics.mean(without), 4),
              "sweep_functions_per_rerun_s": round(sum(own) / args.moves, 4), "target_s": 0.1}
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
