"""Implementations of the CLI sub-commands (argument parsing lives in :mod:`pam_explorer.cli.parser`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pam_explorer.core.config import DataConfig, MIConfig, RegroupConfig, TrainConfig
from pam_explorer.core.device import resolve_device
from pam_explorer.core.errors import ConfigError
from pam_explorer.data import Preset, get_preset
from pam_explorer.data.project import ProjectPreset
from pam_explorer.graph.layer_map import layer_map
from pam_explorer.graph.networks import task_networks
from pam_explorer.regroup.explorer import Explorer
from pam_explorer.runs import estimates
from pam_explorer.runs.experiment import ExperimentConfig, run_experiment
from pam_explorer.runs.merge_run import merge_preset
from pam_explorer.runs.project_run import train_project, write_preset_project
from pam_explorer.runs.slurm import Resources
from pam_explorer.runs.sweep import SweepConfig, SweepOptions, dry_run, run_sweep
from pam_explorer.runs.training_run import train_preset
from pam_explorer.zoo.pretrained import load_pretrained


def _err(msg: str, end: str = "\n") -> None:
    print(msg, file=sys.stderr, end=end, flush=True)


def _nets(preset: str, arch: str | None) -> list:
    """The committed ``arch`` networks of ``preset``, or a project's own (DataMissing says how to
    train them)."""
    return task_networks(get_preset(preset), arch)


def preset_ref(args: argparse.Namespace) -> str:
    """What --preset or --project names, for get_preset: the preset's name, or the project file's
    absolute path (checked and read there). ConfigError for --arch with --project."""
    if getattr(args, "project", None) is None:
        return args.preset
    if getattr(args, "arch", None) not in (None, "lenet5"):
        raise ConfigError(f"--arch {args.arch} does not apply to --project: the project file names each "
                          "task's architecture (tasks.NAME.arch)")
    return str(Path(args.project).expanduser().absolute())


def check_project_overrides(cfg: RegroupConfig | ExperimentConfig, nets: list) -> None:
    """As :func:`check_override_layers`, on a project's networks."""
    known = [info.name for info in layer_map(nets[0])]
    for layer, alpha in cfg.overrides:
        if layer not in known:
            raise ConfigError(f"--override {layer}={alpha:g}: unknown layer {layer!r}; the layers of "
                              f"the project's networks are {', '.join(known)}")


def _check_overrides(cfg: RegroupConfig | ExperimentConfig, preset: Preset, arch: str | None = None) -> None:
    if isinstance(preset, ProjectPreset):
        if cfg.overrides:
            check_project_overrides(cfg, task_networks(preset))
    else:
        check_override_layers(cfg, preset, arch)


class _Estimate:
    """Prints a time estimate once, when the work starts (after every check: an error stays the
    only line on stderr)."""

    def __init__(self, line: str) -> None:
        self.line: str | None = line

    def say(self) -> None:
        if self.line is not None:
            _err(self.line)
            self.line = None


def cmd_project(args: argparse.Namespace) -> dict:
    result = write_preset_project(args.preset, Path(args.out), args.arch)
    if not args.json:
        print(f"wrote {args.preset} as a project: {result['project']} ({result['pictures']:,} pictures, "
              f"tasks {', '.join(result['tasks'])}); open it with --project {result['project']}")
    return result


