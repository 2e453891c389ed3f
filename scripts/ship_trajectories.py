"""Write the MI trajectories that ship with the committed networks (no first-visit wait).

    python scripts/ship_trajectories.py [--preset P ...] [--arch A] [--profile default|paper] [--check]

For every preset with committed ``--arch`` networks (default: the default architecture, under
``assets/<preset>/``; another under ``assets/<preset>/<arch>/``), or the ``--preset`` ones, computes
(or takes from the cache) the trajectories of the default MI settings (``MIConfig()`` on
``DataConfig()``: what the dashboard and ``regroup`` open by default; ``--profile paper`` for
``MIConfig.paper()``) and writes them to ``assets/<preset>/trajectories/<key>.json``, the cache
format of :mod:`pam_explorer.regroup.trajectories` under the same content key (weights, preset,
data and MI settings, code version). :func:`~pam_explorer.regroup.trajectories.compute_trajectories`
reads that file when its cache misses. Rerun this after retraining the networks or changing the
estimator (``CODE_VERSION``): the key changes, the old file is no longer read (it is listed as
stale; delete it). ``--check`` writes nothing and exits 1 if a file is missing.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pam_explorer.core.config import DataConfig, MIConfig  # noqa: E402
from pam_explorer.core.io import write_text_atomic  # noqa: E402
from pam_explorer.data import get_preset, list_presets  # noqa: E402
from pam_explorer.regroup import trajectories as T  # noqa: E402
from pam_explorer.zoo import list_models  # noqa: E402
from pam_explorer.zoo.pretrained import has_pretrained, load_pretrained  # noqa: E402

PROFILES = {"default": MIConfig(), "paper": MIConfig.paper()}


def _current_keys(preset, mi: MIConfig) -> set[str]:
    """The keys of the trajectories of every architecture committed for ``preset``."""
    return {T.cache_key(preset, load_pretrained(preset.name, preset.task_names, arch), DataConfig(), mi)
            for arch in list_models() if has_pretrained(preset.name, preset.task_names, arch)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", action="append", default=None, help="default: every preset with networks")
    ap.add_argument("--arch", default=None, choices=list_models(),
                    help="architecture of the committed networks (default: the default one)")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="default")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is missing")
    args = ap.parse_args()
    names = args.preset or [p for p in list_presets()
                            if has_pretrained(p, get_preset(p).task_names, args.arch)]
    mi, missing = PROFILES[args.profile], 0
    for name in names:
        preset = get_preset(name)
        nets = load_pretrained(preset.name, preset.task_names, args.arch)
        key = T.cache_key(preset, nets, DataConfig(), mi)
        path = T.shipped_path(preset.name, key)
        current = _current_keys(preset, mi)  # every architecture's files live in one folder
        stale = sorted(p.name for p in path.parent.glob("*.json") if p.stem not in current) \
            if path.parent.is_dir() else []
        if args.check:
            ok = path.is_file()
            missing += not ok
            print(f"{name}: {'ok' if ok else 'MISSING'} {path.relative_to(REPO)}"
                  + (f"; stale: {stale}" if stale else ""))
            continue
        t0 = time.perf_counter()
        trajs = T.compute_trajectories(preset, nets, DataConfig(), mi,
                                       progress=lambda layer, step, total: None)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(T.to_json(trajs.trajectories)))
        print(f"{name}: {path.relative_to(REPO)} ({path.stat().st_size:,} bytes, "
              f"{time.perf_counter() - t0:.1f} s{', from the cache' if trajs.cache_hit else ''})"
              + (f"; stale files (no longer read): {stale}" if stale else ""))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
