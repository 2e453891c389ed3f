"""Pure text helpers of the dashboard (no streamlit): what produced a figure, empty cells, quick
runs, run progress. Every page says which configuration produced what it shows with these.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from pam_explorer.core.config import MIConfig, RegroupConfig

DASH = "—"  # an empty table cell (never the text "None")
FLOPS_DEF = ("FLOPs = 2 x multiply-accumulates of the conv and linear layers for one picture (batch 1); "
             "bias adds, normalisation, activations and pooling are not counted")
QUICK = "quick run: tiny data, few steps — a smoke test, not a result"
BOTH_PICKED_TEXT = {"share": "shared", "drop": "dropped from the network"}
BEFORE_PRUNING_WHY = (
    "Before pruning the merged network still holds every neuron of every network, and a task also "
    "runs the shared group, which holds neurons from the other tasks' networks (with new "
    "connections), so PAM costs more than the separate networks until pruning removes what "
    "merging made redundant.")
NOT_MONOTONE = (
    "Sharing is not monotone in alpha: as alpha grows, each task's exclusive set grows until the "
    "sets start to pick the same neurons; a neuron picked by more than one exclusive set is "
    "{rule}, so sharing rises again (at a large enough alpha everything can be shared).")


_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character


def plain(text: Any) -> str:
    """Untrusted text (a run's message, a report's or manifest's strings) for a markdown element,
    shown as the text it is: one line, every ASCII punctuation character backslash-escaped (in
    markdown any of them may be), so ``![](http://...)`` is never an image that fetches a URL,
    nor a link, emphasis, a colour directive (``:red[...]``), an emoji code or LaTeX."""
    return _PUNCTUATION.sub(r"\\\1", " ".join(str(text).split()))


def code(text: Any) -> str:
    """Untrusted text as an inline code span (shown literally): fenced by one backtick more
    than its longest run of backticks, so it cannot close the span early; one line."""
    text = " ".join(str(text).split())
    fence = "`" * (1 + max((len(m) for m in re.findall(r"`+", text)), default=0))
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def dash(value: Any, fmt: str = "{}") -> str:
    """``fmt`` of value, or a dash for None / NaN / a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return fmt.format(value)


def mi_text(mi: MIConfig) -> str:
    """'MI profile default (N=256, sigma2=0.1, scaled kernel, 16 label permutations, ...)'."""
    return (f"MI profile {mi.profile} (N={mi.n_samples}, sigma2={mi.sigma2:g}, {mi.kernel} kernel, "
            f"chance level from {mi.null_perms} label permutations, {mi.normalise} normalisation, "
            f"{mi.pooling} pooling, {mi.label_mode} labels, {mi.bound} bound, seed {mi.seed})")


def number(value: Any) -> float | None:
    """A number of a JSON file as a float: JSON numbers, and the strings "inf", "-inf" and "nan"
    that strict JSON writes for non-finite ones (core/io.py); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) or (isinstance(value, str) and value in ("inf", "-inf", "nan")):
        return float(value)
    return None


def overrides_text(overrides: Mapping[str, float] | tuple) -> str:
    """'conv1=0.1, fc1=inf' (a value may be strict JSON's string "inf"); 'none'."""
    items = dict(overrides)
    def text(v: Any) -> str:
        x = number(v)
        return f"{x:g}" if x is not None else str(v)
    return ", ".join(f"{k}={text(v)}" for k, v in items.items()) if items else "none"


def regroup_text(cfg: RegroupConfig) -> str:
    """'alpha 0.5 bits (per-layer overrides: conv1=0.1); neurons picked by several exclusive sets:
    shared; simplified algorithm'."""
    return (f"alpha {cfg.alpha:g} bits (per-layer overrides: {overrides_text(cfg.overrides)}); "
            f"both_picked {cfg.both_picked} (neurons picked by several exclusive sets are "
            f"{BOTH_PICKED_TEXT.get(cfg.both_picked, cfg.both_picked)}); {cfg.algorithm} algorithm")


def setup_caption(setup: Any) -> str:
    """The sidebar's summary of the applied setup (a ui.state.Setup)."""
    return (f"**Preset** {setup.preset}  \n**Checkpoints** {setup.checkpoints}  \n"
            f"**MI profile** {setup.mi.profile}: N={setup.mi.n_samples}, sigma2={setup.mi.sigma2:g}, "
            f"{setup.mi.kernel} kernel, {setup.mi.null_perms} permutations, {setup.mi.pooling} pooling, "
            f"{setup.mi.label_mode} labels, {setup.mi.bound} bound")


_APPROX = re.compile(r"\s*\(I\(Y\^A;Y\^B\) ~ [0-9.]+ bits\)")


def preset_description(description: str, relatedness_bits: float, num_tasks: int = 2) -> str:
    """A preset's description with the MEASURED label relatedness in place of the approximate
    value some descriptions carry (ideal uniform digits)."""
    text = _APPROX.sub("", description)
    what = "I(Y^A;Y^B)" if num_tasks == 2 else "mean I(Y^s;Y^t) over task pairs"
    return f"{text} — task relatedness {what} = {relatedness_bits:.3f} bits (measured, train split)"


def is_quick(report_or_run: Mapping | None) -> bool:
    """Whether a report (report.json) or a run (status with a job) was a quick run."""
    if not isinstance(report_or_run, Mapping):
        return False
    if report_or_run.get("quick"):
        return True
    job = report_or_run.get("job")
    args = job.get("args") if isinstance(job, Mapping) else None
    return bool(isinstance(args, Mapping) and args.get("quick"))


def run_label(run: Mapping) -> str:
    """'<run id> (done, quick)': a run in a select box."""
    return f"{run['run_id']} ({run['state']}" + (", quick" if is_quick(run) else "") + ")"


def model_stage(manifest: Mapping) -> str:
    """Which model an export zip holds, from its manifest: merged only, finetuned, or pruned."""
    if manifest.get("stage"):
        return str(manifest["stage"])
    if manifest.get("scheme") == "PAM" or manifest.get("prune"):
        return f"merged, finetuned and pruned ({manifest.get('prune', '?')})"
    if "finetune_epochs" in manifest:
        n = manifest["finetune_epochs"]
        return f"merged and finetuned {n} epoch(s), not pruned" if n else "merged, not finetuned"
    return "merged (stage not recorded)"


def accuracy_text(manifest: Mapping) -> str:
    """'test accuracy A 95.4 %, B 93.2 % (original networks: A 96.8 %, B 95.2 %)' or ''."""
    acc = manifest.get("accuracy")
    if not isinstance(acc, Mapping) or not acc:
        return ""
    text = "test accuracy " + ", ".join(f"{t} {v:.1f} %" for t, v in acc.items())
    ref = manifest.get("reference_accuracy")
    if isinstance(ref, Mapping) and ref:
        text += " (original networks: " + ", ".join(f"{t} {v:.1f} %" for t, v in ref.items()) + ")"
    return text


def cost_table(manifest: Mapping) -> dict[str, dict[str, str]]:
    """{"FLOPs": {subset: "1,234,567"}, "params": {...}} of a manifest, subsets in canonical order
    (A, B, A+B: by size, then task order) whatever order the file holds them in; {} without costs."""
    flops, params = manifest.get("flops") or {}, manifest.get("params") or {}
    tasks = list(manifest.get("tasks") or [])
    order = {t: i for i, t in enumerate(tasks)}
    def canonical(k: str) -> tuple:
        return len(k.split("+")), [order.get(t, len(order)) for t in k.split("+")], k
    subsets = sorted(flops, key=canonical)
    return {"FLOPs": {k: f"{flops[k]:,.0f}" for k in subsets},
            "params": {k: f"{params[k]:,.0f}" if k in params else DASH for k in subsets}} if subsets else {}


def progress_text(p: Mapping) -> str:
    """A run's progress.json as one line: 'PAM seed 0 (stage 3 of 3, 40 %): joint finetuning'
    (a message that repeats the stage's scheme name is not prefixed twice)."""
    stage, message = str(p.get("stage", "")), str(p.get("message", ""))
    scheme = stage.split(" ")[0] if stage else ""
    if scheme and message.startswith(scheme + ": "):
        message = message[len(scheme) + 2:]
    if message.startswith(stage + ": "):
        message = message[len(stage) + 2:]
    where = ""
    if isinstance(p.get("stage_number"), int) and isinstance(p.get("stages"), int):
        where = f"stage {p['stage_number']} of {p['stages']}"
        if isinstance(p.get("stage_fraction"), (int, float)):
            where += f", {p['stage_fraction']:.0%} of it"
    head = stage + (f" ({where})" if where else "")
    return f"{head}: {message}" if head and message else head or message


__all__ = ["DASH", "FLOPS_DEF", "plain", "code", "QUICK", "BEFORE_PRUNING_WHY", "NOT_MONOTONE", "dash",
           "mi_text", "number", "overrides_text",
           "regroup_text", "setup_caption", "preset_description", "is_quick", "run_label", "progress_text",
           "model_stage", "accuracy_text", "cost_table"]