def _cmd_train_project(args: argparse.Namespace) -> dict:
    project = get_preset(preset_ref(args))
    cfg = TrainConfig(epochs=args.epochs, seed=args.seed, device=args.device)
    data = DataConfig(n_train=args.n_train, seed=args.seed)
    if args.width is not None or args.small_input or args.out or args.install:
        raise ConfigError("--width, --small-input, --out and --install do not apply to --project: the "
                          "project file names each task's architecture and options, and networks go to "
                          "its nets/ folder")

    def start(models: dict) -> None:
        flops = estimates.net_flops(project, list(models.values()))
        sizes = estimates.split_sizes(project, data)
        secs = estimates.train_seconds(flops, cfg.epochs, sizes, torch_threads())
        _err(estimates.estimate_line(secs, flops, sizes, f"{cfg.epochs} epochs per network"))

    def progress(task: str, row: dict) -> None:
        _err(f"  [{task}] epoch {row['epoch']:>2}  loss {row['loss']:.4f}  "
             f"val acc {row['val_accuracy']:.2f}%")

    command = (f"python -m pam_explorer train --project {project.name} --epochs {args.epochs} "
               f"--seed {args.seed} --n-train {args.n_train}")
    summary = train_project(project, cfg, data, progress, {"command": command}, start)
    for task, row in summary["created"].items():
        print(f"task {task}: test binary accuracy {row['test_accuracy']:.2f}% "
              f"(val {row['val_accuracy']:.2f}%, {row['seconds']:.0f} s) -> {row['path']}")
    for task in summary["kept"]:
        print(f"task {task}: has its network already (kept as it is)")
    return summary


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def cmd_train(args: argparse.Namespace) -> dict:
    if getattr(args, "project", None) is not None:
        return _cmd_train_project(args)
    preset = get_preset(args.preset)
    out = Path(args.out) if args.out else None
    cfg = TrainConfig(epochs=args.epochs, seed=args.seed, device=args.device)
    data = DataConfig(n_train=args.n_train, seed=args.seed)
    command = (f"python -m pam_explorer train --preset {preset.name} --arch {args.arch} "
               f"--epochs {args.epochs} --seed {args.seed} --n-train {args.n_train}")
    hparams: dict = {}
    if args.width is not None:
        hparams["width"] = args.width
        command += f" --width {args.width:g}"
    if args.small_input:
        hparams["small_input"] = True
        command += " --small-input"

    def progress(task: str, row: dict) -> None:
        _err(f"  [{task}] epoch {row['epoch']:>2}  loss {row['loss']:.4f}  "
             f"val acc {row['val_accuracy']:.2f}%")

    summary = train_preset(preset, args.arch, cfg, data, out, progress, force=args.force,
                           install=args.install, extra_meta={"command": command}, hparams=hparams)
    for task, row in summary["tasks"].items():
        print(f"task {task}: test binary accuracy {row['test_accuracy']:.2f}% "
              f"(val {row['val_accuracy']:.2f}%, {row['seconds']:.0f} s) -> {row['path']}")
    if "installed" in summary:
        print(f"installed for the explorer: {summary['installed']}")
    return summary


def parse_overrides(items: list[str]) -> tuple[tuple[str, float], ...]:
    """["conv1=0.1", ...] (``--override LAYER=ALPHA``) -> (("conv1", 0.1), ...); ConfigError otherwise."""
    overrides = []
    for item in items:
        layer, sep, value = item.partition("=")
        if not sep or not layer:
            raise ConfigError(f"--override {item!r}: expected LAYER=ALPHA, e.g. conv1=0.1")
        try:
            alpha = float(value)
        except ValueError:
            raise ConfigError(f"--override {item!r}: ALPHA must be a number of bits, got {value!r}") from None
        overrides.append((layer, alpha))
    return tuple(overrides)


def regroup_config(args: argparse.Namespace, default_alpha: float) -> RegroupConfig:
    alpha = default_alpha if args.alpha is None else args.alpha
    return RegroupConfig(alpha=alpha, overrides=parse_overrides(args.override), algorithm=args.algorithm,
                         both_picked=args.both_picked)


def check_override_layers(cfg: RegroupConfig | ExperimentConfig, preset: Preset,
                          arch: str | None = None) -> None:
    """ConfigError for an --override of a layer the preset's ``arch`` networks (default: the
    experiment's ``arch``, else LeNet-5) do not have (it would be ignored), listing the known
    ones; checked on the committed networks before any MI work."""
    if not cfg.overrides:
        return
    arch = arch or getattr(cfg, "arch", None)
    known = [info.name for info in layer_map(load_pretrained(preset.name, preset.task_names, arch)[0])]
    for layer, alpha in cfg.overrides:
        if layer not in known:
            raise ConfigError(f"--override {layer}={alpha:g}: unknown layer {layer!r}; the layers of "
                              f"{preset.name}'s {arch or 'lenet5'} networks are {', '.join(known)}")


def mi_config(args: argparse.Namespace) -> MIConfig:
    return MIConfig(n_samples=args.samples, sigma2=args.sigma2, pooling=args.pooling,
                    label_mode=args.label_mode, bound=args.bound, kernel=args.kernel,
                    null_perms=args.null_perms, normalise=args.normalise)


