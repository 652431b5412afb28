"""``dejavu web AVATAR_DIR -o SITE_DIR [--drive SRC ...] [--serve]``: the avatar as a static web player."""

from __future__ import annotations

import argparse
from pathlib import Path

from dejavu.errors import DejavuError
from dejavu.web.server import make_server
from dejavu.web.site import SiteConfig, build_site, cached_site_dir


def register(parser: argparse.ArgumentParser) -> None:
    """Describe the command on ``parser`` (its summary: ``dejavu.cli.COMMANDS``)."""
    parser.description = ("Write a self-contained static folder (index.html, the bundled player, the avatar as "
                          "float16 maps + JSON, driving sequences) that any static file server can serve; nothing is "
                          "fetched from elsewhere. --serve also serves it on 127.0.0.1 and prints the URL.")
    parser.add_argument("avatar", help="avatar directory")
    parser.add_argument("-o", "--output", default=None,
                        help="site folder (default with --serve: a folder under the dejavu cache)")
    parser.add_argument("--drive", action="append", default=[], metavar="SRC",
                        help="a sequence to play back: tracking directory, .json/.npz parameter file or video "
                             "(as `dejavu animate --drive`); repeatable")
    parser.add_argument("--precision", default="float16", choices=("float16", "float32"),
                        help="dtype of the offset maps (float32: twice the bytes, bit-exact)")
    parser.add_argument("--all-stages", action="store_true",
                        help="also ship a personalized avatar's stage-1 delta (the page's 'global' view; +1.25 MB at "
                             "UV 256)")
    parser.add_argument("--size", type=int, default=512, help="initial canvas side in pixels (default 512)")
    parser.add_argument("--background", default="#ffffff", help="initial background colour (default #ffffff)")
    parser.add_argument("--force", action="store_true", help="replace an existing site in --output")
    parser.add_argument("--serve", action="store_true", help="serve the site after building it")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to serve on (default 8000; 0: any free port)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.output is None and not args.serve:
        raise DejavuError("-o/--output is required (or pass --serve to build into the cache and serve)")
    out = Path(args.output) if args.output else cached_site_dir(args.avatar)
    force = args.force or args.output is None  # the cache copy is ours to rebuild
    config = SiteConfig(precision=args.precision, resolution=args.size, background=args.background,
                        all_stages=args.all_stages)
    record = build_site(args.avatar, out, drives=args.drive, config=config, force=force)
    print(f"site written to {record['site']} ({record['bytes'] / 1e6:.1f} MB, {record['n_gaussians']} Gaussians, "
          f"{record['sequences']} sequence(s))")
    if args.serve:
        try:
            server = make_server(out, args.host, args.port)
        except OSError as exc:
            raise DejavuError(f"--port {args.port}: cannot listen on {args.host} ({exc.strerror})") from None
        host, port = server.server_address[:2]
        print(f"serving at http://{host}:{port}/ (Ctrl-C stops)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    return 0

