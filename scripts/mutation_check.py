"""Mutation check: small deliberate bugs in the core formulas, each of which named tests must catch.

    python scripts/mutation_check.py            # every mutation; exit 1 if any survives
    python scripts/mutation_check.py -k mtz     # only mutations whose name contains "mtz"
    python scripts/mutation_check.py --list     # the mutations and their tests, nothing run
    python scripts/mutation_check.py --jobs 1   # one mutation at a time (default 2, the CI's cores)

What it does: copies the repository's files (``git ls-files``: tracked files plus untracked ones
git does not ignore) into a temporary folder, then

1. checks that every mutation's ``original`` snippet occurs EXACTLY ONCE in its file: a mutation
   that points at code which moved or changed fails loudly here, it never passes silently;
2. runs the union of all named tests on the unmutated copy: they must pass (else a "killed"
   mutation would mean nothing);
3. for each mutation: writes the file with the snippet replaced, runs only that mutation's tests
   (``pytest -x -q``, ``OMP_NUM_THREADS=1``, a fresh cache and runs root), restores the file;
   ``--jobs`` mutations at once, each in its own copy of the repository.
   A mutation is killed when a test FAILS (pytest exit code 1); a collection error, a timeout or
   "no tests ran" is an error, not a kill: the mutation must be fixed to a valid program.

It prints a table (mutation -> the test that killed it, seconds) and exits 0 only if every
mutation was killed and nothing errored.

Format of a mutation (add one by appending to ``MUTATIONS``):

    Mutation(
        name="short-kebab-name",             # unique; what the table shows
        file="pam_explorer/x/y.py",          # relative to the repository root
        original="exact source text",         # must occur exactly once in the file (whitespace too)
        replacement="the bug",                # what replaces it
        tests=("tests/x/test_y.py::test_z",)  # pytest node ids; pick fast, targeted ones
    )

Keep each mutation small (one operator, constant or index) and its tests fast: the whole check
runs in CI on 2 cores (budget: under 10 min; BENCHMARKS.md has the measured time).
"""
from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 300  # per pytest run


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    original: str
    replacement: str
    tests: tuple[str, ...]


