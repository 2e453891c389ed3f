"""Implementations of the CLI sub-commands (argument parsing lives in :mod:`pam_explorer.cli.parser`)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pam_explorer import export
from pam_explorer.core.config import DataConfig, MIConfig, RegroupConfig, TrainConfig
from pam_explorer.core.device import resolve_device
from pam_explorer.core.errors import ConfigError, DataMissing
from pam_explorer.data import Preset, get_preset
from pam_explorer.graph.layer_map import layer_map
from pam_explorer.regroup.explorer import Explorer
from pam_explorer.runs.bench import bench_greedy
from pam_explorer.runs.bench_latency import bench_latency, latency_table
from pam_explorer.runs.experiment import ExperimentConfig, run_experiment
from pam_explorer.runs.merge_run import merge_preset
from pam_explorer.runs.slurm import Resources
from pam_explorer.runs.sweep import SweepConfig, SweepOptions, dry_run, run_sweep
from pam_explorer.runs.training_run import train_preset
from pam_explorer.zoo.pretrained import load_pretrained


def _err(msg: str, end: str = "\n") -> None:
    print(msg, file=sys.stderr, end=end, flush=True)


def _nets(preset: str, arch: str | None) -> list:
    """The committed ``arch`` networks of ``preset`` (DataMissing says how to train them)."""
    p = get_preset(preset)
    return load_pretrained(p.name, p.task_names, arch)


def cmd_train(args: argparse.Namespace) -> dict:
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


def check_override_layers(cfg: RegroupConfig | ExperimentConfig, preset: Preset) -> None:
    """ConfigError for an --override of a layer the preset's networks do not have (it would be
    ignored), listing the known ones; checked on the committed networks before any MI work."""
    if not cfg.overrides:
        return
    known = [info.name for info in layer_map(load_pretrained(preset.name, preset.task_names)[0])]
    for layer, alpha in cfg.overrides:
        if layer not in known:
            raise ConfigError(f"--override {layer}={alpha:g}: unknown layer {layer!r}; the layers of "
                              f"{preset.name} are {', '.join(known)}")


def mi_config(args: argparse.Namespace) -> MIConfig:
    return MIConfig(n_samples=args.samples, sigma2=args.sigma2, pooling=args.pooling,
                    label_mode=args.label_mode, bound=args.bound, kernel=args.kernel,
                    null_perms=args.null_perms, normalise=args.normalise)


def cmd_regroup(args: argparse.Namespace) -> dict:
    def progress(layer: str, step: int, total: int) -> None:
        # a line per 25 % keeps logs short when stderr is not a terminal
        if step == total or step % max(1, total // 4) == 0:
            _err(f"  trajectories {layer}: {step}/{total}")

    preset = get_preset(args.preset)
    cfg = regroup_config(args, preset.default_alpha)
    check_override_layers(cfg, preset)
    explorer = Explorer.open(preset, mi_config(args), nets=_nets(args.preset, args.arch),
                             use_cache=not args.no_cache, progress=progress)
    report = explorer.regroup_report(cfg)
    if not args.json:
        for row in report["layers"]:
            groups = ", ".join(f"{k}: {v}" for k, v in row["groups"].items())
            print(f"{row['name']:>8}  width {row['width']:>4}  shared {row['sharing_ratio']:.2%}  ({groups})")
    return report


def cmd_merge(args: argparse.Namespace) -> dict:
    def progress(msg: str) -> None:
        _err(f"  {msg}")

    preset = get_preset(args.preset)
    cfg = regroup_config(args, preset.default_alpha)
    check_override_layers(cfg, preset)
    summary = merge_preset(args.preset, cfg, mi_config(args), args.finetune_epochs, args.device,
                           Path(args.out), progress, force=args.force, arch=args.arch)
    if not args.json:
        print(f"merged model -> {summary['model']}")
        for s, f in summary["flops"].items():
            print(f"  {s:>6}: {f:>12,} FLOPs  {summary['latency_ms'][s]:8.3f} ms (CPU, batch 1)")
        print(f"  accuracy (test, %): {summary['accuracy']}")
    return summary


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
    cfg = ExperimentConfig(preset=args.preset, prune=args.prune, alpha=args.alpha,
                           schemes=tuple(s.strip() for s in args.schemes.split(",") if s.strip()),
                           finetune_epochs=args.finetune_epochs, quick=args.quick, seeds=seeds,
                           device=args.device, target_sparsity=args.target_sparsity, floor=args.floor,
                           rank=args.rank, regroup=args.regroup, arch=args.arch,
                           overrides=parse_overrides(args.override), max_steps=args.max_steps,
                           prune_lr=args.prune_lr)
    check_override_layers(cfg, get_preset(cfg.preset))
    resolve_device(cfg.device)  # "cuda" without a GPU: the clear error now, not after the first stage
    report = run_experiment(cfg, Path(args.out),
                            progress=lambda row: _err(f"  [{row['fraction']:.0%}] {row['message']}"))
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
    cfg = SweepConfig(preset=args.preset, prune=args.prune, alphas=parse_alphas(args.alphas),
                      seeds=parse_ints(args.seeds, "--seeds"), finetune_epochs=args.finetune_epochs,
                      quick=args.quick, device=args.device, target_sparsity=args.target_sparsity,
                      floor=args.floor, rank=args.rank, regroup=args.regroup, arch=args.arch,
                      max_steps=args.max_steps, prune_lr=args.prune_lr)
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
    sweep = run_sweep(cfg, Path(args.out), opts, say=_err)
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


def cmd_export(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    if args.subset is None and (args.format is not None or args.layout != "dense"):
        raise ConfigError("--format and --layout need --subset; without it, export writes the merged "
                          "model zip")
    fmt = args.format or "onnx"
    for path in (out,) if args.subset is None else (out, export.sidecar(out)):
        export.check_output(path, args.force)  # before any work
    if args.subset is not None:
        export.check_format(fmt)
    src = Path(args.run) / "model.zip"
    if not src.is_file():
        raise DataMissing(f"{src} not found: --run must be a finished experiment or merge directory")
    net = export.load(src)  # validates the file and rebuilds the model before writing anything
    manifest = export.read_manifest(src)
    extra = {k: v for k, v in manifest.items() if k not in export.manifest_of(net)}
    if args.subset is None:
        path = export.save(net, out, extra, force=args.force)
        result = {"out": str(path), "bytes": path.stat().st_size}
    else:
        path, meta = export.save_subset(net, args.subset, fmt, out, extra, args.force, args.layout)
        info = json.loads(meta.read_text())
        result = {"out": str(path), "manifest": str(meta), "subset": info["subset"], "format": fmt,
                  "bytes": info["bytes"], "sha256": info["sha256"], "flops": info["flops"],
                  "grouped_flops": info["grouped_flops"]}
    if not args.json:
        what = "merged model" if args.subset is None else f"subset {args.subset} ({fmt})"
        print(f"exported {what} of {src} -> {path} ({result['bytes']:,} bytes)"
              + (f", manifest {result['manifest']}" if "manifest" in result else ""))
    return result


def cmd_bench(args: argparse.Namespace) -> dict:
    if args.bench == "latency":
        return _bench_latency(args)
    result = bench_greedy(neurons=args.neurons, samples=args.samples, labels=args.labels,
                          device=args.device, naive_neurons=args.naive_neurons, threads=args.threads)
    if not args.json:
        for k, v in result.items():
            print(f"{k}: {v}")
    return result


def _int_list(text: str, flag: str, allow_all: bool = False) -> list[int | None]:
    out: list[int | None] = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        if allow_all and item == "all":
            out.append(None)
        elif item.isdigit() and int(item) > 0:
            out.append(int(item))
        else:
            raise ConfigError(f"{flag}: expected comma-separated positive integers"
                              + (" or 'all'" if allow_all else "") + f", got {item!r}")
    if not out:
        raise ConfigError(f"{flag}: give at least one value")
    return out


def _bench_latency(args: argparse.Namespace) -> dict:
    if args.repeats < 1 or not args.min_run_time > 0:
        raise ConfigError("--repeats must be >= 1 and --min-run-time > 0")
    devices = [str(resolve_device(d)) for d in args.device] if args.device else None
    result = bench_latency(args.run, _int_list(args.batches, "--batches"),
                           list(dict.fromkeys(_int_list(args.threads, "--threads", allow_all=True))),
                           devices, args.layout, args.min_run_time, args.repeats)
    if not args.json:
        print(latency_table(result))
    return result
