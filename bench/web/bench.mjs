// bench/web.sh's browser side: in one headless /usr/bin/chromium page, effc's
// wasm CPU backend (`load(weights, { backend: "wasm" })` of the site effc compiled)
// and onnxruntime-web's wasm backend (`ort.wasm.min.mjs`, numThreads 1, SIMD) on
// the same ONNX export of the same weights and the same input:
//
//   node bench/web/bench.mjs OUT [RUNS]
//
// OUT holds site/ (effc compile --target web), b0.onnx, input.f32 and logits.f32
// (bench/web_export.py). Both are first checked against PyTorch's logits, then
// warmed up (3 forwards each), then timed alternately, RUNS rounds of one forward
// each (so that a change in the machine's load hits both alike); prints the median
// and the minimum of each, and the ratio of the medians.

import { createServer } from "node:http";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, extname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const out = resolve(process.argv[2] ?? "target/bench-web");
const runs = Number(process.argv[3] ?? 20);
const ortDist = join(dirname(fileURLToPath(import.meta.url)), "node_modules/onnxruntime-web/dist");
const CHROMIUM = process.env.EFFC_CHROMIUM ?? "/usr/bin/chromium";
for (const f of ["site/model.js", "site/effc-cpu.wasm", "b0.onnx", "input.f32", "logits.f32", join(ortDist, "ort.wasm.min.mjs")]) {
  if (!existsSync(resolve(out, f))) throw new Error(`missing ${resolve(out, f)} (run bench/web.sh)`);
}

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".json": "application/json" };
// OUT at /, onnxruntime-web's dist at /ort/.
const server = createServer((req, res) => {
  const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
  if (path === "/blank.html") {
    res.writeHead(200, { "content-type": "text/html" });
    return res.end("<!doctype html><title>bench</title>");
  }
  const [root, rel] = path.startsWith("/ort/") ? [ortDist, path.slice(5)] : [out, path];
  const file = normalize(join(root, rel));
  if (!file.startsWith(root) || !statSync(file, { throwIfNoEntry: false })?.isFile()) {
    if (path !== "/favicon.ico") console.log(`  [server] 404 ${path}`);
    res.writeHead(404);
    return res.end("not found");
  }
  res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" });
  res.end(readFileSync(file));
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const origin = `http://127.0.0.1:${server.address().port}`;
const profile = mkdtempSync(join(tmpdir(), "effc-bench-chromium-"));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});
browser.setDefaultTimeout(600_000);
try {
  const page = await browser.newPage();
  page.on("console", (m) => !m.text().includes("404") && console.log(`  [browser] ${m.text()}`));
  await page.goto(`${origin}/blank.html`);
  const r = await page.evaluate(async (runs) => {
    const f32 = async (p) => new Float32Array(await (await fetch(p)).arrayBuffer());
    const input = await f32("/input.f32");
    const want = await f32("/logits.f32");
    const diff = (got) => {
      let err = 0, scale = 0;
      for (let i = 0; i < want.length; i++) {
        err = Math.max(err, Math.abs(got[i] - want[i]));
        scale = Math.max(scale, Math.abs(want[i]));
      }
      return err / scale;
    };

    let t0 = performance.now();
    const { load } = await import("/site/model.js");
    const effc = await load("/site/weights.bin", { backend: "wasm", maxBatch: 1 });
    const effcLoad = performance.now() - t0;

    t0 = performance.now();
    const ort = await import("/ort/ort.wasm.min.mjs");
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.simd = true;
    ort.env.wasm.wasmPaths = "/ort/";
    const session = await ort.InferenceSession.create("/b0.onnx", { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
    const ortLoad = performance.now() - t0;
    const [c, h, w] = effc.info.inputShape;
    const feeds = () => ({ [session.inputNames[0]]: new ort.Tensor("float32", input, [1, c, h, w]) });
    const sides = {
      effc: async () => effc.forward(input, 1),
      ort: async () => (await session.run(feeds()))[session.outputNames[0]].data,
    };
    const check = { effc: diff(await sides.effc()), ort: diff(await sides.ort()) };
    for (let i = 0; i < 3; i++) for (const f of Object.values(sides)) await f();
    const ms = { effc: [], ort: [] };
    for (let i = 0; i < runs; i++) {
      for (const [name, f] of Object.entries(sides)) {
        const t = performance.now();
        await f();
        ms[name].push(performance.now() - t);
      }
    }
    const stat = (v) => {
      const s = [...v].sort((a, b) => a - b);
      return { median: s[Math.floor(s.length / 2)], min: s[0] };
    };
    return {
      effc: { ...stat(ms.effc), load: effcLoad, check: check.effc, adapter: effc.info.adapter },
      ort: { ...stat(ms.ort), load: ortLoad, check: check.ort, version: ort.env.versions?.web ?? "?" },
      ua: navigator.userAgent,
    };
  }, runs);
  const tolerance = 1e-3;
  console.log(`chromium: ${r.ua}`);
  console.log(`b0, batch 1, ${runs} alternating rounds after 3 warm-up forwards each`);
  console.log("| path | median ms | min ms | load ms | max|Δ| vs PyTorch / max|logit| |");
  console.log("| --- | --- | --- | --- | --- |");
  console.log(`| effc wasm (${r.effc.adapter}) | ${r.effc.median.toFixed(1)} | ${r.effc.min.toFixed(1)} | ${r.effc.load.toFixed(0)} | ${r.effc.check.toExponential(1)} |`);
  console.log(`| onnxruntime-web ${r.ort.version} wasm (1 thread, SIMD) | ${r.ort.median.toFixed(1)} | ${r.ort.min.toFixed(1)} | ${r.ort.load.toFixed(0)} | ${r.ort.check.toExponential(1)} |`);
  console.log(`effc / onnxruntime-web median latency: ${(r.effc.median / r.ort.median).toFixed(2)} (target ≤ 1)`);
  if (!(r.effc.check <= tolerance && r.ort.check <= tolerance)) {
    console.log(`FAIL: a side does not compute PyTorch's logits within ${tolerance} × max|logit|`);
    process.exitCode = 1;
  }
} finally {
  await browser.close();
  server.close();
  rmSync(profile, { recursive: true, force: true });
}