PB = "pam_explorer/"
T = "tests/"
MUTATIONS: list[Mutation] = [
    # --------------------------------------------------------------- MI estimator
    Mutation("mi-kernel-constant", PB + "regroup/mutual_info.py",
             'BOUND_FACTOR = {"kl": 0.5, "bd": 0.125}', 'BOUND_FACTOR = {"kl": 1.0, "bd": 0.125}',
             (T + "regroup/test_estimator_reference.py::test_mi_matches_the_plain_entropy_difference",)),
    Mutation("mi-log-base-nats", PB + "regroup/mutual_info.py",
             "LN2 = math.log(2.0)", "LN2 = 1.0",
             (T + "regroup/test_mutual_info.py::test_label_copy_has_mi_near_label_entropy",)),
    Mutation("chance-level-sign", PB + "regroup/algorithms.py",
             "tuple(m - n for m, n in zip(self.mi, self.null))",
             "tuple(m + n for m, n in zip(self.mi, self.null))",
             (T + "regroup/test_algorithms.py::test_cut_equals_from_scratch_with_chance_level",)),
    # --------------------------------------------------------------- greedy search and cut
    Mutation("greedy-argmax", PB + "regroup/greedy.py",
             "best = scores.min()", "best = scores.max()",
             (T + "regroup/test_mutual_info.py::test_fast_matches_reference",)),
    Mutation("greedy-stop-skips", PB + "regroup/algorithms.py",
             "        if mi - null > alpha:\n            break",
             "        if mi - null > alpha:\n            continue",
             (T + "regroup/test_algorithms.py::test_cut_equals_from_scratch_with_chance_level",)),
    Mutation("cut-excludes-equal", PB + "regroup/algorithms.py",
             "bisect.bisect_right(traj.running_max, alpha)", "bisect.bisect_left(traj.running_max, alpha)",
             (T + "regroup/test_algorithms.py::test_cut_semantics",)),
    # --------------------------------------------------------------- cost
    Mutation("conv-flops-no-output-area", PB + "core/geometry.py",
             "return self.kernel[0] * self.kernel[1] * self.conv_out_hw[0] * self.conv_out_hw[1]",
             "return self.kernel[0] * self.kernel[1]",
             (T + "cost/test_cost.py::test_costs_equal_flop_counter_and_executed_params",)),
    Mutation("gain-direction", PB + "cost/analytic.py",
             "return [baseline[k] / scheme[k] for k in baseline]",
             "return [scheme[k] / baseline[k] for k in baseline]",
             (T + "cost/test_cost.py::test_gains_on_hand_numbers",)),
    # --------------------------------------------------------------- merged and fused nets
    Mutation("merged-runs-unrequested-groups", PB + "merge/merged_net.py",
             "if not self._mask[key] & req or group_width(group) == 0:",
             "if group_width(group) == 0:",
             (T + "merge/test_merge.py::test_inactive_and_empty_groups_are_not_executed",)),
    Mutation("connectivity-meets-not-contains", PB + "core/subsets.py",
             "return source & reader == reader", "return source & reader != 0",
             (T + "core/test_subsets.py::test_a_group_reads_exactly_the_groups_of_its_supersets",
              T + "merge/test_merge.py::test_mixed_grouping_keeps_weights_and_zeroes_new_connections")),
    Mutation("fused-keeps-inactive-groups", PB + "merge/fuse.py",
             "if w and masks[k] & req]", "if w]",
             (T + "merge/test_fuse.py::test_fused_flops_and_params_match_the_analytic_counts",)),
    # --------------------------------------------------------------- MTZ (B2)
    Mutation("mtz-hessian-hat", PB + "baselines/mtz_core.py",
             "out = h_a @ torch.linalg.solve(h_a + h_b, h_b)",
             "out = h_a @ torch.linalg.solve(h_a + h_b, h_a)",
             (T + "baselines/test_mtz.py::test_merge_formula_matches_closed_form_and_cost_is_its_minimum",)),
    Mutation("mtz-pair-cost-cross-term", PB + "baselines/mtz_core.py",
             "qb[None, :] - 2 * cross", "qb[None, :] - cross",
             (T + "baselines/test_mtz.py::test_merge_formula_matches_closed_form_and_cost_is_its_minimum",)),
    Mutation("mtz-merged-weight", PB + "baselines/mtz_core.py",
             "rhs = (w_a @ h_a + w_b @ h_b)", "rhs = (w_a @ h_b + w_b @ h_a)",
             (T + "baselines/test_mtz.py::test_merge_formula_matches_closed_form_and_cost_is_its_minimum",)),
    Mutation("mtz-original-h-a-twice", PB + "baselines/mtz.py",
             "return out[0], out[1]", "return out[0], out[0]",
             (T + "baselines/test_mtz.py::test_original_hessians_of_two_different_networks_from_scratch",)),
    # --------------------------------------------------------------- pruning scores, order, floor
    Mutation("taylor-score-abs", PB + "prune/taylor.py",
             'c.mean(0).pow(2) if mode == "batch"', 'c.mean(0).abs() if mode == "batch"',
             (T + "prune/test_taylor.py::test_importance_equals_explicit_gate_gradients",)),
    Mutation("taylor-order-inverted", PB + "prune/taylor.py",
             "return {g: v / max(1, count)", "return {g: -v / max(1, count)",
             (T + "prune/test_taylor.py::test_importance_equals_explicit_gate_gradients",)),
    Mutation("rank-order-inverted", PB + "prune/base.py",
             "key=lambda r: (r[0], -savings", "key=lambda r: (-r[0], -savings",
             (T + "prune/test_prune_base.py::test_rank_neurons_divides_importance_by_savings",)),
    Mutation("vib-order-inverted", PB + "prune/vib_gates.py",
             "torch.exp(-log_alpha(", "torch.exp(log_alpha(",
             (T + "prune/test_vib.py::test_scores_are_mu2_over_sigma2_and_rank_high_log_alpha_lowest",
              T + "prune/test_vib.py::test_vib_driver_removes_the_noisiest_neuron_first")),
    Mutation("vib-kl-factor", PB + "prune/vib_gates.py",
             "return 0.5 * torch.log1p(", "return torch.log1p(",
             (T + "prune/test_vib.py::test_kl_and_log_alpha_hand_values",)),
    Mutation("floor-any-task", PB + "prune/base.py",
             "accepted = all(acc[t] >=", "accepted = any(acc[t] >=",
             (T + "prune/test_prune_base.py::test_every_task_must_stay_above_its_floor",)),
    # --------------------------------------------------------------- the published schedule, curves
    Mutation("mask-not-applied", PB + "prune/masks.py",
             "y = out * gate", "y = out",
             (T + "prune/test_schedule.py::test_masked_net_equals_the_physically_pruned_one",)),
    Mutation("gate-gradient-without-activation", PB + "prune/masks.py",
             "c = (a * grad).sum(0)", "c = grad.sum(0)",
             (T + "prune/test_schedule.py::test_gate_gradients_equal_autograd_of_explicit_gates",)),
    Mutation("dead-neurons-last", PB + "prune/schedule_select.py",
             "out.append((not is_dead[pos],", "out.append((is_dead[pos],",
             (T + "prune/test_schedule.py::test_dead_neurons_go_before_any_live_one",)),
    Mutation("flops-pace-lags-an-event", PB + "prune/schedule_grid.py",
             "return start - (start - end) * (event + 1) / events",
             "return start - (start - end) * event / events",
             (T + "prune/test_schedule.py::"
              "test_events_follow_the_flops_pace_and_every_scheme_trains_the_same_budget",)),
    Mutation("geometric-pace-lags-an-event", PB + "prune/schedule_grid.py",
             "return start * (end / start) ** done",
             "return start * (end / start) ** (event / events)",
             (T + "prune/test_schedule.py::test_event_targets_by_hand",)),
    Mutation("geometric-grid-skips-the-unit", PB + "prune/schedule_grid.py",
             "return n_above + 1 + _powers_at_or_above(flops, unit, q, tol)",
             "return n_above + _powers_at_or_above(flops, unit, q, tol)",
             (T + "prune/test_schedule.py::test_geometric_grid_by_hand_and_counted",)),
    Mutation("merged-budget-forgets-the-events", PB + "prune/config.py",
             "every=self.every * factor)", "every=self.every)",
             (T + "runs/test_merged_budget.py::"
              "test_total_budget_multiplies_the_warmup_and_the_minibatches_between_events",)),
    Mutation("pool-estimate-onto-the-busiest", PB + "runs/estimates.py",
             "loads[loads.index(min(loads))] += secs", "loads[loads.index(max(loads))] += secs",
             (T + "runs/test_pool_estimate.py::test_pool_seconds_by_hand",)),
    Mutation("geometric-estimate-linear-in-density", PB + "runs/estimates.py",
             "math.sqrt(GEOMETRIC_STEP / plan.grid_step)", "(GEOMETRIC_STEP / plan.grid_step)",
             (T + "runs/test_grid_step.py::test_the_time_estimate_grows_with_a_finer_grid_as_measured",)),
    Mutation("headroom-counts-a-resumed-stage-twice", PB + "runs/headroom.py",
             "if key is not None and key in seen:", "if key is not None and key in ():",
             (T + "runs/test_headroom.py::test_one_stage_resumed_into_several_folders_counts_once",)),
    Mutation("vib-kl-without-hw", PB + "prune/vib_gates.py",
             "* (self.hw[g] if hw_weighting else 1)", "* 1",
             (T + "prune/test_schedule.py::test_vib_kl_counts_a_conv_gate_once_per_output_position",)),
    Mutation("vib-threshold-strict", PB + "prune/schedule_select.py",
             "if v >= 0 and bool(masks.keep[g][pos])", "if v > 0 and bool(masks.keep[g][pos])",
             (T + "prune/test_schedule.py::test_vib_event_masks_exactly_the_gates_at_or_above_log_alpha_zero",
              )),
    Mutation("vib-pace-overshoots", PB + "prune/schedule_select.py",
             "if target is not None and all_task_flops(net, widths) <= target:",
             "if target is not None and all_task_flops(net, widths) < 0.9 * target:",
             (T + "prune/test_schedule.py::"
              "test_a_flops_paced_vib_event_masks_the_largest_log_alphas_and_stops_at_its_target",)),
    Mutation("schedule-end-own-start", PB + "prune/schedule.py",
             'unit = min(start, config.unit_flops or start) if config.plan.end_unit == "original" else start',
             'unit = start',
             (T + "prune/test_schedule.py::test_a_merged_net_ends_at_a_tenth_of_the_largest_original",)),
    Mutation("grid-below-unit-coarse", PB + "prune/schedule_grid.py",
             "k = min(math.floor((1 - (flops - tol) / unit) / step + 1e-9), last)",
             "k = min(math.floor((1 - (flops - tol) / start) / step + 1e-9), last)",
             (T + "prune/test_schedule.py::"
              "test_crossed_levels_counts_the_grid_levels_at_or_above_the_flops",)),
    Mutation("readoff-any-task", PB + "prune/curve.py",
             "if all(fits[t][i] >= reference[t] - delta", "if any(fits[t][i] >= reference[t] - delta",
             (T + "prune/test_curve.py::"
              "test_readoff_never_picks_a_checkpoint_where_only_task_b_is_below_its_floor",)),
    Mutation("readoff-fit-increasing", PB + "prune/curve.py",
             "increasing=False)", "increasing=True)",
             (T + "prune/test_curve.py::test_monotone_is_the_non_increasing_least_squares_fit",)),
    Mutation("t-interval-one-sided", PB + "runs/stats.py",
             "sps.t.ppf((1 + level) / 2, n - 1)", "sps.t.ppf(level, n - 1)",
             (T + "runs/test_sweep_report.py::test_gains_are_paired_by_seed",)),
    # --------------------------------------------------------------- statistics and export
    Mutation("bootstrap-percentiles", PB + "runs/stats.py",
             "[(1 - level) / 2, (1 + level) / 2]", "[(1 - level), level]",
             (T + "runs/test_experiment_seeds.py::test_bootstrap_ci_against_a_plain_resampling",)),
    Mutation("export-weights-float16", PB + "export/archive.py",
             "state = {k: v.detach().cpu().contiguous()", "state = {k: v.detach().cpu().half().float()",
             (T + "export/test_archive.py::test_export_round_trip_reproduces_outputs",)),
    # --------------------------------------------------------------- the regime map (issue 24)
    Mutation("regime-map-tolerance", PB + "runs/regime_map.py",
             "records[s] for s in complete}, delta, tasks)",
             "records[s] for s in complete}, 2 * delta, tasks)",
             (T + "runs/test_regime_map.py::test_a_cells_gains_equal_those_recomputed_from_its_records",)),
    Mutation("regime-map-incomplete-seeds", PB + "runs/regime_map.py",
             "if set(records.get(s, {})) >= set(SCHEMES)]", "if records.get(s)]",
             (T + "runs/test_regime_map.py::test_a_cells_gains_equal_those_recomputed_from_its_records",)),
    Mutation("regime-map-b1-compression-index", PB + "runs/regime_map.py",
             'curves[t][0]["flops"][t] / curves[t][figures', 'curves[t][1]["flops"][t] / curves[t][figures',
             (T + "runs/test_regime_map.py::test_b1_compression_and_the_heat_map_grid",)),
]


