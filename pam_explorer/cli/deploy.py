"""The deploy commands: ``export`` (a run's merged or per-subset model, at a tolerance) and
``bench`` (the greedy MI search's speed, the latency of fused subset models)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pam_explorer import export
from pam_explorer.core.device import resolve_device
from pam_explorer.core.errors import ConfigError, DataMissing
from pam_explorer.data import get_preset
from pam_explorer.runs.bench import bench_greedy
from pam_explorer.runs.bench_latency import bench_latency, latency_table


def _err(msg: str, end: str = "\n") -> None:
    print(msg, file=sys.stderr, end=end, flush=True)


def export_source(run: Path, tolerance: float | None) -> Path:
    """The zip ``export --run`` serves: model.zip, or with ``tolerance`` PAM's checkpoint read
    off at it (first seed: ``stages/PAM_d<tolerance>_s<seed>.zip``). One-line errors that say
    which tolerances the run has."""
    src = run / "model.zip"
    if not src.is_file():
        raise DataMissing(f"{src} not found: --run must be a finished experiment or merge directory")
    if tolerance is None:
        return src
    report = read_report(run)
    if report.get("schedule") != "published" or "PAM" not in report.get("schemes", {}):
        raise ConfigError(f"--tolerance needs an experiment of the published schedule with PAM; {run} is "
                          f"{report.get('schedule', 'floor-greedy')!r}: export without --tolerance")
    seed = report["seeds"][0]
    path = run / "stages" / f"PAM_d{float(tolerance):g}_s{seed}.zip"
    if not path.is_file():
        have = sorted(p.name.split("_d")[1].rsplit("_s", 1)[0]
                      for p in (run / "stages").glob(f"PAM_d*_s{seed}.zip"))
        raise ConfigError(f"--tolerance {tolerance:g}: no PAM checkpoint of seed {seed} above that floor in "
                          f"{run} (kept: {', '.join(have) or 'none'}; the run keeps 0.25, 0.5, 1 and 2 "
                          "where a checkpoint passes)")
    return path


def read_report(run: Path) -> dict:
    try:
        report = json.loads((run / "report.json").read_text())
    except (OSError, ValueError) as exc:
        raise DataMissing(f"{run / 'report.json'} cannot be read ({exc}): --run must be a finished "
                          "experiment") from None
    if not isinstance(report, dict):
        raise DataMissing(f"{run / 'report.json'} is not an experiment report")
    return report


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
    src = export_source(Path(args.run), args.tolerance)
    net = export.load(src)  # validates the file and rebuilds the model before writing anything
    manifest = export.read_manifest(src)
    extra = {k: v for k, v in manifest.items() if k not in export.manifest_of(net)}
    extra.update(_project_labels(args, Path(args.run)))
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


def _project_labels(args: argparse.Namespace, run: Path) -> dict:
    """{"label_names": {task: names}} of the run's project (``--project``, else the project file
    the run's config.json or merge.json names), for the subset manifest; {} for a preset's run."""
    ref = getattr(args, "project", None)
    for name in ("config.json", "merge.json"):
        if ref is not None:
            break
        try:
            ref = json.loads((run / name).read_text()).get("preset")
        except (OSError, ValueError, AttributeError):
            continue
    if not isinstance(ref, str) or not ref.endswith(".toml"):
        return {}
    project = get_preset(str(Path(ref).expanduser().absolute()))
    return {"label_names": project.task_label_names(), "project": project.title}


def cmd_bench(args: argparse.Namespace) -> dict:
    if args.bench == "latency":
        return _bench_latency(args)
    resolve_device(args.device)  # a bad --device is the only line printed
    _err("bench greedy: this takes a while (a few minutes on 2 CPU cores): it times the fast greedy code, "
         "then the from-scratch baseline at a size sized to about a minute, which runs longer on a busy "
         "machine; progress below")
    result = bench_greedy(neurons=args.neurons, samples=args.samples, labels=args.labels,
                          device=args.device, naive_neurons=args.naive_neurons, threads=args.threads,
                          progress=lambda message: _err(f"  {message}"))
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
