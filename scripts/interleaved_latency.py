"""The interleaved latency measurement of a finished experiment's models (issue 26, point 1).

    python scripts/interleaved_latency.py --run DIR [--rounds 21] [--threads 1] [--json]
    python scripts/interleaved_latency.py --run DIR --into COPY   # a copy of DIR whose report.json
                                                                  # holds the measurement (DIR untouched)

Loads PAM (model.zip), B2 and B1 of the first seed (:func:`pam_explorer.runs.bench_latency.load_schemes`),
times every scheme's fused subset models interleaved (:mod:`pam_explorer.cost.latency_compare`) and
prints median, IQR and the reliability verdict of each, then the gains from reliable figures. With
``--into`` it writes a copy of the run folder whose report.json carries ``latency_ms`` per scheme,
``latency_measurement`` and ``latency_gains`` as the experiment will write them (the dashboard's
Results page then shows them); the original folder is never changed.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pam_explorer.core.io import write_json_atomic  # noqa: E402
from pam_explorer.cost.latency_compare import LatencySettings  # noqa: E402
from pam_explorer.runs.bench_latency import interleaved_latency, load_schemes  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="a finished experiment folder")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print the report keys as JSON")
    ap.add_argument("--into", help="write a copy of --run with the measurement in its report.json")
    a = ap.parse_args()
    out = interleaved_latency(load_schemes(a.run), LatencySettings(rounds=a.rounds, threads=a.threads))
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        for scheme, per in out["latency_measurement"]["schemes"].items():
            for subset, c in per.items():
                print(f"{scheme:4} {subset:5} {c['median_ms']:8.3f} ms  IQR {c['iqr_ms']:7.3f}  "
                      + ("reliable" if c["reliable"] else f"UNRELIABLE: {c['why']}"))
        for vs, g in out["latency_gains"].items():
            print(f"PAM {vs.replace('_', ' ')} (latency, reliable subsets {g['subsets']}): average "
                  f"{g['average']:.3f}, peak {g['peak']:.3f}")
    if a.into:
        dest = Path(a.into)
        shutil.copytree(a.run, dest, ignore=shutil.ignore_patterns(".pam-run.lock"))
        report = json.loads((dest / "report.json").read_text())
        for scheme, ms in out["latency_ms"].items():
            report["schemes"][scheme]["latency_ms"] = ms
            report["schemes"][scheme].pop("latency_ms_ci95", None)
        report["latency_measurement"] = out["latency_measurement"]
        report["latency_gains"] = {k: {**v, "n": 1} for k, v in out["latency_gains"].items()}
        write_json_atomic(dest / "report.json", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
