"""The argument parser of ``python -m pam_explorer {train,regroup,merge,experiment,sweep,export,bench}``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pam_explorer.core import config as C
from pam_explorer.data.catalogue import builtin_preset_names

DEFAULT_PRESET = "digits-2task"

DESCRIPTION = """PAM Explorer's command line. Every command that takes --preset also takes
--project FILE, a project file of your own networks and data (README, "Your own networks and
data"). Machine-readable outputs (--json) follow the contract in docs/architecture.md; progress
goes to stderr so stdout stays parseable."""


def program_name(argv0: str | None = None) -> str:
    """How the user called the CLI, for its usage lines: ``pam-explorer`` (the console script,
    ``pam-explorer.exe`` on Windows) or ``python -m pam_explorer`` (``argv0`` is then the path of
    ``__main__.py``). Default: ``sys.argv[0]``."""
    name = Path(sys.argv[0] if argv0 is None else argv0).name
    return "pam-explorer" if name.startswith("pam-explorer") else "python -m pam_explorer"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog or program_name(), description=DESCRIPTION)
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_train, _regroup, _merge, _experiment, _sweep, _export, _bench, _project):
        add(sub)
    return p


def _train(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train one single-task network per task of a preset")
    _preset_args(t)
    t.add_argument("--arch", default="lenet5", help="a registered architecture (default lenet5)")
    t.add_argument("--epochs", type=int, default=15)
    t.add_argument("--seed", type=int, default=0, help="training and data seed")
    t.add_argument("--n-train", type=int, default=8000)
    t.add_argument("--width", type=float, default=None,
                   help="width multiplier of the architecture (default: its own, 1.0)")
    t.add_argument("--small-input", action="store_true",
                   help="ResNets: 3x3/1 stem without max-pool, for 28-64 px pictures")
    t.add_argument("--out", default=None, help="directory for the checkpoints (default: assets/<preset> "
                   "for lenet5, assets/<preset>/<arch> otherwise: where the other commands look)")
    _device_arg(t, "auto")
    t.add_argument("--force", action="store_true",
                   help="replace checkpoints of another (or an unknown) training configuration in --out")
    t.add_argument("--install", action="store_true",
                   help="with --out: also copy the networks to assets/<preset> when that preset has none "
                        "there (never replaces networks; the dashboard's 'Train networks' job)")


def _regroup(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("regroup", help="regroup neurons at alpha (trajectories cached)")
    _preset_args(r)
    r.add_argument("--alpha", type=float, default=None, help="bits; default: the preset's")
    r.add_argument("--override", action="append", default=[], metavar="LAYER=ALPHA")
    r.add_argument("--algorithm", choices=["simplified", "full"], default="simplified")
    _arch_arg(r)
    _mi_args(r)
    r.add_argument("--json", action="store_true")


def _merge(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("merge", help="merge the preset's networks at alpha (+ finetune) -> DIR")
    _preset_args(m)
    m.add_argument("--alpha", type=float, default=None)
    m.add_argument("--override", action="append", default=[], metavar="LAYER=ALPHA")
    m.add_argument("--algorithm", choices=["simplified", "full"], default="simplified")
    m.add_argument("--finetune-epochs", type=int, default=0)
    _device_arg(m, "auto")
    _arch_arg(m)
    m.add_argument("--out", required=True)
    m.add_argument("--force", action="store_true", help="replace a merge of another configuration in --out")
    _mi_args(m)
    m.add_argument("--json", action="store_true")


def _experiment(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("experiment", help="B1 vs B2 vs PAM under one pruning method -> DIR/report.json")
    _preset_args(e)
    _prune_arg(e)
    e.add_argument("--alpha", type=float, default=None,
                   help="PAM's alpha in bits (default: the regroup profile's for the preset)")
    e.add_argument("--override", action="append", default=[], metavar="LAYER=ALPHA",
                   help="per-layer alpha of PAM's regrouping, repeatable (as in regroup and merge)")
    e.add_argument("--schemes", default="B1,B2,PAM", help="comma-separated subset of B1,B2,PAM")
    e.add_argument("--finetune-epochs", type=int, default=10,
                   help="joint finetuning epochs of the merged schemes (B2 after zipping, PAM after "
                        "merging) before pruning (default 10)")
    _device_arg(e, "auto")
    e.add_argument("--arch", default="lenet5",
                   help="architecture of the committed networks to merge (default lenet5)")
    e.add_argument("--seeds", default="0", metavar="S1,S2,...",
                   help="every scheme runs under every seed; mean and 95%% CI over them (default 0)")
    e.add_argument("--seed", type=int, default=None, help="one seed (same as --seeds S)")
    e.add_argument("--target-sparsity", type=float, default=0.9,
                   help="AdapMTL: overall fraction of zero weights (default 0.9)")
    e.add_argument("--floor", choices=["original", "own"], default="original",
                   help="accuracy floor: the original networks' validation accuracy minus delta "
                        "(default), or each scheme's own unpruned accuracy")
    e.add_argument("--rank", choices=["published", "flops-aware"], default="flops-aware",
                   help="neuron ranking of every scheme: score / FLOPs saved (default; measured better "
                        "under the published schedule, docs/pruning.md), or the method's published score")
    e.add_argument("--regroup", choices=["default", "paper", "legacy"], default="default",
                   help="PAM's regrouping: this project's estimator (default), the paper's literal "
                        "one, or the estimator of the first versions")
    e.add_argument("--max-steps", type=int, default=None,
                   help="at most this many pruning turns per scheme (default 200; a compute budget: "
                        "reports say when a scheme stopped at it)")
    e.add_argument("--prune-lr", type=float, default=None,
                   help="Adam learning rate of every scheme's finetuning during and after pruning "
                        "(default 1e-3; docs/residual.md measures 1e-4 on the ResNet-18s)")
    _schedule_arg(e)
    e.add_argument("--workers", type=int, default=1,
                   help="stages (scheme x seed) run in parallel in this many worker processes "
                        "(default 1: in this process, one after the other)")
    e.add_argument("--threads", type=int, default=None,
                   help="torch threads per worker with --workers > 1 (default 1)")
    e.add_argument("--quick", action="store_true", help="tiny data and few steps (smoke test)")
    e.add_argument("--out", required=True)
    e.add_argument("--json", action="store_true")


def _schedule_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--schedule", choices=["published", "floor-greedy"], default="published",
                   help="pruning schedule: prune while training and read the cost off each scheme's "
                        "accuracy-FLOPs curve (published, default), or the accept/reject loop (floor-greedy)")
    p.add_argument("--pace", choices=["geometric", "flops", "neurons"], default="geometric",
                   help="published schedule: the same FLOPs factor every event, 60 events to 3 %% of the "
                        "largest network, a checkpoint every 15 %% lower (geometric, default); FLOPs "
                        "linear over 40 events to a tenth, a checkpoint every 5 %% (flops, the first "
                        "version); or neurons linear (docs/pruning.md section 6)")
    p.add_argument("--merged-budget", choices=["per-network", "total"], default="per-network",
                   help="published schedule: train a merged net (B2, PAM) as long as one network of B1 "
                        "(per-network, default) or as B1's networks together (total: warm-up and the "
                        "minibatches between events times the number of tasks)")
    p.add_argument("--grid-step", type=float, default=None,
                   help="published schedule: a checkpoint every this fraction lower in FLOPs (default: "
                        "the pace's, 0.15 geometric, 0.05 linear); a read-off sits on this grid, so "
                        "0.075 halves the step between seeds at twice the checkpoint finetunes")
    p.add_argument("--delta", type=float, default=0.5,
                   help="the accuracy floor's tolerance in points below the original networks' validation "
                        "accuracy (default 0.5); reports also read the curves off at 0.25, 0.5, 1 and 2")


def _sweep(sub: argparse._SubParsersAction) -> None:
    w = sub.add_parser("sweep", help="PAM finetuned and pruned at every alpha under every seed, B1/B2 "
                                     "once per seed -> DIR/sweep.json (frontier, recommended alpha)")
    _preset_args(w)
    _prune_arg(w)
    w.add_argument("--alphas", default="auto", metavar="auto|A1,A2,...",
                   help="bits; auto: where the grouping changes, at most 8 log-spaced values (default)")
    w.add_argument("--seeds", default="0,1,2", metavar="S1,S2,...")
    w.add_argument("--out", required=True, help="the sweep folder (on Slurm: one every node can read)")
    w.add_argument("--executor", choices=["local", "submitit-local", "slurm"], default="local")
    w.add_argument("--workers", type=int, default=None,
                   help="jobs at once (default: cores // --threads; slurm: no cap)")
    w.add_argument("--threads", type=int, default=1, help="torch threads per job (default 1)")
    w.add_argument("--mix", default=None, metavar="A=0.5,B=0.3,A+B=0.2",
                   help="task-usage probabilities for the recommended alpha (default: uniform)")
    w.add_argument("--dry-run", action="store_true", help="print the jobs and resources; submit nothing")
    w.add_argument("--finetune-epochs", type=int, default=10,
                   help="joint finetuning epochs of B2 and of PAM at every alpha before pruning (default 10)")
    w.add_argument("--max-steps", type=int, default=None,
                   help="at most this many pruning turns per scheme (default 200), as in experiment")
    w.add_argument("--prune-lr", type=float, default=None,
                   help="finetuning learning rate during and after pruning (default 1e-3), as in experiment")
    _device_arg(w, "auto")
    w.add_argument("--arch", default="lenet5",
                   help="architecture of the committed networks to merge (default lenet5)")
    w.add_argument("--target-sparsity", type=float, default=0.9)
    w.add_argument("--floor", choices=["original", "own"], default="original")
    w.add_argument("--rank", choices=["published", "flops-aware"], default="flops-aware",
                   help="as in experiment (default flops-aware)")
    _schedule_arg(w)
    w.add_argument("--regroup", choices=["default", "paper", "legacy"], default="default")
    w.add_argument("--quick", action="store_true", help="tiny data and few steps (smoke test)")
    w.add_argument("--slurm-partition", default=None)
    w.add_argument("--gpus-per-job", type=int, default=0)
    w.add_argument("--cpus-per-job", type=int, default=None, help="default: --threads")
    w.add_argument("--mem-gb", type=float, default=8.0)
    w.add_argument("--time-min", type=int, default=120, help="wall-clock limit per job, minutes")
    w.add_argument("--json", action="store_true")


def _export(sub: argparse._SubParsersAction) -> None:
    x = sub.add_parser("export", help="export a run's merged model (.zip), or with --subset the fused "
                                      "model of one task subset (+ FILE.json manifest)")
    x.add_argument("--run", required=True, help="a run directory (experiment or merge --out)")
    x.add_argument("--out", required=True, help="the file to write (refused if it exists, unless --force)")
    x.add_argument("--subset", default=None, help='a task subset such as "A+B" (tasks in task order)')
    x.add_argument("--tolerance", type=float, default=None,
                   help="an experiment of the published schedule: PAM's checkpoint read off at this "
                        "tolerance (points; the run keeps 0.25, 0.5, 1 and 2; default: the run's delta)")
    x.add_argument("--format", default=None, choices=["onnx", "torch-export", "safetensors"],
                   help="with --subset (default onnx)")
    x.add_argument("--layout", default="dense", choices=["dense", "exact"],
                   help="with --subset: one dense layer per layer (dense) or one op per group (exact)")
    x.add_argument("--force", action="store_true", help="replace existing output files")
    x.add_argument("--project", default=None, metavar="FILE",
                   help="the project file of the run (its label names go into the manifest; default: "
                        "the project the run's config.json names, if any)")
    x.add_argument("--json", action="store_true")


def _bench(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench", required=True)
    g = bsub.add_parser("greedy", help="time one greedy MI trajectory vs the from-scratch approach")
    g.add_argument("--neurons", type=int, default=1024)
    g.add_argument("--samples", type=int, default=128)
    g.add_argument("--labels", type=int, default=5)
    g.add_argument("--naive-neurons", type=int, default=None)
    _device_arg(g, "cpu")
    g.add_argument("--threads", type=int, default=None, help="torch threads for the run (default: torch's)")
    g.add_argument("--json", action="store_true")
    lat = bsub.add_parser("latency",
                          help="grouped vs fused latency of every subset and scheme of an experiment")
    lat.add_argument("--run", required=True,
                     help="an experiment directory (model.zip, stages/B1_*.zip, B2.zip)")
    lat.add_argument("--batches", default="1,64", help="comma-separated batch sizes")
    lat.add_argument("--threads", default="1,all", help="comma-separated CPU thread counts; 'all': torch's")
    lat.add_argument("--device", action="append", default=None,
                     help="cpu / cuda, repeatable (default: cpu, and cuda if present)")
    lat.add_argument("--layout", choices=["dense", "exact"], default="dense")
    lat.add_argument("--min-run-time", type=float, default=0.2, help="seconds per measurement")
    lat.add_argument("--repeats", type=int, default=3, help="measure the grid this many times (median)")
    lat.add_argument("--json", action="store_true")


def _project(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("project", help="write a preset as a project file (pam.toml + data.npz + nets/): "
                                       "a working example to edit")
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=builtin_preset_names(), metavar="NAME",
                   help=f"the preset to write: {', '.join(builtin_preset_names())} "
                        f"(default {DEFAULT_PRESET})")
    p.add_argument("--arch", default=None,
                   help="which committed networks go into nets/ (default: those in assets/<preset>/, lenet5)")
    p.add_argument("--out", required=True, help="a new or empty folder for the project")
    p.add_argument("--json", action="store_true")


def _preset_args(p: argparse.ArgumentParser) -> None:
    """--preset NAME or --project FILE (not both)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--preset", default=DEFAULT_PRESET, choices=builtin_preset_names(), metavar="NAME",
                   help=f"a built-in preset: {', '.join(builtin_preset_names())} (default {DEFAULT_PRESET})")
    g.add_argument("--project", default=None, metavar="FILE",
                   help="a project file (pam.toml) of your own networks and data, in place of --preset")


