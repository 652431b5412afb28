"""``dejavu live SOURCE --avatar AVATAR_DIR``: track a webcam or video frame by frame, stream to the web player."""

from __future__ import annotations

import argparse

from dejavu.io import write_json
from dejavu.web.live import LiveConfig, run_live


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
    parser.add_argument("--realtime", action="store_true", help="pace a video file at its frame rate")
    parser.add_argument("--wait-client", type=float, default=0.0, metavar="SECONDS",
                        help="wait up to this long for a page to connect before tracking starts")
    parser.add_argument("--steps", type=int, default=8, help="fitting steps per frame (default 8)")
    parser.add_argument("--json", default=None, help="write the run's figures (fps, latency) to this JSON file")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    config = LiveConfig(max_frames=args.max_frames, realtime=args.realtime, steps=args.steps)
    summary = run_live(args.source, args.avatar, config, host=args.host, port=args.port, ws_port=args.ws_port,
                       wait_client=args.wait_client,
                       on_ready=lambda url: print(f"open {url}", flush=True))
    print(f"{summary['frames_tracked']} frames tracked in {summary['seconds']:.1f} s: {summary['fps']:.1f} frames/s, "
          f"latency (frame read -> sent) median {summary['latency_ms_median']:.1f} ms, "
          f"p90 {summary['latency_ms_p90']:.1f} ms; {summary['cpu_ms_per_frame']:.0f} ms of CPU per frame; "
          f"{summary['frames_without_face']} frame(s) without a face",
          flush=True)
    if args.json:
        write_json(args.json, summary)
        print(f"figures written to {args.json}")
    return 0
