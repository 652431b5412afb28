"""The ``dejavu`` command: parses arguments and dispatches; no work is done here.

Each subcommand lives in its own module ``dejavu.cli.<name>``, listed in :data:`COMMANDS`, exposing
``register(parser) -> None``, which describes the command on its parser and sets ``func(args) -> int`` to
run the job. A command's module (and the stage it imports at its top) loads only when that command is
chosen (:mod:`dejavu.cli.subcommands`), so ``dejavu --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from types import ModuleType

from dejavu import __version__
from dejavu.cli.subcommands import add_subcommands
from dejavu.errors import DejavuError
from dejavu.outputs import os_error_line

#: Command name (module ``dejavu.cli.<name>``) -> its line in ``dejavu --help``, in the pipeline's order.
COMMANDS: dict[str, str] = {
    "demo": "run the pipeline end to end on a sample photo (or --video)",
    "head": "inspect head models (built-in, FLAME, procedural)",
    "track": "fit the head model to a photo, a folder of photos or a video",
    "reconstruct": "make an avatar from a single photo",
    "personalize": "personalize an avatar to a short video of one person",
    "animate": "animate an avatar from a video, tracking or parameter file, or an expression sweep",
    "export": "export an avatar (neutral, one frame, or a driven sequence) as splat files",
    "web": "build a static web site that plays the avatar in a browser (sliders, sequences, live)",
    "live": "track a webcam or video live and drive the avatar in the browser over a WebSocket",
    "evaluate": "score an avatar: video self-reenactment (held-out frames), a single image, or novel views",
    "prepare": "prepare training data (synthetic renders, tracked photos) with several processes",
    "train": "train the generalized reconstruction network",
    "bench": "time a pipeline stage (render, ...)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dejavu",
        description="One photo or a short video -> a controllable 3D Gaussian head avatar.",
    )
    parser.add_argument("--version", action="version", version=f"dejavu {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    add_subcommands(parser, "command", "COMMAND", "dejavu.cli", COMMANDS, _register)
    return parser


def _register(module: ModuleType, parser: argparse.ArgumentParser) -> None:
    module.register(parser)


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
    rc = main()
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(rc)


if __name__ == "__main__":
    run()
