"""The jobs of dashboard runs (pure: no streamlit, importable by tests).

A run is described as data, ``{"command": "experiment", "args": {...}}``, never as a command line:
``pam_explorer.runs.jobs`` checks it against an allow-list (``pam_explorer.runs.job_spec``) and
builds the command itself, with the run's own folder as ``--out``.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pam_explorer.core.config import MIConfig, RegroupConfig
from pam_explorer.runs import job_spec
from pam_explorer.runs.estimate import Estimate, estimate
from pam_explorer.runs.experiment import ExperimentConfig

MODES = ("Full experiment (B1, B2, PAM)", "Single PAM finetune + prune at alpha")
FLOORS = ("original", "own")
RANKS = ("flops-aware", "published")  # the first is the default (docs/pruning.md)
REGROUP_PROFILES = ("default", "paper", "legacy")


def parse_seeds(text: str) -> tuple[int, ...]:
    """"0, 1,2" -> (0, 1, 2); ValueError (with the reason) for anything else."""
    try:
        seeds = tuple(int(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        raise ValueError(f"seeds must be comma-separated integers such as 0,1,2, got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct integers >= 0, got {text!r}")
    return seeds


def parse_overrides(text: str) -> dict[str, float]:
    """"conv1=0.1, fc1=0.2" -> {"conv1": 0.1, "fc1": 0.2}; ValueError (with the reason) otherwise."""
    out: dict[str, float] = {}
    for item in (x.strip() for x in text.replace(";", ",").split(",")):
        if not item:
            continue
        layer, sep, value = item.partition("=")
        try:
            alpha = float(value)
        except ValueError:
            alpha = float("nan")
        if not sep or not layer.strip() or not alpha >= 0 or alpha == float("inf"):
            raise ValueError(f"per-layer overrides are LAYER=ALPHA items (alpha >= 0 bits) separated by "
                             f"commas, e.g. conv1=0.1, fc1=0.2; got {item!r}")
        out[layer.strip()] = alpha
    return out


def overrides_to_text(overrides) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in dict(overrides).items())


def experiment_job(preset: str, prune: str, mode: str, alpha: float | None, quick: bool,
                   device: str = "auto", target_sparsity: float | None = None,
                   overrides: Mapping[str, float] | None = None, seeds: Sequence[int] = (0,),
                   floor: str = "original", rank: str = "flops-aware", regroup: str = "default") -> dict:
    """The job spec of an experiment run (see pam_explorer.runs.job_spec). ``alpha`` and
    ``overrides`` are PAM's regrouping (the explorer's, by default on the Runs page); alpha None:
    the regroup profile's default."""
    args: dict = {"preset": preset, "prune": prune, "device": device}
    if prune == "adapmtl" and target_sparsity is not None:
        args["target_sparsity"] = float(target_sparsity)
    if alpha is not None:
        args["alpha"] = float(alpha)
    if overrides:
        args["overrides"] = {k: float(v) for k, v in sorted(overrides.items())}
    if mode == MODES[1]:
        args["schemes"] = ["PAM"]
    if list(seeds) != [0]:
        args["seeds"] = [int(s) for s in seeds]
    for key, value, default in (("floor", floor, "original"), ("rank", rank, "flops-aware"),
                                ("regroup", regroup, "default")):
        if value != default:
            args[key] = value
    if quick:
        args["quick"] = True
    return {"command": "experiment", "args": args}


@dataclass(frozen=True)
class ExperimentPlan:
    """One experiment run as the Runs page shows it: the checked job spec (what runs), the
    ExperimentConfig the command builds from it (what it will use), the command line and the
    expected duration."""

    job: dict
    config: ExperimentConfig
    command: str
    duration: Estimate


def config_of_job(job: Mapping) -> ExperimentConfig:
    """The ExperimentConfig of an experiment job spec, as ``python -m pam_explorer experiment``
    builds it from the spec's arguments (absent ones: the config's defaults); a PamError naming
    the field for a bad value."""
    args = dict(job_spec.check(job)["args"])
    if "seed" in args:
        args["seeds"] = [args.pop("seed")]
    for key in ("seeds", "schemes"):
        if key in args:
            args[key] = tuple(args[key])
    if "overrides" in args:
        args["overrides"] = tuple(sorted((k, float(v)) for k, v in args["overrides"].items()))
    return ExperimentConfig(**args)


