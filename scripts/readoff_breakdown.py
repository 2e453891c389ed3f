"""Where the FLOPs go at the read-off, and PAM's accuracy against B2's at equal FLOPs (issue 24,
"why PAM does not pay"), from a study cell's stage records of 28-px LeNet-5s.

    python scripts/readoff_breakdown.py results/regime_map/mnist28-wide-overlap-0_taylor

Part 1, per seed, scheme and subset: the FLOPs read off at delta 0.5 and the share of each layer.
The per-layer count is this script's own (a LeNet-5 at 28 px: conv1 5x5 over 24x24 outputs,
conv2 5x5 over 8x8, a 4x4 map per conv2 channel into fc1; a group of layer l reads the groups of
layer l-1 whose tasks include its own), and its total is checked against the record's FLOPs, so
a disagreement with the package's cost model stops the script.

Part 2, per seed: the worst task's validation accuracy minus the original's, at the cheapest
finetuned checkpoint with all-task FLOPs >= each level, for PAM and B2 (the two jointly pruned
nets). Nothing is written.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

LAYERS = ("conv1", "conv2", "fc1", "fc2")
PER_CONNECTION = {"conv1": 25 * 24 * 24, "conv2": 25 * 8 * 8, "fc1": 16, "fc2": 1}  # MACs per link
HEAD_OUTPUTS = 5  # labels per task in the mnist28 presets
LEVELS = (2.0, 1.5, 1.0, 0.7)  # MFLOPs (all tasks)


def _tasks(key: str) -> set[str]:
    return set(key.split("+"))


def layer_macs(widths: dict, subset: str) -> dict[str, int]:
    """MACs per layer (and the heads) of ``subset`` of a net with group ``widths`` {layer: {key: n}}."""
    run, out, prev = _tasks(subset), {}, None
    for layer in LAYERS:
        total = 0
        for key, n in widths[layer].items():
            if n == 0 or not _tasks(key) & run:
                continue
            n_in = 1 if prev is None else sum(w for k, w in widths[prev].items()
                                              if w and _tasks(key) <= _tasks(k))
            total += n * n_in * PER_CONNECTION[layer]
        out[layer], prev = total, layer
    last = widths[LAYERS[-1]]
    out["head"] = sum(HEAD_OUTPUTS * sum(w for k, w in last.items() if t in _tasks(k)) for t in run)
    return out


def breakdown(stages: Path, seed: int) -> list[str]:
    rows = []
    for scheme in ("B1", "B2", "PAM"):
        rec = json.loads((stages / f"{scheme}_s{seed}.json").read_text())
        if not rec.get("flops"):
            rows.append(f"s{seed} {scheme:3} no checkpoint above the floor")
            continue
        subsets = ("A", "B") if scheme == "B1" else ("A", "B", "A+B")
        for sub in subsets:
            widths = rec["widths"][sub] if scheme == "B1" else rec["widths"]
            macs = layer_macs(widths, sub)
            flops = 2 * sum(macs.values())
            if flops != rec["flops"][sub]:
                raise SystemExit(f"{scheme} s{seed} {sub}: counted {flops} FLOPs, "
                                 f"the record says {rec['flops'][sub]}")
            shares = " ".join(f"{k} {100 * macs[k] / sum(macs.values()):4.1f} %" for k in LAYERS)
            rows.append(f"s{seed} {scheme:3} {sub:3} {flops / 1e6:6.3f} MFLOPs  {shares}")
    return rows


def _drops(rec: dict) -> list[tuple[float, float]]:
    ref = rec["reference_val_accuracy"]
    return [(c["flops"]["A+B"] / 1e6, min(c["val_accuracy"][t] - ref[t] for t in ref))
            for c in rec["curve"] if c["finetuned"]]


def _at(points: list[tuple[float, float]], level: float) -> str:
    above = [p for p in points if p[0] >= level]
    return f"{min(above)[1]:+.2f}" if above else "  -  "


def equal_flops(stages: Path, seed: int) -> str:
    pam, b2 = (_drops(json.loads((stages / f"{s}_s{seed}.json").read_text())) for s in ("PAM", "B2"))
    return f"s{seed} " + " | ".join(f"{lv:.1f} M: PAM {_at(pam, lv)} B2 {_at(b2, lv)}" for lv in LEVELS)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cell", type=Path, help="a study cell folder (config.json, stages/)")
    stages = p.parse_args().cell / "stages"
    seeds = sorted(int(f.stem.split("_s")[1]) for f in stages.glob("PAM_s*.json"))
    print("FLOPs at the 0.5 read-off and each layer's share")
    for seed in seeds:
        print("\n".join(breakdown(stages, seed)))
    print("\nWorst task's validation accuracy - original (points), cheapest checkpoint at >= the FLOPs")
    for seed in seeds:
        print(equal_flops(stages, seed))


if __name__ == "__main__":
    main()
