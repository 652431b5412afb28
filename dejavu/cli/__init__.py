"""The ``dejavu`` command: parses arguments and dispatches; no work is done here.

Each subcommand lives in its own module ``dejavu.cli.<name>`` exposing
``register(subparsers) -> None``, which adds a parser whose ``func(args) -> int`` runs the job.
Heavy imports happen inside ``func`` so ``dejavu --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import signal
import sys
import threading

from dejavu import __version__
from dejavu.errors import DejavuError

# Order = the pipeline's order, which is also the order --help lists them in.
COMMANDS = ("demo", "head", "track", "reconstruct", "personalize", "animate", "export", "web", "live", "evaluate",
            "prepare", "train", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dejavu",
        description="One photo or a short video -> a controllable 3D Gaussian head avatar.",
    )
    parser.add_argument("--version", action="version", version=f"dejavu {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module_name = f"dejavu.cli.{name}"
        if importlib.util.find_spec(module_name) is None:
            continue
        importlib.import_module(module_name).register(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that ``finally`` blocks remove temporary outputs as for Ctrl-C."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    previous = _install_sigterm()
    try:
        return int(args.func(args) or 0)
    except DejavuError as exc:
        print(f"dejavu {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a disk that filled up or went read-only during the run: the path and the reason
        from dejavu.outputs import os_error_line

        print(f"dejavu {args.command}: error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"dejavu {args.command}: error: out of memory; use smaller sizes (--resolution, --uv-size, "
              "--max-frames)", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        # on a line of its own: an interrupted run usually stops in the middle of a progress bar
        print(f"\ndejavu {args.command}: {what} (finished outputs and checkpoints are kept)", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _install_sigterm():
    """Route SIGTERM through :class:`Terminated` (main thread only; returns the handler to restore)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _on_sigterm)


def run() -> None:
    """Console entry point: :func:`main`, then leave without interpreter teardown.

    Tearing down torch, numba and friends takes ~0.6 s at exit on the 2-core CPU, a tenth of a
    `dejavu reconstruct`. Every output is complete by then (written atomically, writers and thread
    pools closed), so after flushing the streams and logging there is nothing left to clean up.
    """
    import os

    rc = main()
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(rc)


if __name__ == "__main__":
    run()
