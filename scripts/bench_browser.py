"""Benchmark the dashboard in a real browser (headless Chromium): first visit and alpha slider.

    python scripts/bench_browser.py [--moves 20] [--warm-cache] [--json] [--screens DIR]

Starts ``streamlit run app.py`` on a free port with an empty MI cache (``$PAM_CACHE_ROOT`` set to
a new temporary folder: a cold first visit; ``--warm-cache`` keeps the repository's cache) and
an empty runs folder, opens the merge explorer in Chromium and reports, from the page's own clock
(tests/ui/browser.py):

* ``progress_visible_s``: navigation start -> first progress bar in the page (``app_frame_s``:
  -> Streamlit's own frontend drawn, ``first_script_run_s``: -> the app's script started: the
  part before these is the browser loading Streamlit, which the app cannot shorten);
* ``first_visit_s``: navigation start -> the explorer settled (last DOM change, nothing running);
* per slider move (arrow key on the alpha slider: 10 down the grid, 10 back up, ...): key
  press -> last DOM change of the rerun; median / mean / max over ``--moves`` moves, after 3
  warm-up moves.

Targets (issue 14): first visit < 15 s with a progress bar from the first second; slider median
< 0.3 s. Timings are benchmarks, not test assertions.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.ui import browser as B  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moves", type=int, default=20)
    ap.add_argument("--warm-cache", action="store_true", help="use the repository's MI cache")
    ap.add_argument("--screens", default=None, help="folder for screenshots")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    missing = B.available()
    if missing:
        print(missing, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        env = {} if args.warm_cache else {"PAM_CACHE_ROOT": str(tmp / "cache")}
        with B.streamlit_server(tmp, env) as url, B.chromium(tmp) as driver:
            t0 = time.time()
            driver.get(url)
            s = B.wait_settled(driver, lambda st: B.metric_text(st, "sharing"), timeout_s=300)
            ms = lambda key: None if s.get(key) is None else round(s[key] / 1e3, 3)  # noqa: E731
            first = {"first_visit_s": ms("mut"), "progress_visible_s": ms("progress"),
                     "app_frame_s": ms("app"), "first_script_run_s": ms("firstRun"),
                     "wall_s": round(time.time() - t0, 3)}
            if args.screens:
                Path(args.screens).mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(Path(args.screens) / "first_visit.png"))
            B.time_slider_moves(driver, 3, key_right=False)  # warm-up
            moves = []  # down the alpha grid, then back up (the default alpha is near its top)
            while len(moves) < args.moves:
                n = min(10, args.moves - len(moves))
                moves += B.time_slider_moves(driver, n, key_right=(len(moves) // 10) % 2 == 1)
            if args.screens:
                driver.save_screenshot(str(Path(args.screens) / "after_moves.png"))
    secs = [m["seconds"] for m in moves]
    result = {**first, "moves": len(secs), "median_s": round(statistics.median(secs), 4),
              "mean_s": round(statistics.mean(secs), 4), "max_s": round(max(secs), 4),
              "min_s": round(min(secs), 4),
              "parts_median_s": {k: round(statistics.median(m[k] for m in moves), 4)
                                 for k in ("to_run_start_s", "run_s", "after_run_s")},
              "cache": "warm" if args.warm_cache else "cold",
              "machine": f"{platform.node()} {platform.machine()}, python {platform.python_version()}",
              "date": time.strftime("%Y-%m-%d %H:%M")}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"first visit ({result['cache']} MI cache): {result['first_visit_s']:.2f} s, progress bar "
              f"visible at {result['progress_visible_s']} s; {len(secs)} slider moves: median "
              f"{result['median_s']:.3f} s, mean {result['mean_s']:.3f} s, max {result['max_s']:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
