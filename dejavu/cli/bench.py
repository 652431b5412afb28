"""``dejavu bench <target>``: time a pipeline stage (targets: ``dejavu.bench.TARGETS``)."""

from __future__ import annotations

import argparse
import importlib


def register(subparsers: argparse._SubParsersAction) -> None:
    from dejavu.bench import TARGETS

    parser = subparsers.add_parser("bench", help="time a pipeline stage (render, ...)",
                                   description="Benchmarks; each target prints medians and can save JSON.")
    targets = parser.add_subparsers(dest="target", metavar="TARGET")
    for name, module in TARGETS.items():
        mod = importlib.import_module(module)
        # argparse %-formats help texts: a docstring's "10%" would break --help
        sub = targets.add_parser(name, help=(mod.__doc__ or "").strip().splitlines()[0].replace("%", "%%"))
        mod.add_arguments(sub)
        sub.add_argument("--json", metavar="FILE", help="also write the result as JSON to FILE")
        sub.set_defaults(func=_run, bench_module=module)
    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])


def _run(args: argparse.Namespace) -> int:
    from dejavu.bench import finish
    from dejavu.outputs import check_output_dir, check_output_file

    if args.json:
        check_output_file(args.json, what="--json", need_bytes=1 << 20)
    for flag in ("output", "out"):  # the targets' output folders (quality -o, reconstruct --out)
        if getattr(args, flag, None):
            check_output_dir(getattr(args, flag), what=f"--{flag}")
    result = importlib.import_module(args.bench_module).run(args)
    finish(result, args.json)
    return 0
