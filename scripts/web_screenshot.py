"""Screenshot the web player on an avatar (docs/web_player.png is the demo photo's avatar, made with this).

    python scripts/web_screenshot.py AVATAR_DIR OUT.png [--expression jawOpen=0.4,mouthSmileLeft=0.8,...]

Builds the avatar's site in a temporary folder, opens it in headless Chromium (``make web`` first) and
saves the whole page with the given expression units set.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from dejavu.web.browser import run_page
from dejavu.web.server import serve_in_thread
from dejavu.web.site import build_site


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("avatar")
    ap.add_argument("out")
    ap.add_argument("--expression", default="", help="name=value pairs, comma-separated")
    ap.add_argument("--jaw", type=float, default=0.0, help="jaw opening, radians")
    ap.add_argument("--turn", type=float, default=0.0, help="head turn (y), radians")
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        build_site(args.avatar, Path(tmp) / "site", progress=False)
        import json

        names = json.loads((Path(tmp) / "site" / "avatar.json").read_text())["expr_names"]
        expr = [0.0] * len(names)
        for pair in filter(None, args.expression.split(",")):
            name, value = pair.split("=")
            expr[names.index(name)] = float(value)
        server, url = serve_in_thread(Path(tmp) / "site")
        try:
            run_page(f"{url}index.html?size={args.size}", [
                {"op": "show", "params": {"expression": expr, "jaw": [args.jaw, 0, 0], "head": [0, args.turn, 0]}},
                {"op": "settle", "n": 10}, {"op": "pageshot", "path": str(Path(args.out).resolve())}], size=args.size)
        finally:
            server.shutdown()
    print(f"screenshot written to {args.out}")


if __name__ == "__main__":
    main()