def cmd_regroup(args: argparse.Namespace) -> dict:
    def progress(layer: str, step: int, total: int) -> None:
        # a line per 25 % keeps logs short when stderr is not a terminal
        if step == total or step % max(1, total // 4) == 0:
            _err(f"  trajectories {layer}: {step}/{total}")

    preset = get_preset(preset_ref(args))
    cfg = regroup_config(args, preset.default_alpha)
    _check_overrides(cfg, preset, args.arch)
    explorer = Explorer.open(preset, mi_config(args), nets=_nets(preset.name, args.arch),
                             use_cache=not args.no_cache, progress=progress)
    report = explorer.regroup_report(cfg)
    if not args.json:
        for row in report["layers"]:
            groups = ", ".join(f"{k}: {v}" for k, v in row["groups"].items())
            print(f"{row['name']:>8}  width {row['width']:>4}  shared {row['sharing_ratio']:.2%}  ({groups})")
    return report


def cmd_merge(args: argparse.Namespace) -> dict:
    preset = get_preset(preset_ref(args))
    cfg = regroup_config(args, preset.default_alpha)
    _check_overrides(cfg, preset, args.arch)
    estimate = _merge_estimate(preset, args)

    def progress(msg: str) -> None:
        estimate.say()
        _err(f"  {msg}")

    summary = merge_preset(preset.name, cfg, mi_config(args), args.finetune_epochs, args.device,
                           Path(args.out), progress, force=args.force, arch=args.arch)
    if not args.json:
        print(f"merged model -> {summary['model']}")
        for s, f in summary["flops"].items():
            print(f"  {s:>6}: {f:>12,} FLOPs  {summary['latency_ms'][s]:8.3f} ms (CPU, batch 1)")
        print(f"  accuracy (test, %): {summary['accuracy']}")
    return summary


def _merge_estimate(preset: Preset, args: argparse.Namespace) -> _Estimate:
    flops = estimates.net_flops(preset, _nets(preset.name, args.arch))
    sizes = estimates.split_sizes(preset, preset.data_config(DataConfig()))
    secs = estimates.train_seconds([sum(flops)], args.finetune_epochs, sizes, torch_threads())
    return _Estimate(estimates.estimate_line(secs, flops, sizes, f"{args.finetune_epochs} finetuning epochs "
                                             "of the merged network (MI trajectories not counted)"))


def _estimate_inputs(cfg: ExperimentConfig) -> tuple[list[int], dict[str, int]]:
    """The networks' FLOPs per picture and the split sizes an experiment's estimate rests on."""
    preset = get_preset(cfg.preset)
    return (estimates.net_flops(preset, task_networks(preset, cfg.arch)),
            estimates.split_sizes(preset, cfg.data()))


def _experiment_estimate(cfg: ExperimentConfig, points: int = 1, what: str = "") -> _Estimate:
    flops, sizes = _estimate_inputs(cfg)
    secs = estimates.experiment_seconds(cfg, flops, sizes, torch_threads(), pam_points=points)
    return _Estimate(estimates.estimate_line(
        secs, flops, sizes, f"schemes {'/'.join(cfg.schemes)} x {len(cfg.seeds)} seed(s){what}, "
        + estimates.budget_text(cfg)))


def _run_estimate(cfg: ExperimentConfig, out: Path, workers: int, threads: int | None) -> _Estimate:
    """An experiment's wall time: the stages not yet recorded in ``out``, over ``workers``."""
    flops, sizes = _estimate_inputs(cfg)
    done = [(s, seed) for s in cfg.schemes for seed in cfg.seeds
            if (out / "stages" / f"{s}_s{seed}.json").is_file()]
    per_thread = torch_threads() if workers == 1 else (threads or 1)
    stages = estimates.experiment_stage_seconds(cfg, flops, sizes, per_thread, skip=done)
    total = len(cfg.schemes) * len(cfg.seeds)
    what = (f"schemes {'/'.join(cfg.schemes)} x {len(cfg.seeds)} seed(s), "
            f"{len(stages)} of {total} stages to run"
            + (f" ({len(done)} already recorded in {out}/stages)" if done else "")
            + ", " + estimates.budget_text(cfg))
    how = f"{workers} workers of {per_thread} thread(s)" if workers > 1 else None
    secs = estimates.pool_seconds(stages, workers)
    return _Estimate(estimates.estimate_line(secs, flops, sizes, what, how))


def parse_ints(text: str, option: str) -> tuple[int, ...]:
    """"0,1,2" -> (0, 1, 2); ConfigError naming the option otherwise."""
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"{option} expects comma-separated integers such as 0,1,2, got {text!r}") from None
    if not values:
        raise ConfigError(f"{option} expects at least one integer, got {text!r}")
    return values


def cmd_experiment(args: argparse.Namespace) -> dict:
    seeds = (args.seed,) if args.seed is not None else parse_ints(args.seeds, "--seeds")
    cfg = ExperimentConfig(preset=preset_ref(args), prune=args.prune, alpha=args.alpha,
                           schemes=tuple(s.strip() for s in args.schemes.split(",") if s.strip()),
                           finetune_epochs=args.finetune_epochs, quick=args.quick, seeds=seeds,
                           device=args.device, target_sparsity=args.target_sparsity, floor=args.floor,
                           rank=args.rank, regroup=args.regroup, arch=args.arch,
                           overrides=parse_overrides(args.override), max_steps=args.max_steps,
                           prune_lr=args.prune_lr, schedule=args.schedule, delta=args.delta,
                           pace=args.pace, merged_budget=args.merged_budget,
                           grid_step=args.grid_step)
    _check_overrides(cfg, get_preset(cfg.preset))
    resolve_device(cfg.device)  # "cuda" without a GPU: the clear error now, not after the first stage
    if args.workers < 1 or (args.threads is not None and args.threads < 1):
        raise ConfigError(f"--workers and --threads must be >= 1, got {args.workers} and {args.threads}")
    estimate = _run_estimate(cfg, Path(args.out), args.workers, args.threads)

    def progress(row: dict) -> None:
        estimate.say()
        _err(f"  [{row['fraction']:.0%}] {row['message']}")

    report = run_experiment(cfg, Path(args.out), progress=progress, workers=args.workers,
                            threads=args.threads)
    if not args.json:
        print((Path(args.out) / "table.md").read_text())
    return report