def repo_files(root: Path) -> list[str]:
    """Tracked files plus untracked files git does not ignore (so uncommitted tests count)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=root, check=True, capture_output=True).stdout.decode()
    return sorted({f for f in out.split("\0") if f and (root / f).is_file()})


def copy_repo(root: Path, dest: Path) -> None:
    for rel in repo_files(root):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)


def check_snippets(repo: Path, mutations: list[Mutation]) -> list[str]:
    """Problems: a missing file, a snippet found other than once, a no-op or duplicate mutation."""
    problems, names = [], set()
    for m in mutations:
        if m.name in names:
            problems.append(f"{m.name}: duplicate name")
        names.add(m.name)
        path = repo / m.file
        if not path.is_file():
            problems.append(f"{m.name}: no file {m.file}")
            continue
        n = path.read_text().count(m.original)
        if n != 1:
            problems.append(f"{m.name}: the original snippet occurs {n} times in {m.file} (must be once): "
                            f"{m.original!r}")
        if m.original == m.replacement:
            problems.append(f"{m.name}: replacement equals the original")
        if not m.tests:
            problems.append(f"{m.name}: names no test")
    return problems


def run_pytest(repo: Path, tests: tuple[str, ...] | list[str], scratch: Path) -> tuple[int, str, float]:
    """(pytest exit code, its output, seconds); 124 on timeout. Fresh cache/runs roots per run,
    so no cached stage or trajectory of another run can hide a mutation."""
    for name in ("cache", "runs"):
        shutil.rmtree(scratch / name, ignore_errors=True)
        (scratch / name).mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1",
           "PAM_CACHE_ROOT": str(scratch / "cache"), "PAM_RUNS_ROOT": str(scratch / "runs")}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-rfE", *tests]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        code, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        code, out = 124, f"timed out after {TIMEOUT_S} s\n{exc.stdout or ''}"
    return code, out, time.perf_counter() - start


def killer(output: str) -> str:
    """The node id of the first failed (or erroring) test in pytest's short summary."""
    found = re.search(r"^(?:FAILED|ERROR) (\S+)", output, re.MULTILINE)
    return found.group(1).split("::", 1)[-1] if found else "?"


