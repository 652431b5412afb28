// Drive the player in headless Chromium for tests/web: `node web/test/page.mjs JOB.json`.
// JOB: {url, chromium, out, size, steps: [{op: "evaluate"|"evaluateGpu"|"evaluateExtra"|"evaluateExtraGpu"|
// "loadRuntime"|"setPath"|"show"|"bench"|"screenshot"|"pageshot"|"waitLive"|"waitLiveFile", ...}]}. Writes {results: [...]} as JSON to JOB.out; screenshots to the given paths.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import puppeteer from "puppeteer-core";

const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
const browser = await puppeteer.launch({
  executablePath: job.chromium,
  headless: true,
  args: ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--enable-webgl",
    "--ignore-gpu-blocklist", `--window-size=${(job.size || 512) + 400},${(job.size || 512) + 100}`],
});
const results = [];
let failed = null;
try {
  const page = await browser.newPage();
  const logs = [];
  page.on("console", (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
  await page.setViewport({ width: (job.size || 512) + 400, height: (job.size || 512) + 100 });
  await page.goto(job.url, { waitUntil: "load", timeout: job.timeout_ms || 120000 });
  await page.waitForFunction(() => document.title === "ready" || document.title.startsWith("error"),
    { timeout: job.timeout_ms || 120000, polling: 200 });
  const title = await page.title();
  if (title !== "ready") throw new Error(`page says ${title}; console: ${logs.join(" | ")}`);
  for (const step of job.steps) {
    const t0 = Date.now();
    let value = null;
    if (step.op === "evaluate") value = await page.evaluate((p) => window.dejavu.evaluate(p), step.params);
    else if (step.op === "evaluateGpu") value = await page.evaluate((p) => window.dejavu.evaluateGpu(p), step.params);
    else if (step.op === "evaluateExtra") value = await page.evaluate((p) => window.dejavu.evaluateExtra(p), step.params);
    else if (step.op === "evaluateExtraGpu") value = await page.evaluate((p) => window.dejavu.evaluateExtraGpu(p), step.params);
    else if (step.op === "setPath") value = await page.evaluate((p) => window.dejavu.setPath(p), step.path);
    else if (step.op === "loadRuntime") value = await page.evaluate((u) => window.dejavu.loadRuntime(u), step.url);
    else if (step.op === "bench") value = await page.evaluate((n, s) => window.dejavu.bench(n, s), step.n || 50, step.stage || "full");
    else if (step.op === "show") value = await page.evaluate(async (p) => { await window.dejavu.show(p); return true; }, step.params);
    else if (step.op === "seek") value = await page.evaluate((s, i) => window.dejavu.seek(s, i), step.sequence || 0, step.frame);
    else if (step.op === "settle") value = await page.evaluate(async (n) => { await window.dejavu.settle(n); return true; }, step.n || 10);
    else if (step.op === "waitLive") {
      await page.waitForFunction((n) => window.dejavu.liveFrames >= n, { timeout: step.timeout_ms || 60000, polling: 100 }, step.frames);
      value = await page.evaluate(() => window.dejavu.liveFrames);
    } else if (step.op === "waitLiveFile") {
      // the stream's sender writes how many messages it sent into step.path once it has ended
      const deadline = Date.now() + (step.timeout_ms || 240000);
      while (!existsSync(step.path) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      const n = Number(readFileSync(step.path, "utf8"));
      await page.waitForFunction((k) => window.dejavu.liveFrames >= k, { timeout: step.timeout_ms || 60000, polling: 100 }, n);
      value = await page.evaluate(() => window.dejavu.liveFrames);
    } else if (step.op === "pageshot") {
      await page.screenshot({ path: step.path });
      value = step.path;
    } else if (step.op === "screenshot") {
      const canvas = await page.$("#view");
      await canvas.screenshot({ path: step.path });
      value = step.path;
    } else throw new Error(`unknown op ${step.op}`);
    results.push({ op: step.op, value, ms: Date.now() - t0 });
  }
  results.push({ op: "logs", value: logs });
} catch (err) {
  failed = String(err && err.stack || err);
} finally {
  await browser.close();
}
writeFileSync(job.out, JSON.stringify({ results, error: failed }));
process.exit(failed ? 1 : 0);
