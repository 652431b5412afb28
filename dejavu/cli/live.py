"""``dejavu live SOURCE --avatar AVATAR_DIR``: track a webcam or video frame by frame, stream to the web player."""

from __future__ import annotations

import argparse

from dejavu.io import write_json
from dejavu.cli.values import check_positive
from dejavu.web.live import LiveConfig, run_live, summary_line


def register(parser: argparse.ArgumentParser) -> None:
    """Describe the command on ``parser`` (its summary: ``dejavu.cli.COMMANDS``)."""
    parser.description = ("Serve the avatar's web player, then track SOURCE frame by frame (landmarks + a per-frame "
                          "fit with the avatar's identity) and stream expression, jaw, eyes and head rotation to the "
                          "page over a WebSocket. Prints the page URL, then frames per second and latency (frame read "
                          "-> parameters sent).")
    parser.add_argument("source", help="a video file, or a webcam's OpenCV index (0, 1, ...)")
    parser.add_argument("--avatar", required=True, help="avatar directory")
    parser.add_argument("--host", default="127.0.0.1", help="address both servers listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port of the page (default 8000; 0: any)")
    parser.add_argument("--ws-port", type=int, default=8765, help="WebSocket port (default 8765; 0: any)")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many source frames")
    parser.add_argument("--realtime", action="store_true",
                        help="pace a video file at its frame rate and drop the frames tracking is too busy for, as a "
                             "webcam does (default: every frame of a file, as fast as tracking goes)")
    parser.add_argument("--wait-client", type=float, default=0.0, metavar="SECONDS",
                        help="wait up to this long for a page to connect before tracking starts")
    parser.add_argument("--fitter", choices=("lm", "adam"), default="lm",
                        help="per-frame fit: lm (Levenberg-Marquardt, default) or adam (the slower reference)")
    parser.add_argument("--iterations", type=int, default=2, help="lm: most iterations per frame (default 2)")
    parser.add_argument("--json", default=None, help="write the run's figures (fps, latency) to this JSON file")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    check_positive("--iterations", args.iterations)
    config = LiveConfig(max_frames=args.max_frames, realtime=args.realtime, fitter=args.fitter,
                        iterations=args.iterations)
    summary = run_live(args.source, args.avatar, config, host=args.host, port=args.port, ws_port=args.ws_port,
                       wait_client=args.wait_client,
                       on_ready=lambda url: print(f"open {url}", flush=True))
    print(summary_line(summary), flush=True)
    if args.json:
        write_json(args.json, summary)
        print(f"figures written to {args.json}")
    return 0