def experiment_plan(preset: str, prune: str, mode: str, alpha: float | None, overrides_text: str,
                    seeds_text: str, quick: bool, device: str, target_sparsity: float, floor: str, rank: str,
                    regroup: str, roots: Iterable[str | Path] = ()) -> ExperimentPlan:
    """The Runs page's one call: its controls' values -> the plan of the run (ValueError / PamError
    naming what is wrong: seeds, overrides or a config field). The job is the one source: the
    config and the command are derived from it, so what the page says is what will run; the
    duration comes from the stage times measured under ``roots``."""
    job = experiment_job(preset, prune, mode, alpha, quick, device, target_sparsity,
                         parse_overrides(overrides_text), parse_seeds(seeds_text), floor, rank, regroup)
    return ExperimentPlan(job=job, config=config_of_job(job), command=job_spec.describe(job),
                          duration=estimate(job, roots))


def regroup_profile(mi: MIConfig) -> str | None:
    """The experiment's regroup profile that uses ``mi``'s estimator ("default" or "paper"), or
    None when no profile does (custom MI settings: a run cannot reproduce the explorer)."""
    return {"default": "default", "paper": "paper"}.get(mi.profile)


def run_differences(mi: MIConfig, cfg: RegroupConfig, checkpoints: str, regroup: str,
                    profile_both_picked: str) -> list[str]:
    """Why a run's PAM regrouping would differ from what the explorer shows (empty: it is the
    explorer's): other MI settings, another rule for neurons picked twice, uploaded networks."""
    out = []
    if regroup_profile(mi) != regroup:
        out.append(f"the explorer's MI settings are profile {mi.profile!r}, the run regroups with the "
                   f"{regroup!r} profile's")
    if cfg.both_picked != profile_both_picked:
        out.append(f"the explorer {'shares' if cfg.both_picked == 'share' else 'drops'} neurons picked by "
                   f"several exclusive sets, the {regroup!r} profile "
                   f"{'shares' if profile_both_picked == 'share' else 'drops'} them")
    if checkpoints != "pretrained":
        out.append("the explorer uses uploaded networks; runs use the preset's pre-trained ones")
    if cfg.algorithm != "simplified":
        out.append("runs regroup with the simplified algorithm")
    return out


def train_job(preset: str, epochs: int = 15, device: str = "auto") -> dict:
    """The job spec of "Train networks for this preset": the networks are trained into the run's
    folder and installed under assets/<preset> (never replacing networks there)."""
    return {"command": "train", "args": {"preset": preset, "epochs": int(epochs), "device": device,
                                         "install": True}}


def finetune_export_job(preset: str, cfg: RegroupConfig, mi: MIConfig, epochs: int = 3,
                        device: str = "auto") -> dict:
    """The job spec of "finetune, then export": the `merge` command at the explorer's regroup
    config and MI settings, finetuned ``epochs`` epochs; its model.zip is then exported."""
    args: dict = {"preset": preset, "alpha": float(cfg.alpha), "algorithm": cfg.algorithm,
                  "finetune_epochs": int(epochs), "device": device, "samples": mi.n_samples,
                  "sigma2": float(mi.sigma2), "pooling": mi.pooling, "label_mode": mi.label_mode,
                  "bound": mi.bound, "kernel": mi.kernel, "null_perms": mi.null_perms,
                  "normalise": mi.normalise, "both_picked": cfg.both_picked}
    if cfg.overrides:
        args["overrides"] = {k: float(v) for k, v in cfg.overrides}
    return {"command": "merge", "args": args}


def slurm_sweep_job(sweep: Mapping, partition: str | None, cpus_per_job: int, mem_gb: float,
                    time_min: int) -> dict:
    """A sweep job spec (``ui.sweep_view.sweep_job``) sent to Slurm with these resources per job
    (partition None: the cluster's default); ConfigError for a value the spec refuses."""
    args = {**sweep["args"], "executor": "slurm", "cpus_per_job": int(cpus_per_job), "mem_gb": float(mem_gb),
            "time_min": int(time_min), "threads": int(cpus_per_job)}
    if partition:
        args["slurm_partition"] = partition
    return job_spec.check({"command": "sweep", "args": args})


__all__ = ["MODES", "FLOORS", "RANKS", "REGROUP_PROFILES", "parse_seeds", "parse_overrides",
           "overrides_to_text", "experiment_job", "ExperimentPlan", "config_of_job", "experiment_plan",
           "regroup_profile", "run_differences", "train_job", "finetune_export_job", "slurm_sweep_job"]
