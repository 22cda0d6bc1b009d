// Drives /usr/bin/chromium (headless, WebGPU on its SwiftShader) over the sites
// `effc compile --target web` wrote, as crates/effc-cli/tests/web.rs prepared them:
//
//   node web-tests/run.mjs DIR
//
// DIR holds one site per directory and `tests.json`, which lists what to check:
//   numerics: [{ site, batch, input, expected, tolerance?, f16?, backend? }]
//                                                  forward vs. a fixture (f32 files),
//                                                  max|diff| ≤ tolerance (1e-3) ×
//                                                  max|expected|; backend "wasm": on
//                                                  effc-cpu.wasm (load's option)
//   halves: { site, values, bits }                 toHalf() vs. effc's f16 encoding
//   classify: { site, images: [{ file, top1, input }] }   lite0 with real weights
//   wrongWeights: { site, other }                  a weights.bin of another model
//   timing: { site }                               batch-1 forward time (WebGPU, wasm)
//   noWebgpu: { site, images: [{ file, top5 }], f16Site }   a page without
//                                                  navigator.gpu: load() falls back
//                                                  to wasm and classify gives the
//                                                  native top-5; an f16 site is refused
//   fit: { site, cases: [{ limits, maxBatch, chunk | error }] }   effc-runtime's fit()
// Screenshots of index.html are written into DIR. Prints one line per check and
// exits 1 when one fails.

import { createServer } from "node:http";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { extname, join, normalize, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { chromium } from "playwright-core";

const dir = resolve(process.argv[2] ?? ".");
const tests = JSON.parse(readFileSync(join(dir, "tests.json"), "utf8"));
const CHROMIUM = process.env.EFFC_CHROMIUM ?? "/usr/bin/chromium";
// Exactly the flags under which Debian's chromium runs WebGPU headless.
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--enable-unsafe-webgpu",
  "--enable-features=Vulkan",
  "--use-vulkan=native",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

const TYPES = {
  ".html": "text/html",
  ".js": "text/javascript",
  ".wgsl": "text/plain",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".png": "image/png",
};

// A static server over DIR on 127.0.0.1 (any free port); `/blank.html` is an empty
// page of the same origin for the checks that import model.js themselves.
function serve() {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    if (path === "/blank.html") {
      res.writeHead(200, { "content-type": "text/html" });
      return res.end("<!doctype html><title>blank</title>");
    }
    const file = normalize(join(dir, path));
    if (!file.startsWith(dir) || !statSync(file, { throwIfNoEntry: false })?.isFile()) {
      res.writeHead(404);
      return res.end("not found");
    }
    res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" });
    res.end(readFileSync(file));
  });
  return new Promise((ok) => server.listen(0, "127.0.0.1", () => ok(server)));
}

let failed = 0;
async function check(name, f) {
  const t0 = Date.now();
  try {
    const note = await f();
    console.log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)${note ? `: ${note}` : ""}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e.message}`);
  }
}

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

const server = await serve();
const origin = `http://127.0.0.1:${server.address().port}`;
const profile = mkdtempSync(join(tmpdir(), "effc-chromium-"));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  args: FLAGS,
  viewport: { width: 900, height: 1000 },
});
browser.setDefaultTimeout(240_000);

async function blank() {
  const page = await browser.newPage();
  page.on("console", (m) => m.type() === "error" && !m.text().includes("404") && console.log(`  [browser] ${m.text()}`));
  await page.goto(`${origin}/blank.html`);
  return page;
}

