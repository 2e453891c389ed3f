"""Stage 9, the command line: ``python -m pam_explorer ...`` (parser in :mod:`.parser`, the
sub-commands in :mod:`.commands`). A :class:`~pam_explorer.core.errors.PamError` is printed as
``error: <message>`` with exit status 2; any other exception is a bug and keeps its traceback.

``--json`` prints strict JSON (RFC 8259: no ``Infinity``/``NaN`` tokens, which JSON parsers
reject): a non-finite number is written as the string ``"inf"``, ``"-inf"`` or ``"nan"`` (e.g.
``regroup --alpha inf --json`` gives ``"alpha": "inf"``); Python's ``float()`` reads them back.
The keys of the contract are unchanged. Every file the project writes follows the same rule
(:func:`pam_explorer.core.io.strict_json`, re-exported here).

Parsing imports no torch (the parser reads the preset and method names from torch-free
modules), so ``--help`` and argument errors answer at once; the sub-commands and everything
they need are imported only once the arguments are valid."""
from __future__ import annotations

import sys

from pam_explorer.cli.parser import build_parser
from pam_explorer.core.errors import PamError
from pam_explorer.core.io import dumps_strict, strict_json


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pam_explorer.cli import commands, deploy  # torch and the stages: only once there is work to do
    from pam_explorer.core.device import quiet_cuda_probe

    quiet_cuda_probe()  # logs hold what the user needs (not torch's CUDA_HOME probe)
    handler = {"train": commands.cmd_train, "regroup": commands.cmd_regroup,
               "merge": commands.cmd_merge, "experiment": commands.cmd_experiment,
               "sweep": commands.cmd_sweep, "export": deploy.cmd_export,
               "bench": deploy.cmd_bench, "project": commands.cmd_project}[args.command]
    try:
        result = handler(args)
    except PamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(dumps_strict(result))
    return 0


__all__ = ["main", "strict_json"]
