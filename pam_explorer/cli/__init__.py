"""Stage 9, the command line: ``python -m pam_explorer ...`` (parser in :mod:`.parser`, the
sub-commands in :mod:`.commands`). A :class:`~pam_explorer.core.errors.PamError` is printed as
``error: <message>`` with exit status 2; any other exception is a bug and keeps its traceback.

``--json`` prints strict JSON (RFC 8259: no ``Infinity``/``NaN`` tokens, which JSON parsers
reject): a non-finite number is written as the string ``"inf"``, ``"-inf"`` or ``"nan"`` (e.g.
``regroup --alpha inf --json`` gives ``"alpha": "inf"``); Python's ``float()`` reads them back.
The keys of the contract are unchanged.

Parsing imports no torch (the parser reads the preset and method names from torch-free
modules), so ``--help`` and argument errors answer at once; the sub-commands and everything
they need are imported only once the arguments are valid."""
from __future__ import annotations

import json
import math
import sys
from typing import Any

from pam_explorer.cli.parser import build_parser
from pam_explorer.core.errors import PamError


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pam_explorer.cli import commands  # torch and the stages: only once there is work to do
    from pam_explorer.core.device import quiet_cuda_probe

    quiet_cuda_probe()  # logs hold what the user needs (not torch's CUDA_HOME probe)
    handler = {"train": commands.cmd_train, "regroup": commands.cmd_regroup,
               "merge": commands.cmd_merge, "experiment": commands.cmd_experiment,
               "sweep": commands.cmd_sweep, "export": commands.cmd_export,
               "bench": commands.cmd_bench, "project": commands.cmd_project}[args.command]
    try:
        result = handler(args)
    except PamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json.dumps(strict_json(result), indent=2, allow_nan=False))
    return 0


def strict_json(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by "inf", "-inf" or "nan" (see above)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


__all__ = ["main", "strict_json"]
