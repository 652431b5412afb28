// Bundle the player (three.js + Spark + our runtime) into dejavu/web/static/, which `dejavu web` copies
// into each site. Run by `make web` (npm ci first); nothing is fetched at run time.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const out = join(root, "dejavu", "web", "static");
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(root, "web", "src", "player.js")],
  bundle: true,
  format: "esm",
  minify: true,
  target: "es2022",
  outfile: join(out, "player.js"),
  legalComments: "linked",
  logLevel: "warning",
});
copyFileSync(join(root, "web", "index.html"), join(out, "index.html"));
console.log(`web bundle written to ${out}`);
