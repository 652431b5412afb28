"""Drive the player in headless Chromium (tests, screenshots, in-page benchmarks); a development tool.

It runs ``web/test/page.mjs`` (Node + ``puppeteer-core`` from the repository's ``node_modules``) against
Debian's ``chromium`` with SwiftShader WebGL. :func:`browser_missing` says what is absent, so tests skip
with that reason.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from dejavu.errors import DejavuError
from dejavu.web.site import STATIC_DIR, STATIC_FILES

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "web" / "test" / "page.mjs"
FIELDS = {"means": 3, "quats": 4, "scales": 3, "opacities": 1, "colors": 3}


def chromium_path() -> str | None:
    """``$DEJAVU_CHROMIUM``, else ``chromium`` / ``chromium-browser`` / ``google-chrome`` on PATH."""
    env = os.environ.get("DEJAVU_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def browser_missing() -> str | None:
    """Why the page cannot be driven here (None when it can)."""

    if chromium_path() is None:
        return "no chromium found (apt-get install chromium, or set $DEJAVU_CHROMIUM)"
    if shutil.which("node") is None:
        return "no node found (Node.js runs the puppeteer-core harness)"
    if not (REPO / "node_modules" / "puppeteer-core").is_dir() or not HARNESS.is_file():
        return "node_modules/puppeteer-core is missing (run `make web`)"
    if not all((STATIC_DIR / f).is_file() for f in STATIC_FILES):
        return "the web player is not built (run `make web`)"
    return None


def run_page(url: str, steps: list[dict], size: int = 512, timeout_s: float = 600) -> list:
    """Open ``url`` (a site's index.html), wait for it to draw, run ``steps``; each step's value, in order.

    Steps (see ``web/test/page.mjs``): ``{"op": "evaluate", "params": {...}}`` (Gaussians, decoded by
    :func:`decode_gaussians`), ``evaluateExtra``, ``loadRuntime`` (``url``), ``bench`` (``n``, ``stage``),
    ``show`` (``params``), ``settle`` (``n`` frames), ``screenshot`` (``path``: the canvas), ``pageshot``
    (``path``: the whole page), ``waitLive`` (``frames``).
    """
    why = browser_missing()
    if why:
        raise DejavuError(f"cannot drive the web player: {why}")
    with tempfile.TemporaryDirectory(prefix="dejavu-web-") as tmp:
        job = {"url": url, "chromium": chromium_path(), "out": str(Path(tmp) / "out.json"), "size": size,
               "steps": steps, "timeout_ms": int(timeout_s * 1000)}
        (Path(tmp) / "job.json").write_text(json.dumps(job))
        try:
            proc = subprocess.run(["node", str(HARNESS), str(Path(tmp) / "job.json")], capture_output=True, text=True,
                                  timeout=timeout_s, cwd=REPO, check=False)
        except subprocess.TimeoutExpired:
            raise DejavuError(f"{url}: the page did not finish within {timeout_s:.0f} s") from None
        out_path = Path(job["out"])
        if not out_path.is_file():
            raise DejavuError(f"{url}: the browser harness failed: {proc.stderr.strip()[-500:]}")
        out = json.loads(out_path.read_text())
    if out.get("error"):
        raise DejavuError(f"{url}: {out['error'].splitlines()[0]}")
    return [r["value"] for r in out["results"] if r["op"] != "logs"]


def decode_gaussians(value: dict) -> dict[str, np.ndarray]:
    """The page's base64 float32 Gaussians -> arrays (N, 3|4|1), in :class:`~dejavu.gaussians.uvmap.Gaussians` fields."""
    out = {}
    for name, cols in FIELDS.items():
        a = np.frombuffer(base64.b64decode(value[name]), dtype="<f4")
        out[name] = a.reshape(-1, cols) if cols > 1 else a
    return out
