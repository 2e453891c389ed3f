"""Diagnosis of the MI estimator on a preset's committed networks (issue 12; docs/estimator.md).

    python scripts/diagnose_estimator.py --preset digits-2task            # all sections, ~10 min
    python scripts/diagnose_estimator.py --section sets --json

Sections (each prints a table; --json prints everything as one JSON document):
  sets      I(S; Y^B) of the first k live neurons of net A with the fixed (paper) and the scaled
            kernel, against shuffled labels, and I(S; Y^A); the net-B control.
  single    per layer: single-neuron MI with the own and the other task's labels against a
            label-permutation null (how many neurons carry information about the other task).
  groups    per layer and estimator: the exclusive sets at several alphas, their size and how many
            of their neurons come from the right network (purity), and how many are picked by both.
Everything uses the package's own estimator (regroup.mutual_info, regroup.greedy).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pam_explorer.core.config import DataConfig, MIConfig  # noqa: E402
from pam_explorer.data import get_preset, task_targets  # noqa: E402
from pam_explorer.graph.activations import capture_activations  # noqa: E402
from pam_explorer.regroup.algorithms import cut  # noqa: E402
from pam_explorer.regroup.greedy import greedy_run  # noqa: E402
from pam_explorer.regroup.mutual_info import label_permutations, mi_reference, neuron_weights, rms_normalise  # noqa: E402  # noqa: E402
from pam_explorer.regroup.trajectories import merged_activations, sample_inputs  # noqa: E402
from pam_explorer.zoo.pretrained import load_pretrained  # noqa: E402

ALPHAS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
ESTIMATORS = {  # name -> (kernel, chance level perms, normalise)
    "fixed (paper kernel, RMS)": ("fixed", 0, "rms"),
    "fixed, chance-corrected": ("fixed", 16, "rms"),
    "scaled": ("scaled", 0, "rms"),
    "scaled, chance-corrected (default)": ("scaled", 16, "rms"),
}


def load(preset_name: str, n: int):
    preset = get_preset(preset_name)
    nets = load_pretrained(preset.name, preset.task_names)
    images, labels = sample_inputs(preset, DataConfig(), MIConfig(n_samples=n))
    targets = {t: task_targets(labels, preset, t) for t in preset.task_names}
    return preset, nets, images, targets


def section_sets(nets, images, targets, sigma2: float) -> dict:
    """The issue's first measurement: sets of the first k live neurons of net A (fc1)."""
    a = rms_normalise(capture_activations(nets[0], images)["fc1"]).double()
    b = rms_normalise(capture_activations(nets[1], images)["fc1"]).double()
    live_a = torch.nonzero(a.std(0) > 1e-9).flatten()
    live_b = torch.nonzero(b.std(0) > 1e-9).flatten()
    yb, ya = targets["B"], targets["A"]
    shuffled = yb[label_permutations(len(yb), 1, seed=1)[0]]
    wa, wb = neuron_weights(a), neuron_weights(b)
    rows = []
    for k in (1, 2, 4, 8, 16, 32):
        S = live_a[:k]
        row = {"k": k}
        for name, scale in (("fixed", 1.0), ("scaled", float(wa[S].sum()))):
            row[name] = {"I(S;YB)": mi_reference(a[:, S], yb, sigma2, scale=scale),
                         "I(S;YB shuffled)": mi_reference(a[:, S], shuffled, sigma2, scale=scale),
                         "I(S;YA)": mi_reference(a[:, S], ya, sigma2, scale=scale)}
        rows.append(row)
    Sb = live_b[:32]
    control = {name: mi_reference(b[:, Sb], yb, sigma2, scale=scale)
               for name, scale in (("fixed", 1.0), ("scaled", float(wb[Sb].sum())))}
    return {"layer": "fc1", "live_A": len(live_a), "live_B": len(live_b), "rows": rows,
            "net_B_first_32_live_I(S;YB)": control}


