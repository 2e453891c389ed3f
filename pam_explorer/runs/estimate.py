"""How long a job will take, from what this machine has already measured (issue 26, point 5).

Every experiment and sweep folder keeps its stage records (``stages/<scheme>[_a<alpha>]_s<seed>.json``,
each with the ``seconds`` the stage took) beside ``.pam-run.json`` (the command and its
configuration). :func:`stage_times` collects them per (preset, pruning method, quick, architecture,
scheme); :func:`estimate` adds up the stages a job will run, with the median time of each kind:

* experiment: seeds x its schemes (B1, B2, PAM);
* sweep: seeds x (B1 + B2 + PAM at each alpha; "auto" keeps at most
  :data:`~pam_explorer.regroup.alpha_grid.MAX_COUNT` alphas, so the figure is an upper bound),
  spread over its workers (default: the sweep's own, the usable cores per torch thread of a job);
* merge and train: the median wall time of this machine's finished runs of the same command and
  preset.

Stages reused from the stage cache or the run folder cost nothing, so a figure is an upper bound
there too. Since the records are re-read, a finished stage improves the next estimate. No measured
stage of a kind: no figure (``seconds`` None), and the basis says what is missing.
"""
from __future__ import annotations

import json
import os
import re
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pam_explorer.regroup.alpha_grid import MAX_COUNT
from pam_explorer.runs.executors import default_workers

SCHEMES = ("B1", "B2", "PAM")
DEFAULT_ARCH = "lenet5"
_STAGE = re.compile(r"(B1|B2|PAM)(?:_a[^_]+)?(?:_s\d+)?\.json")
Key = tuple[str, str, bool, str, str]  # preset, prune, quick, arch, scheme


@dataclass(frozen=True)
class Estimate:
    """``seconds``: the expected wall time (None when unknown); ``basis``: what it rests on."""

    seconds: float | None
    basis: str

    @property
    def text(self) -> str:
        """"about 12 min (from ...)" or "duration unknown: ..." (one line for a button's caption)."""
        if self.seconds is None:
            return f"duration unknown: {self.basis}"
        return f"about {human(self.seconds)} ({self.basis})"


def human(seconds: float) -> str:
    """"45 s", "12 min", "1 h 53 min"."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{round(s / 60)} min"
    return f"{s // 3600} h {round(s % 3600 / 60)} min"


def _marker(folder: Path) -> Mapping | None:
    try:
        raw = json.loads((folder / ".pam-run.json").read_text())
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, Mapping) and isinstance(raw.get("config"), Mapping) else None


def _seconds(path: Path) -> float | None:
    try:
        value = json.loads(path.read_text()).get("seconds")
    except (OSError, ValueError, AttributeError):
        return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if number and value > 0 else None


def _key(cfg: Mapping, scheme: str) -> Key:
    return (str(cfg.get("preset")), str(cfg.get("prune", "taylor")), bool(cfg.get("quick")),
            str(cfg.get("arch") or DEFAULT_ARCH), scheme)


def stage_times(roots: Iterable[str | Path]) -> dict[Key, list[float]]:
    """{(preset, prune, quick, arch, scheme): [seconds of every recorded stage]} of the experiment
    and sweep folders one level under ``roots`` (unreadable files are skipped)."""
    out: dict[Key, list[float]] = {}
    for root in roots:
        try:
            folders = [Path(e.path) for e in os.scandir(root) if e.is_dir()]
        except OSError:
            continue
        for folder in folders:
            marker = _marker(folder)
            if marker is None or marker.get("command") not in ("experiment", "sweep"):
                continue
            try:
                files = [f for f in (folder / "stages").iterdir() if _STAGE.fullmatch(f.name)]
            except OSError:
                continue
            for f in files:
                sec = _seconds(f)
                if sec is not None:
                    out.setdefault(_key(marker["config"], _STAGE.fullmatch(f.name).group(1)), []).append(sec)
    return out


def _stage_plan(command: str, args: Mapping[str, Any]) -> tuple[dict[str, int], str]:
    """{scheme: how many stages} of an experiment or sweep job, and a note on the count."""
    seeds = len(args.get("seeds") or [0])
    if command == "experiment":
        return {s: seeds for s in args.get("schemes") or SCHEMES}, ""
    alphas = args.get("alphas")
    n = len(alphas) if isinstance(alphas, (list, tuple)) else MAX_COUNT
    note = f"auto alphas: at most {MAX_COUNT}" if not isinstance(alphas, (list, tuple)) else ""
    return {"B1": seeds, "B2": seeds, "PAM": seeds * n}, note


def _from_stages(command: str, args: Mapping[str, Any], times: Mapping[Key, list[float]],
                 cores: int | None) -> Estimate:
    plan, note = _stage_plan(command, args)
    what = f"{args.get('preset')} with {args.get('prune', 'taylor')}" \
        + (" (quick)" if args.get("quick") else "")
    median, missing = {}, []
    for scheme in plan:
        seen = times.get(_key(args, scheme), [])
        if seen:
            median[scheme] = statistics.median(seen)
        else:
            missing.append(scheme)
    if missing:
        return Estimate(None, f"no {'/'.join(missing)} stage of {what} has run on this machine yet; "
                              "the first run measures them")
    total = sum(n * median[s] for s, n in plan.items())
    if command == "sweep":
        threads = int(args.get("threads") or 1)
        workers = args.get("workers") or (max(1, cores // threads) if cores else default_workers(threads))
        total /= max(1, min(workers, sum(plan.values())))
    n_seen = sum(len(times[_key(args, s)]) for s in plan)
    basis = f"median stage times of {what}, {n_seen} stage(s) measured on this machine"
    return Estimate(total, basis + (f"; {note}" if note else "") + "; cached stages are skipped")


def _from_runs(job: Mapping, runs: Iterable[Mapping]) -> Estimate:
    command, preset = job["command"], job["args"].get("preset")
    took = [r["ended"] - r["started"] for r in runs
            if r.get("state") == "done" and (r.get("job") or {}).get("command") == command
            and ((r.get("job") or {}).get("args") or {}).get("preset") == preset
            and isinstance(r.get("started"), (int, float)) and isinstance(r.get("ended"), (int, float))]
    if not took:
        return Estimate(None, f"no {command} run of {preset} has finished on this machine yet")
    return Estimate(statistics.median(took),
                    f"median of {len(took)} finished {command} run(s) of {preset} here")


def estimate(job: Mapping, roots: Iterable[str | Path], runs: Iterable[Mapping] = (),
             cores: int | None = None) -> Estimate:
    """The expected wall time of a job spec ({"command", "args"}, see
    :mod:`pam_explorer.runs.job_spec`) from the stage records under ``roots`` and, for merge and
    train jobs, the finished ``runs`` (status dicts as :func:`pam_explorer.runs.jobs.poll` gives).
    ``cores``: for a sweep without ``workers`` (None: this machine's usable cores)."""
    command, args = job.get("command"), job.get("args") or {}
    if command in ("experiment", "sweep"):
        return _from_stages(command, args, stage_times(roots), cores)
    if command in ("merge", "train"):
        return _from_runs(job, runs)
    return Estimate(None, f"no estimate for {command!r} jobs")


__all__ = ["Estimate", "estimate", "stage_times", "human"]
