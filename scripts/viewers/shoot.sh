#!/usr/bin/env bash
# Screenshots of an avatar exported with --up -y and --up y in the SuperSplat viewer (the HTML viewer
# PlayCanvas's splat-transform writes) and in Spark (three.js), headless Chromium on SwiftShader.
#   scripts/viewers/shoot.sh AVATAR_DIR OUT_DIR     (needs chromium, node/npm, `make test-oracles`)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
avatar="$1"; out="$(mkdir -p "$2" && cd "$2" && pwd)"
st="$repo/tests/oracles/node_modules/.bin/splat-transform"
(cd "$here" && npm ci --no-audit --no-fund --ignore-scripts >/dev/null)
cat > "$out/settings.json" <<'JSON'
{"version":2,"tonemapping":"none","highPrecisionRendering":false,"background":{"color":[1,1,1]},
 "postEffectSettings":{"sharpness":{"enabled":false,"amount":0},"bloom":{"enabled":false,"intensity":1,"blurLevel":2},
 "grading":{"enabled":false,"brightness":0,"contrast":1,"saturation":1,"tint":[1,1,1]},
 "vignette":{"enabled":false,"intensity":0.5,"inner":0.3,"outer":0.75,"curvature":1},"fringing":{"enabled":false,"intensity":0.5}},
 "animTracks":[],"cameras":[{"initial":{"position":[0,0,-0.9],"target":[0,0,0],"fov":30}}],"annotations":[],"startMode":"default"}
JSON
for up in -y y; do
  python -m dejavu export "$avatar" -o "$out/avatar_up$up.ply" --up="$up"
  "$st" -q -w -E "$out/settings.json" "$out/avatar_up$up.ply" "$out/supersplat_up$up.html"
  node "$here/shot.js" "file://$out/supersplat_up$up.html?noui&noanim&webgl" "$out/supersplat_up$up.png" 40000
  cp "$out/avatar_up$up.ply" "$here/"
done
python -m http.server 8765 --bind 127.0.0.1 --directory "$here" >/dev/null 2>&1 &
server=$!
trap 'kill "$server"; rm -f "$here"/avatar_up*.ply' EXIT
sleep 1
for up in -y y; do
  node "$here/shot.js" "http://127.0.0.1:8765/spark.html?file=avatar_up$up.ply" "$out/spark_up$up.png" 20000 drawn
done
python - "$out" <<'PY'
import sys
import numpy as np
from PIL import Image, ImageDraw
out, T = sys.argv[1], 300
rows = [("SuperSplat viewer 1.26", "supersplat"), ("Spark 2.2 (three.js)", "spark")]
canvas = Image.new("RGB", (150 + 2 * T, 30 + 2 * T), "white")
d = ImageDraw.Draw(canvas)
for r, (label, name) in enumerate(rows):
    for c, up in enumerate(("-y", "y")):
        im = Image.open(f"{out}/{name}_up{up}.png").convert("RGB")
        ys, xs = np.nonzero((np.asarray(im) < 245).any(-1))
        cy, cx = (ys.min() + ys.max()) // 2, (xs.min() + xs.max()) // 2
        canvas.paste(im.crop((cx - 200, cy - 200, cx + 200, cy + 200)).resize((T, T)), (150 + c * T, 30 + r * T))
    d.text((8, 30 + r * T + T // 2), label, fill="black")
for c, label in enumerate(("--up -y (default)", "--up y")):
    d.text((150 + c * T + T // 2 - 50, 8), label, fill="black")
canvas.save(f"{out}/export_up_viewers.png", optimize=True)
PY
echo "screenshots in $out (grid: $out/export_up_viewers.png)"