try {
  // effc-runtime's fit(), rule for rule: model.js imports in node too (nothing runs
  // at import), so the chunk rule is checked without a browser.
  if (tests.fit) {
    await check(`fit() equals effc-runtime's for ${tests.fit.cases.length} limit sets`, async () => {
      const m = await import(pathToFileURL(join(dir, tests.fit.site, "model.js")));
      for (const c of tests.fit.cases) {
        let got;
        try {
          got = { chunk: m.fit(c.limits, c.maxBatch) };
        } catch (e) {
          got = { error: e.message };
        }
        if (c.error !== undefined) {
          assert(got.error?.endsWith(c.error), `maxBatch ${c.maxBatch}, ${JSON.stringify(c.limits)}: want error "${c.error}", got ${JSON.stringify(got)}`);
        } else {
          assert(got.chunk === c.chunk, `maxBatch ${c.maxBatch}, ${JSON.stringify(c.limits)}: want chunk ${c.chunk}, got ${JSON.stringify(got)}`);
        }
      }
    });
  }

  // toHalf() (the input's f32 -> f16 at f16) against effc_plan::precision::encode.
  if (tests.halves) {
    await check(`toHalf() equals effc's f16 rounding for ${tests.halves.values.length} values`, async () => {
      const m = await import(pathToFileURL(join(dir, tests.halves.site, "model.js")));
      tests.halves.values.forEach((v, i) => {
        const got = m.toHalf(v);
        assert(got === tests.halves.bits[i], `toHalf(${v}) = 0x${got.toString(16)}, effc encodes 0x${tests.halves.bits[i].toString(16)}`);
      });
    });
  }

  const page = await blank();
  for (const n of tests.numerics ?? []) {
    await check(`${n.site}: forward of batch ${n.batch}${n.backend ? ` on ${n.backend}` : ""} equals ${n.expected}`, async () => {
      const r = await page.evaluate(async (n) => {
        const { load } = await import(`/${n.site}/model.js`);
        const f32 = async (p) => new Float32Array(await (await fetch(p)).arrayBuffer());
        const model = await load(undefined, { maxBatch: n.batch, f16: n.f16, backend: n.backend });
        const input = await f32(`/${n.input}`);
        const want = await f32(`/${n.expected}`);
        const got = await model.forward(input, n.batch);
        model.destroy();
        let err = 0, scale = 0;
        for (let i = 0; i < want.length; i++) {
          err = Math.max(err, Math.abs(got[i] - want[i]));
          scale = Math.max(scale, Math.abs(want[i]));
        }
        return { err, scale, len: got.length, want: want.length, adapter: model.info.adapter, chunk: model.info.chunk, precision: model.info.precision, backend: model.info.backend, phases: model.info.load };
      }, n);
      assert(r.backend === (n.backend ?? "webgpu"), `ran on ${r.backend}, asked for ${n.backend}`);
      const tol = n.tolerance ?? 1e-3;
      assert(r.len === r.want, `${r.len} values, the fixture has ${r.want}`);
      // model.info.load (WebGPU): every phase a time within the total.
      for (const k of r.backend !== "webgpu" ? [] : ["weights", "device", "shaders", "pipelines", "upload", "total"]) {
        const v = r.phases?.[k];
        assert(Number.isFinite(v) && v >= 0 && v <= r.phases.total, `model.info.load.${k} is ${v} (total ${r.phases?.total})`);
      }
      assert(r.err <= tol * r.scale, `max|diff| ${r.err} > ${tol} × ${r.scale}`);
      return `${r.precision}: max|diff| ${r.err.toExponential(2)} = ${(r.err / r.scale).toExponential(2)} × max|want| on ${r.adapter}`;
    });
  }

  if (tests.wrongWeights) {
    const w = tests.wrongWeights;
    await check(`${w.site}: a weights.bin of ${w.other} is refused`, async () => {
      const errors = await page.evaluate(async (w) => {
        const { load } = await import(`/${w.site}/model.js`);
        const out = [];
        for (const weights of [`/${w.other}/weights.bin`, new ArrayBuffer(64)]) {
          try {
            await load(weights);
            out.push(null);
          } catch (e) {
            out.push(`${e.constructor.name}: ${e.message}`);
          }
        }
        return out;
      }, w);
      assert(errors[0]?.startsWith("Error:") && errors[0].includes(`is for model \`${w.other}\``), `another model's weights: ${errors[0]}`);
      assert(errors[1]?.includes("not an effc weights.bin"), `64 zero bytes: ${errors[1]}`);
      return errors[0];
    });
  }

  if (tests.classify) {
    const c = tests.classify;
    await check(`${c.site}: preprocess and classify equal native`, async () => {
      const r = await page.evaluate(async (c) => {
        const { load } = await import(`/${c.site}/model.js`);
        const model = await load();
        const out = [];
        for (const im of c.images) {
          const img = new Image();
          img.src = `/${im.file}`;
          await img.decode();
          const want = new Float32Array(await (await fetch(`/${im.input}`)).arrayBuffer());
          const got = await model.preprocess(img);
          let diff = 0;
          for (let i = 0; i < want.length; i++) diff = Math.max(diff, Math.abs(got[i] - want[i]));
          // The other kinds of source give the same input, to the bit.
          const bitmap = await createImageBitmap(img, { colorSpaceConversion: "none" });
          const canvas = document.createElement("canvas");
          [canvas.width, canvas.height] = [img.naturalWidth, img.naturalHeight];
          canvas.getContext("2d").drawImage(bitmap, 0, 0);
          const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
          const others = [];
          for (const src of [bitmap, canvas, data]) {
            const x = await model.preprocess(src);
            others.push(x.every((v, i) => v === got[i]));
          }
          const top = await model.classify(img, 5);
          out.push({ diff, len: got.length, wantLen: want.length, top, others });
        }
        model.destroy();
        return out;
      }, c);
      const notes = [];
      c.images.forEach((im, i) => {
        const x = r[i];
        assert(x.len === x.wantLen, `${im.file}: ${x.len} input values, native has ${x.wantLen}`);
        assert(x.diff <= 1e-6, `${im.file}: preprocessed input differs from native by ${x.diff}`);
        assert(x.top[0].class === im.top1, `${im.file}: top-1 ${x.top[0].class} (${x.top[0].name}), native ${im.top1}`);
        assert(x.others.every((same) => same), `${im.file}: the same input from ImageBitmap, canvas, ImageData: ${x.others}`);
        notes.push(`${im.file} ${x.top[0].name} ${(100 * x.top[0].prob).toFixed(1)}%`);
      });
      return notes.join(", ");
    });
  }

  if (tests.timing) {
    const t = tests.timing;
    for (const backend of ["webgpu", "wasm"]) {
      await check(`${t.site}: batch-1 forward time on ${backend}`, async () => {
        const r = await page.evaluate(async ([t, backend]) => {
          const { load } = await import(`/${t.site}/model.js`);
          const l0 = performance.now();
          const model = await load(undefined, { maxBatch: 1, backend });
          const loadMs = performance.now() - l0;
          const [c, h, w] = model.info.inputShape;
          const input = new Float32Array(c * h * w).map((_, i) => Math.sin(i));
          await model.forward(input, 1); // pipelines compiled, buffers touched
          const ms = [];
          for (let i = 0; i < 3; i++) {
            const t0 = performance.now();
            await model.forward(input, 1);
            ms.push(performance.now() - t0);
          }
          model.destroy();
          ms.sort((a, b) => a - b);
          return { median: ms[1], min: ms[0], adapter: model.info.adapter, loadMs, phases: model.info.load };
        }, [t, backend]);
        const phases = r.phases ? ` (${Object.entries(r.phases).map(([k, v]) => `${k} ${Number(v).toFixed(0)} ms`).join(", ")})` : "";
        console.log(`TIMING ${t.site} ${backend} load ${r.loadMs.toFixed(0)} ms${phases}`);
        console.log(`TIMING ${t.site} ${backend} batch 1 in headless chromium on ${r.adapter}: median ${r.median.toFixed(1)} ms, min ${r.min.toFixed(1)} ms (3 runs after one warm-up)`);
        return `median ${r.median.toFixed(1)} ms`;
      });
    }
  }
  await page.close();

  // The page a person uses: choose a photo, wait for the top-5, keep a screenshot.
  if (tests.classify) {
    const c = tests.classify;
    await check(`${c.site}/index.html: choosing photos shows their classes`, async () => {
      const p = await browser.newPage();
      await p.goto(`${origin}/${c.site}/index.html`);
      await p.waitForSelector("body[data-ready]");
      const notes = [];
      for (const im of c.images) {
        await p.evaluate(() => delete document.body.dataset.top1);
        await p.setInputFiles("#file", join(dir, im.file));
        await p.waitForSelector("body[data-top1]");
        const top1 = await p.evaluate(() => Number(document.body.dataset.top1));
        const rows = await p.locator("#results .row").count();
        const shot = join(dir, `index-${im.file.replace(/\W+/g, "-")}.png`);
        await p.screenshot({ path: shot, fullPage: true });
        assert(top1 === im.top1, `${im.file}: the page shows class ${top1} first, native ${im.top1}`);
        assert(rows === 5, `${im.file}: ${rows} rows of results`);
        notes.push(`${im.file} → ${await p.locator("#results .row span").first().textContent()} (${shot})`);
      }
      const time = await p.textContent("#time");
      assert(/forward: [\d.]+ ms/.test(time), `no forward time shown: "${time}"`);
      await p.close();
      return notes.join(", ");
    });

    await check(`${c.site}/index.html without WebGPU classifies on wasm`, async () => {
      const p = await browser.newPage();
      await p.addInitScript(() => Object.defineProperty(Navigator.prototype, "gpu", { get: () => undefined }));
      await p.goto(`${origin}/${c.site}/index.html`);
      await p.waitForSelector("body[data-ready]");
      const backend = await p.evaluate(() => document.body.dataset.backend);
      const status = await p.textContent("#status");
      assert(backend === "wasm", `the page runs on ${backend}`);
      assert(status.includes("WebAssembly CPU") && status.includes("no WebGPU"), `the page says "${status}"`);
      const im = c.images[0];
      await p.setInputFiles("#file", join(dir, im.file));
      await p.waitForSelector("body[data-top1]");
      const top1 = await p.evaluate(() => Number(document.body.dataset.top1));
      await p.screenshot({ path: join(dir, "index-no-webgpu.png"), fullPage: true });
      await p.close();
      assert(top1 === im.top1, `${im.file}: the page shows class ${top1} first, native ${im.top1}`);
      return status;
    });
  }

  // A page whose browser has no WebGPU: load() falls back to effc-cpu.wasm, says
  // so in model.info, and classifies the photos with the native top-5.
  if (tests.noWebgpu) {
    const w = tests.noWebgpu;
    await check(`${w.site} without WebGPU: classify on wasm gives the native top-5`, async () => {
      const p = await browser.newPage();
      await p.addInitScript(() => Object.defineProperty(Navigator.prototype, "gpu", { get: () => undefined }));
      await p.goto(`${origin}/blank.html`);
      const r = await p.evaluate(async (w) => {
        const { load } = await import(`/${w.site}/model.js`);
        const model = await load();
        const tops = [];
        for (const im of w.images) {
          const img = new Image();
          img.src = `/${im.file}`;
          await img.decode();
          tops.push((await model.classify(img, 5)).map((t) => t.class));
        }
        const info = model.info;
        model.destroy();
        /** The errors: WebGPU asked for where there is none, an f16 model, a batch past wasm32's memory. */
        const errors = [];
        for (const [site, options] of [[w.site, { backend: "webgpu" }], [w.f16Site, {}], [w.site, { backend: "wasm", maxBatch: 2 ** 20 }]]) {
          const { load } = await import(`/${site}/model.js`);
          try {
            await load(undefined, options);
            errors.push(null);
          } catch (e) {
            errors.push(e.message);
          }
        }
        return { tops, info, errors };
      }, w);
      await p.close();
      assert(r.info.backend === "wasm", `model.info.backend is ${r.info.backend}`);
      assert(r.info.fallback.includes("no WebGPU"), `model.info.fallback: ${r.info.fallback}`);
      assert(r.info.cpu.isa === "simd128" && r.info.cpu.threads === 1, `model.info.cpu: ${JSON.stringify(r.info.cpu)}`);
      w.images.forEach((im, i) => {
        assert(JSON.stringify(r.tops[i]) === JSON.stringify(im.top5), `${im.file}: top-5 ${r.tops[i]}, native ${im.top5}`);
      });
      assert(r.errors[0]?.includes("no WebGPU") && r.errors[0].includes("recent Chrome"), `backend webgpu without WebGPU: ${r.errors[0]}`);
      assert(r.errors[1]?.includes("f32 plans only") && r.errors[1].includes("no WebGPU"), `an f16 model without WebGPU: ${r.errors[1]}`);
      assert(r.errors[2]?.includes("4 GiB"), `maxBatch 2^20 on wasm: ${r.errors[2]}`);
      return `${r.info.adapter}; ${w.images.map((im, i) => `${im.file} top-5 ${r.tops[i].join(",")}`).join("; ")}; f16: ${r.errors[1]}`;
    });
  }
} finally {
  await browser.close();
  server.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