def run_mutation(m: Mutation, repo: Path, scratch: Path) -> tuple[str, float, str]:
    """Apply ``m`` in ``repo``, run its tests, restore the file: (verdict, seconds, output tail
    when not killed, else "")."""
    path = repo / m.file
    source = path.read_text()
    path.write_text(source.replace(m.original, m.replacement, 1))
    try:
        code, out, secs = run_pytest(repo, m.tests, scratch)
    finally:
        path.write_text(source)
    verdict = (f"killed by {killer(out)}" if code == 1 else
               "SURVIVED" if code == 0 else f"ERROR (pytest exit {code})")
    return verdict, secs, "" if code == 1 else out[-3000:]


def check(mutations: list[Mutation], jobs: int) -> int:
    """Copies, snippet check, unmutated run, then the mutations on ``jobs`` copies at once."""
    with tempfile.TemporaryDirectory(prefix="pam-mutation-") as tmp:
        copies = [(Path(tmp) / f"repo{i}", Path(tmp) / f"scratch{i}") for i in range(jobs)]
        for repo, _ in copies:
            copy_repo(ROOT, repo)
        problems = check_snippets(copies[0][0], mutations)
        if problems:
            print("mutation check: the mutation list does not match the code:", *problems, sep="\n  ")
            return 1
        tests = sorted({t for m in mutations for t in m.tests})
        code, out, secs = run_pytest(copies[0][0], tests, copies[0][1])
        if code != 0:
            print(out[-4000:])
            print(f"mutation check: the named tests do not pass on the unmutated code (exit {code})")
            return 1
        print(f"unmutated: {len(tests)} named tests pass ({secs:.1f} s)", flush=True)
        free: queue.Queue = queue.Queue()
        for c in copies:
            free.put(c)

        def work(m: Mutation) -> tuple[str, float, str]:
            repo, scratch = free.get()  # a copy no other mutation is using
            try:
                return run_mutation(m, repo, scratch)
            finally:
                free.put((repo, scratch))
        results: dict[str, tuple[str, float, str]] = {}
        with ThreadPoolExecutor(jobs) as pool:
            pending = {pool.submit(work, m): m for m in mutations}
            for done in as_completed(pending):
                m = pending[done]
                results[m.name] = done.result()
                print(f"  {len(results)}/{len(mutations)} {m.name}: {results[m.name][0]}", flush=True)
    width = max(len(m.name) for m in mutations)
    print(f"\n{'mutation':<{width}}  {'seconds':>7}  result")
    for m in mutations:
        verdict, secs, tail = results[m.name]
        if tail:
            print(tail)
        print(f"{m.name:<{width}}  {secs:7.1f}  {verdict}")
    failed = sum(not r[0].startswith("killed") for r in results.values())
    print(f"\n{len(mutations) - failed}/{len(mutations)} mutations killed, {failed} survived or errored; "
          f"{sum(r[1] for r in results.values()):.0f} s in the mutated runs ({jobs} at a time)")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", default="", help="only mutations whose name contains this")
    parser.add_argument("--list", action="store_true", help="print the mutations and their tests")
    parser.add_argument("--jobs", type=int, default=2, help="mutations run at once, each on its own "
                        "copy with one thread (default 2: the CI's cores)")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if args.k in m.name]
    if not chosen:
        print(f"no mutation name contains {args.k!r}")
        return 2
    if args.list:
        for m in chosen:
            print(f"{m.name}: {m.file}\n    {m.original!r} -> {m.replacement!r}")
            print("    " + "\n    ".join(m.tests))
        return 0
    start = time.perf_counter()
    code = check(chosen, max(1, args.jobs))
    print(f"mutation check: {'passed' if code == 0 else 'FAILED'} in {time.perf_counter() - start:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
