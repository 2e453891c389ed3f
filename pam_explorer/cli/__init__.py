"""Stage 9, the command line: ``python -m pam_explorer ...`` (parser in :mod:`.parser`, the
sub-commands in :mod:`.commands`). A :class:`~pam_explorer.core.errors.PamError` is printed as
``error: <message>`` with exit status 2; any other exception is a bug and keeps its traceback."""
from __future__ import annotations

import json
import sys

from pam_explorer.cli import commands
from pam_explorer.cli.parser import build_parser
from pam_explorer.core.errors import PamError


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"train": commands.cmd_train, "regroup": commands.cmd_regroup,
               "merge": commands.cmd_merge, "experiment": commands.cmd_experiment,
               "export": commands.cmd_export, "bench": commands.cmd_bench}[args.command]
    try:
        result = handler(args)
    except PamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2))
    return 0


__all__ = ["main"]
