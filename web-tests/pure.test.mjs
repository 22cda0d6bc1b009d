// The pure functions of a site's model.js under `node --test`, without a browser:
// fit() against effc-runtime's fit, toHalf() against effc's f16 rounding, and the
// Pillow resize + crop of `classify`. Run by `cargo test -p effc-cli --test web`
// (`pure_functions_under_node_test`), which compiles the site into $EFFC_SITE and
// writes the expected answers, computed by effc's Rust code, to
// $EFFC_SITE/expected.json.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const site = process.env.EFFC_SITE;
if (!site) throw new Error("EFFC_SITE must name a site compiled by `effc compile --target web`");
const expected = JSON.parse(readFileSync(join(site, "expected.json"), "utf8"));
const m = await import(pathToFileURL(join(site, "model.js")));

test("fit() gives effc-runtime's chunk or error for every limit set", () => {
  for (const c of expected.fit.cases) {
    const what = `maxBatch ${c.maxBatch}, ${JSON.stringify(c.limits)}`;
    if (c.error !== undefined) {
      assert.throws(() => m.fit(c.limits, c.maxBatch), (e) => e.message.endsWith(c.error), what);
    } else {
      assert.equal(m.fit(c.limits, c.maxBatch), c.chunk, what);
    }
  }
});

test("requiredLimits() asks for no more than the adapter has and enough to fit", () => {
  const adapter = expected.fit.cases[0].limits;
  const req = m.requiredLimits(adapter, 8);
  for (const [k, v] of Object.entries(req)) assert.ok(v <= adapter[k], `${k}: ${v} > ${adapter[k]}`);
  assert.ok(Number.isInteger(m.fit({ ...adapter, ...req }, 8)));
});

test("toHalf() rounds as effc_plan::precision::encode", () => {
  expected.halves.values.forEach((v, i) => {
    assert.equal(m.toHalf(v), expected.halves.bits[i], `toHalf(${v})`);
  });
});

test("resizeCrop() keeps an image resized to its own size, and a flat image flat", () => {
  const w = 7, h = 5;
  const src = new Uint8Array(w * h * 4);
  for (let i = 0; i < src.length; i++) src[i] = (i * 37) % 256;
  const same = m.resizeCrop(src, w, h, w, h, 0, 0, 5);
  for (let y = 0; y < 5; y++) {
    for (let x = 0; x < 5; x++) {
      for (let c = 0; c < 3; c++) assert.equal(same[(y * 5 + x) * 3 + c], src[(y * w + x) * 4 + c], `(${x}, ${y}, ${c})`);
    }
  }
  const flat = new Uint8Array(40 * 30 * 4).fill(200);
  const out = m.resizeCrop(flat, 40, 30, 20, 15, 2, 1, 12);
  assert.equal(out.length, 12 * 12 * 3);
  assert.ok(out.every((v) => v === 200), "a flat image stays flat");
});