def section_single(nets, images, targets, sigma2: float, perms: int = 50) -> list[dict]:
    out = []
    for layer in capture_activations(nets[0], images[:2]):
        for own, other, net in (("A", "B", nets[0]), ("B", "A", nets[1])):
            t = rms_normalise(capture_activations(net, images)[layer]).double()
            live = t.std(0) > 1e-9
            cols = range(t.shape[1])
            mi_other = torch.tensor([mi_reference(t[:, [j]], targets[other], sigma2) for j in cols])
            mi_own = torch.tensor([mi_reference(t[:, [j]], targets[own], sigma2) for j in cols])
            null = torch.stack([torch.tensor([mi_reference(t[:, [j]], targets[other][p], sigma2)
                                              for j in range(t.shape[1])])
                                for p in label_permutations(t.shape[0], perms, seed=0)])
            q95 = null.quantile(0.95, dim=0)
            out.append({"layer": layer, "net": own, "width": t.shape[1], "live": int(live.sum()),
                        f"median I(n;Y{own})": float(mi_own[live].median()),
                        f"median I(n;Y{other})": float(mi_other[live].median()),
                        "null mean": float(null.mean()),
                        "above null q95": int(((mi_other > q95) & live).sum())})
    return out


def section_groups(nets, images, targets, sigma2: float) -> list[dict]:
    rows = []
    for normalise in ("rms",):
        acts = merged_activations(nets, images, "max", normalise)
        for layer, x in acts.items():
            width_a = capture_activations(nets[0], images[:2])[layer].shape[1]
            for name, (kernel, perms, _) in ESTIMATORS.items():
                runs = {t: greedy_run(x, targets[o], sigma2, kernel=kernel, null_perms=perms)
                        for t, o in (("A", "B"), ("B", "A"))}
                for alpha in ALPHAS:
                    rows.append(_composition(layer, name, alpha, runs, width_a))
    return rows


def _composition(layer: str, name: str, alpha: float, runs: dict, width_a: int) -> dict:
    from pam_explorer.regroup.algorithms import Trajectory
    picked = {}
    for t, run in runs.items():
        traj = Trajectory(layer, (t,), tuple(run.order.tolist()), tuple(run.mi.tolist()),
                          tuple(sorted(run.order.tolist())), tuple(run.null.tolist()))
        picked[t] = set(traj.order[:cut(traj, alpha)])
    both = picked["A"] & picked["B"]
    ea, eb = picked["A"] - both, picked["B"] - both
    return {"layer": layer, "estimator": name, "alpha": alpha, "L'A": len(ea), "L'B": len(eb),
            "both": len(both), "purity A": sum(i < width_a for i in ea) / max(1, len(ea)),
            "purity B": sum(i >= width_a for i in eb) / max(1, len(eb))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="digits-2task")
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--sigma2", type=float, default=0.1)
    p.add_argument("--section", choices=["sets", "single", "groups", "all"], default="all")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    _, nets, images, targets = load(args.preset, args.samples)
    out = {}
    if args.section in ("sets", "all"):
        out["sets"] = section_sets(nets, images, targets, args.sigma2)
    if args.section in ("single", "all"):
        out["single"] = section_single(nets, images, targets, args.sigma2)
    if args.section in ("groups", "all"):
        out["groups"] = section_groups(nets, images, targets, args.sigma2)
    print(json.dumps(out, indent=1) if args.json else _text(out))
    return 0


def _text(out: dict) -> str:
    lines = []
    if "sets" in out:
        s = out["sets"]
        lines.append(f"## sets (fc1; live neurons A {s['live_A']}, B {s['live_B']})")
        lines.append("k | fixed I(S;YB) | shuffled | I(S;YA) | scaled I(S;YB) | shuffled | I(S;YA)")
        for r in s["rows"]:
            f, c = r["fixed"], r["scaled"]
            cells = [x[k] for x in (f, c) for k in ("I(S;YB)", "I(S;YB shuffled)", "I(S;YA)")]
            lines.append(f"{r['k']} | " + " | ".join(f"{v:.2f}" for v in cells))
        lines.append(f"net B, first 32 live neurons, I(S;YB): {s['net_B_first_32_live_I(S;YB)']}")
    for key in ("single", "groups"):
        if key in out:
            lines.append(f"## {key}")
            lines += [json.dumps(r) for r in out[key]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