def parse_alphas(text: str) -> str | tuple[float, ...]:
    """"auto" or "0,0.05,0.1" -> (0.0, 0.05, 0.1); ConfigError naming --alphas otherwise (the
    values themselves are checked by SweepConfig: negative and NaN are refused there)."""
    if text.strip() == "auto":
        return "auto"
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--alphas expects 'auto' or comma-separated numbers of bits such as 0,0.05,0.1, "
                          f"got {text!r}") from None
    if not values:
        raise ConfigError(f"--alphas expects 'auto' or at least one number, got {text!r}")
    return values


def parse_mix(text: str | None) -> tuple[tuple[str, float], ...]:
    """"A=0.5,B=0.3,A+B=0.2" -> (("A", 0.5), ...); () when not given (uniform)."""
    if not text:
        return ()
    out = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        key, sep, value = item.partition("=")
        try:
            out.append((key.strip(), float(value)))
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise ConfigError(f"--mix {item!r}: expected SUBSET=PROBABILITY, e.g. A+B=0.2")
    return tuple(out)


def cmd_sweep(args: argparse.Namespace) -> dict:
    cfg = SweepConfig(preset=preset_ref(args), prune=args.prune, alphas=parse_alphas(args.alphas),
                      seeds=parse_ints(args.seeds, "--seeds"), finetune_epochs=args.finetune_epochs,
                      quick=args.quick, device=args.device, target_sparsity=args.target_sparsity,
                      floor=args.floor, rank=args.rank, regroup=args.regroup, arch=args.arch,
                      max_steps=args.max_steps, prune_lr=args.prune_lr, schedule=args.schedule,
                      delta=args.delta, pace=args.pace, merged_budget=args.merged_budget,
                      grid_step=args.grid_step)
    if args.executor != "slurm" and not args.dry_run:  # on Slurm the jobs' nodes have the GPUs
        resolve_device(cfg.device)  # "cuda" without a GPU: the clear error now, not in every job
    resources = Resources(partition=args.slurm_partition, gpus_per_job=args.gpus_per_job,
                          cpus_per_job=args.cpus_per_job or args.threads, mem_gb=args.mem_gb,
                          time_min=args.time_min)
    opts = SweepOptions(executor=args.executor, workers=args.workers, threads=args.threads,
                        resources=resources, mix=parse_mix(args.mix))
    if args.dry_run:
        plan = dry_run(cfg, Path(args.out), opts)
        if not args.json:
            print(dry_run_text(plan))
        return plan
    points = 8 if cfg.alphas == "auto" else len(cfg.alphas)
    estimate = _experiment_estimate(cfg.experiment(), points, f", PAM at {'up to ' * (cfg.alphas == 'auto')}"
                                    f"{points} alphas (one job at a time; workers divide it)")

    def say(message: str) -> None:
        estimate.say()
        _err(message)

    sweep = run_sweep(cfg, Path(args.out), opts, say=say)
    if not args.json:
        print((Path(args.out) / "sweep.md").read_text())
    return sweep


def dry_run_text(plan: dict) -> str:
    """The dry run as lines: executor and resources, then one line per job."""
    res = ", ".join(f"{k} {v}" for k, v in plan["resources"].items() if v is not None)
    lines = [f"executor {plan['executor']}: {res}"]
    if plan["missing"]:
        lines.append(f"note: {plan['missing']}")
    jobs = sum(j["alpha"] != "auto" for j in plan["jobs"])  # not the placeholder row of auto points
    more = " (+ the PAM points, planned after the trajectories)" if jobs < len(plan["jobs"]) else ""
    attach = sum(str(j["state"]).startswith("re-attach") for j in plan["jobs"])  # a restarted driver's
    lines.append(f"alphas: {plan['alphas']}; {len(plan['done'])} stage(s) already done, "
                 f"{jobs - attach} job(s) would be submitted" + (f", {attach} re-attached" if attach else "")
                 + f"{more}:")
    for j in plan["jobs"]:
        alpha = "" if j["alpha"] is None else f" alpha {j['alpha']}"
        lines.append(f"  {j['job']:<24} {j['kind']:<12} seed {j['seed']}{alpha}  ({j['state']})")
    return "\n".join(lines)