def _prune_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prune", default="taylor", choices=C.PRUNE_METHODS,
                   help=f"pruning method: {', '.join(C.PRUNE_METHODS)} (default taylor)")


def _device_arg(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--device", default=default,
                   help=f"auto (the GPU if present), cpu, cuda or cuda:i (default {default})")


def _arch_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", default=None, help="architecture of the committed networks "
                   "(assets/<preset>/<arch>/); default: those in assets/<preset>/ (lenet5)")


def _mi_args(p: argparse.ArgumentParser) -> None:
    """The MI estimator's settings (defaults: ``MIConfig()``, what the dashboard opens) and the
    rule for neurons picked twice (default: ``RegroupConfig()``'s)."""
    mi = C.MIConfig()
    p.add_argument("--samples", type=int, default=mi.n_samples, help="N pictures for the MI estimate")
    p.add_argument("--sigma2", type=float, default=mi.sigma2)
    p.add_argument("--pooling", choices=C.POOLINGS, default=mi.pooling)
    p.add_argument("--label-mode", choices=C.LABEL_MODES, default=mi.label_mode)
    p.add_argument("--bound", choices=C.BOUNDS, default=mi.bound)
    p.add_argument("--kernel", choices=C.KERNELS, default=mi.kernel,
                   help="fixed: sigma2 per neuron (the paper) | scaled: relative to the set's variance")
    p.add_argument("--null-perms", type=int, default=mi.null_perms,
                   help="label permutations of the chance level (0: none, the paper)")
    p.add_argument("--normalise", choices=C.NORMALISATIONS, default=mi.normalise,
                   help="rms: each layer divided by its RMS | none: raw activations (the authors)")
    p.add_argument("--both-picked", choices=C.BOTH_PICKED, default=C.RegroupConfig().both_picked,
                   help="a neuron picked by several exclusive sets: share it or drop it")
    p.add_argument("--no-cache", action="store_true")


__all__ = ["build_parser", "program_name"]
