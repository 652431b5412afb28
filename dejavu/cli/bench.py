"""``dejavu bench <target>``: time a pipeline stage (targets: ``dejavu.bench.TARGETS``)."""

from __future__ import annotations

import argparse
from types import ModuleType

from dejavu.bench import TARGETS
from dejavu.bench.common import finish
from dejavu.cli.subcommands import add_subcommands
from dejavu.outputs import check_output_dir, check_output_file


def register(parser: argparse.ArgumentParser) -> None:
    """Describe the command on ``parser`` (its summary: ``dejavu.cli.COMMANDS``); a target's module is
    imported only when that target is chosen."""
    parser.description = "Benchmarks; each target prints medians and can save JSON."
    add_subcommands(parser, "target", "TARGET", "dejavu.bench", TARGETS, _add_target)
    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])


def _add_target(module: ModuleType, parser: argparse.ArgumentParser) -> None:
    """The chosen target's arguments, ``--json`` and its ``run``."""
    module.add_arguments(parser)
    parser.add_argument("--json", metavar="FILE", help="also write the result as JSON to FILE")
    parser.set_defaults(func=_run, bench_run=module.run)


def _run(args: argparse.Namespace) -> int:
    if args.json:
        check_output_file(args.json, what="--json", need_bytes=1 << 20)
    for flag in ("output", "out"):  # the targets' output folders (quality -o, reconstruct --out)
        if getattr(args, flag, None):
            check_output_dir(getattr(args, flag), what=f"--{flag}")
    finish(args.bench_run(args), args.json)
    return 0
