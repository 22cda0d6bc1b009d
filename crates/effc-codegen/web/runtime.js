// The effc WebGPU runtime. `PLAN` (above, generated) holds the facts the Rust host
// is generated from: kernels, bindings, buffer slots, grids and workgroup sizes.
// This part computes only what depends on the browser's adapter (limits, chunk).
// Where WebGPU is missing (or when asked) it runs effc's CPU backend in
// WebAssembly instead (`effc-cpu.wasm` and `plan.json` beside this file), with the
// same API: `WasmModel`.

// Types for `tsc --checkJs` (effc's tests check this file with `--strict`).
/** @typedef {Record<keyof typeof DEFAULT_LIMITS, number>} Limits */
/** @typedef {"native" | "packed"} F16Spelling */
/** @typedef {"webgpu" | "wasm"} Backend */
/** @typedef {{ device?: GPUDevice, maxBatch?: number, f16?: F16Spelling, backend?: Backend }} LoadOptions */
/** @typedef {(typeof PLAN)["kernels"][number]} PlanKernel */
/** @typedef {HTMLImageElement | ImageBitmap | HTMLCanvasElement | OffscreenCanvas | ImageData} ImageSource */
/** @typedef {{ class: number, name: string, prob: number }} Prediction */
/** @typedef {{ pipeline: GPUComputePipeline, layout: GPUBindGroupLayout }} Pipeline */
/** @typedef {{ device: GPUDevice, adapterLabel: string, owns: boolean, chunk: number, spelling: F16Spelling | null, pipelines: Map<string, Pipeline>, shaderOf: (k: PlanKernel) => string }} OpenGpu */
/** @typedef {{ weights: number, device: number, shaders: number, pipelines: number, upload: number, total: number }} LoadPhases */

const MIB = 1024 * 1024;

/**
 * @param {string} message
 * @returns {Error}
 */
function fail(message) {
  return new Error(`effc model \`${PLAN.name}\`: ${message}`);
}

// A byte count as effc-runtime prints it (`fit::Bytes`): `512 B`, `4.9 MiB`,
// `2.4 GiB` (powers of 1024, one decimal; Rust's `{:.1}` rounds an exact tie to
// even).
/** @param {number} bytes */
function mib(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u + 1 < units.length) {
    v /= 1024;
    u += 1;
  }
  if (u === 0) return `${bytes} B`;
  const tenths = v * 10;
  let n = Math.round(tenths);
  if (tenths % 1 === 0.5 && n % 2 !== 0) n -= 1;
  return `${(n / 10).toFixed(1)} ${units[u]}`;
}

// Reads `weights.bin`: magic, version, JSON header, then each kernel's weights as
// stored on the GPU (f32, or f16 halves). Refuses a file made for another model or
// another plan. Returns one byte view per kernel.
/**
 * @param {ArrayBuffer} buffer
 * @returns {Uint8Array<ArrayBuffer>[]}
 */
export function parseWeights(buffer) {
  const bytes = new Uint8Array(buffer);
  const magic = [0x45, 0x46, 0x46, 0x43, 0x57, 0x45, 0x42, 0x00]; // "EFFCWEB\0"
  if (bytes.length < 16 || magic.some((b, i) => bytes[i] !== b)) {
    throw fail("the weights file is not an effc weights.bin (wrong magic bytes)");
  }
  const view = new DataView(buffer);
  const version = view.getUint32(8, true);
  if (version !== PLAN.weightsVersion) {
    throw fail(`the weights file has layout version ${version}, this model.js reads ${PLAN.weightsVersion}`);
  }
  const hlen = view.getUint32(12, true);
  if (16 + hlen > bytes.length) throw fail("the weights file is truncated (in its header)");
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(16, 16 + hlen)));
  if (header.model !== PLAN.name || header.fingerprint !== PLAN.fingerprint) {
    throw fail(
      `the weights file is for model \`${header.model}\` (plan ${header.fingerprint}), ` +
        `this model.js is \`${PLAN.name}\` (plan ${PLAN.fingerprint}); compile them together`
    );
  }
  const start = Math.ceil((16 + hlen) / 4) * 4;
  const stored = bytes.length - start;
  if (stored !== PLAN.weightBytes) {
    throw fail(`the weights file holds ${stored} bytes of weights, the plan needs ${PLAN.weightBytes}`);
  }
  const data = bytes.subarray(start);
  return PLAN.kernels.map((k, i) => {
    const e = header.kernels[i];
    if (!e || e.name !== k.name || e.bytes !== k.weightBytes || e.offset + e.bytes > stored) {
      throw fail(`the weights file's kernel #${i} is not \`${k.name}\``);
    }
    return data.subarray(e.offset, e.offset + e.bytes);
  });
}

// The WebGPU defaults of the limits a plan can exceed: a device gets these unless
// more are requested.
const DEFAULT_LIMITS = {
  maxStorageBufferBindingSize: 128 * MIB,
  maxBufferSize: 256 * MIB,
  maxStorageBuffersPerShaderStage: 8,
  maxComputeWorkgroupsPerDimension: 65535,
  maxComputeWorkgroupSizeX: 256,
  maxComputeWorkgroupSizeY: 256,
  maxComputeWorkgroupSizeZ: 64,
  maxComputeInvocationsPerWorkgroup: 256,
};

// What the plan needs of each limit to run `maxBatch` images in as few chunks as
// the adapter allows, from the plan's own statement of its needs (PLAN.needs).
/**
 * @param {number} maxBatch
 * @returns {Limits}
 */
function needs(maxBatch) {
  const n = PLAN.needs;
  const binding = Math.max(n.activationPerImage.value * maxBatch, n.weightsBinding.value);
  const batchBuffer = Math.max(n.inputPerImage, n.outputPerImage) * maxBatch;
  return {
    maxStorageBufferBindingSize: binding,
    maxBufferSize: Math.max(binding, batchBuffer),
    maxStorageBuffersPerShaderStage: n.storageBuffers.value,
    maxComputeWorkgroupsPerDimension: Math.max(maxBatch, n.workgroups.value),
    maxComputeWorkgroupSizeX: n.workgroupSize[0].value,
    maxComputeWorkgroupSizeY: n.workgroupSize[1].value,
    maxComputeWorkgroupSizeZ: n.workgroupSize[2].value,
    maxComputeInvocationsPerWorkgroup: n.invocations.value,
  };
}

// The limits to request: the adapter's own value of each limit the plan needs more
// of than the WebGPU default (as the native runtime, which requests all of them);
// the defaults otherwise.
/**
 * @param {Limits} adapterLimits
 * @param {number} maxBatch
 * @returns {Record<string, number>}
 */
export function requiredLimits(adapterLimits, maxBatch) {
  const need = needs(maxBatch);
  /** @type {Record<string, number>} */
  const req = {};
  for (const [name, def] of Object.entries(DEFAULT_LIMITS)) {
    const key = /** @type {keyof Limits} */ (name);
    if (need[key] > def && adapterLimits[key] > def) req[key] = adapterLimits[key];
  }
  return req;
}

// effc-runtime's `fit()` (crates/effc-runtime/src/fit.rs), rule for rule: checks
// every kernel and buffer of the plan against `limits` (a GPUSupportedLimits or a
// plain object with the same keys) and returns the images per chunk. The first
// limit exceeded is the error.
/**
 * @param {Limits} limits
 * @param {number} maxBatch
 * @returns {number}
 */
export function fit(limits, maxBatch) {
  if (!Number.isInteger(maxBatch) || maxBatch < 1) throw fail(`maxBatch must be a positive integer, not ${maxBatch}`);
  const tooSmall = (/** @type {string} */ what) => fail(`the adapter's limits are too small: ${what}`);
  const maxBinding = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  const maxWg = limits.maxComputeWorkgroupsPerDimension;
  const maxSize = [limits.maxComputeWorkgroupSizeX, limits.maxComputeWorkgroupSizeY, limits.maxComputeWorkgroupSizeZ];
  // The plan states what it needs (PLAN.needs: the largest of each quantity and
  // what needs it); here only numbers are compared, as effc_runtime::fit does.
  const n = PLAN.needs;
  if (n.weightsBinding.value > maxBinding) {
    throw tooSmall(`the weights of kernel \`${n.weightsBinding.by}\` take ${mib(n.weightsBinding.value)}, more than the adapter's largest storage binding (${mib(maxBinding)})`);
  }
  if (n.storageBuffers.value > limits.maxStorageBuffersPerShaderStage) {
    throw tooSmall(`kernel \`${n.storageBuffers.by}\` binds ${n.storageBuffers.value} storage buffers, the adapter allows ${limits.maxStorageBuffersPerShaderStage}`);
  }
  if (n.workgroups.value > maxWg) {
    throw tooSmall(`kernel \`${n.workgroups.by}\` needs ${n.workgroups.value} workgroups in one dimension, the adapter allows ${maxWg} per dimension`);
  }
  const d = [0, 1, 2].find((i) => n.workgroupSize[i].value > maxSize[i]);
  if (d !== undefined) {
    throw tooSmall(`kernel \`${n.workgroupSize[d].by}\` has workgroups of ${n.workgroupSize[d].value} invocations in ${"xyz"[d]}, the adapter allows ${maxSize.join("x")}`);
  }
  if (n.invocations.value > limits.maxComputeInvocationsPerWorkgroup) {
    throw tooSmall(`kernel \`${n.invocations.by}\` uses ${n.invocations.value} invocations per workgroup, the adapter allows ${limits.maxComputeInvocationsPerWorkgroup}`);
  }
  const perImage = n.activationPerImage.value;
  if (perImage > maxBinding) {
    throw tooSmall(`activation \`${n.activationPerImage.by}\` takes ${mib(perImage)} for one image, more than the adapter's largest storage binding (${mib(maxBinding)}); use a smaller resolution`);
  }
  const chunk = Math.max(1, Math.min(Math.floor(maxBinding / perImage), maxBatch, maxWg));
  /** @type {[string, number][]} */
  const io = [["input", n.inputPerImage], ["output", n.outputPerImage]];
  for (const [which, per] of io) {
    const bytes = Math.ceil((per * maxBatch) / 4) * 4;
    if (bytes > limits.maxBufferSize) {
      const fits = Math.floor(limits.maxBufferSize / Math.max(per, 1));
      throw tooSmall(`the ${which} of a batch of ${maxBatch} images takes ${mib(bytes)}, more than the adapter's largest buffer (${mib(limits.maxBufferSize)}); a max batch of ${fits} fits`);
    }
  }
  return chunk;
}

/** @param {GPUAdapterInfo | undefined} info */
function adapterName(info) {
  if (!info) return "unknown adapter";
  const parts = [info.vendor, info.architecture, info.device, info.description].filter((s) => s);
  return parts.length ? [...new Set(parts)].join(" ") : "unknown adapter";
}

// How f16 storage is spelled on `features` (an adapter's or a device's): `native`
// (`enable f16;`) where it has `shader-f16`, else `packed` (halves in u32s, core
// WGSL); `forced` (options.f16) chooses, if the device allows it. Null at f32.
/**
 * @param {GPUSupportedFeatures | undefined} features
 * @param {string | undefined} forced
 * @returns {F16Spelling | null}
 */
export function f16Spelling(features, forced) {
  if (PLAN.precision !== "f16") return null;
  const native = !!features && features.has("shader-f16");
  if (forced === "packed") return "packed";
  if (forced === "native") {
    if (!native) throw fail("options.f16 is `native` but the GPU has no shader-f16 feature (try `packed`)");
    return "native";
  }
  if (forced !== undefined) throw fail(`options.f16 must be "native" or "packed", not ${forced}`);
  return native ? "native" : "packed";
}

// f32 to IEEE half bits, round to nearest even, beyond ±65504 clamped (not
// infinite): effc_plan::precision::encode's rule.
const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);
/**
 * @param {number} v
 * @returns {number}
 */
export function toHalf(v) {
  f32Scratch[0] = v > 65504 ? 65504 : v < -65504 ? -65504 : v;
  const x = u32Scratch[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7e00; // NaN
  const e = exp - 112; // rebias 127 -> 15
  if (e <= 0) {
    // A subnormal half (or zero): the value in units of 2^-24.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && h & 1)) h += 1;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && h & 1)) h += 1;
  return sign | h;
}

// Loads the model: `weights` a URL (default `./weights.bin` beside this file), an
// `ArrayBuffer` or a `Response`; `options.device` a `GPUDevice` to share (its limits
// must fit the model), `options.maxBatch` the largest batch a forward takes;
// `options.f16` (`"native"` or `"packed"`) forces how an f16 model's shaders are
// spelled; `options.backend`: `"webgpu"` only, or `"wasm"` (effc's CPU backend in
// WebAssembly, `effc-cpu.wasm`); by default WebGPU, and the wasm backend where the
// browser has no WebGPU or no adapter (`model.info.backend` says which runs).
/**
 * @param {string | URL | ArrayBuffer | Response} [weights]
 * @param {LoadOptions} [options]
 * @returns {Promise<Model | WasmModel>}
 */
export async function load(weights = new URL("./weights.bin", import.meta.url), options = {}) {
  const maxBatch = options.maxBatch ?? PLAN.maxBatch;
  if (!Number.isInteger(maxBatch) || maxBatch < 1) throw fail(`options.maxBatch must be a positive integer, not ${maxBatch}`);
  const backend = options.backend;
  if (backend !== undefined && backend !== "webgpu" && backend !== "wasm") {
    throw fail(`options.backend must be "webgpu" or "wasm", not ${backend}`);
  }
  const t0 = performance.now();
  /** @type {LoadPhases} */
  const phases = { weights: 0, device: 0, shaders: 0, pipelines: 0, upload: 0, total: 0 };
  // The weights download (and are checked) while the device opens and the pipelines
  // compile; a wrong weights file is still the error reported when both fail.
  const gotWeights = fetchWeights(weights).then((w) => {
    phases.weights = performance.now() - t0;
    return w;
  });
  if (backend === "wasm") {
    const { buffer } = await gotWeights;
    return loadWasm(buffer, maxBatch, "asked for (options.backend)");
  }
  const gotGpu = openGpu(options, maxBatch, phases, t0);
  const [w, g] = await Promise.allSettled([gotWeights, gotGpu]);
  if (w.status === "rejected") {
    if (g.status === "fulfilled" && "device" in g.value && g.value.owns) g.value.device.destroy();
    throw w.reason;
  }
  if (g.status === "rejected") throw g.reason;
  const { buffer, packed } = w.value;
  if (!("device" in g.value)) return fallBack(backend, buffer, maxBatch, g.value.missing, g.value.hint);
  const { device, adapterLabel, owns, chunk, spelling, pipelines, shaderOf } = g.value;
  const u0 = performance.now();
  const model = new Model(device, adapterLabel, packed, pipelines, shaderOf, spelling, maxBatch, chunk, owns);
  try {
    await model.ready;
    await device.queue.onSubmittedWorkDone();
  } catch (e) {
    model.destroy();
    throw e;
  }
  phases.upload = performance.now() - u0;
  phases.total = performance.now() - t0;
  model.info.load = phases;
  return model;
}

// The weights of `load`: fetched (or given), and checked and split per kernel.
/**
 * @param {string | URL | ArrayBuffer | Response} weights
 * @returns {Promise<{ buffer: ArrayBuffer, packed: Uint8Array<ArrayBuffer>[] }>}
 */
async function fetchWeights(weights) {
  let buffer;
  if (weights instanceof ArrayBuffer) buffer = weights;
  else {
    let response;
    try {
      response = weights instanceof Response ? weights : await fetch(weights);
    } catch (e) {
      throw fail(`cannot fetch the weights ${weights}: ${/** @type {Error} */ (e).message}`);
    }
    if (!response.ok) throw fail(`cannot fetch the weights ${response.url || weights}: HTTP ${response.status}`);
    buffer = await response.arrayBuffer();
  }
  return { buffer, packed: parseWeights(buffer) };
}

// The GPU side of `load`: the device (the shared one, or one of the first adapter,
// checked against the plan's needs), the shaders and their pipelines, each phase's
// time (from `t0`) written into `phases`; `{ missing, hint }` where the browser has
// no WebGPU or no adapter (the wasm backend may run instead).
/**
 * @param {LoadOptions} options
 * @param {number} maxBatch
 * @param {LoadPhases} phases
 * @param {number} t0
 * @returns {Promise<{ missing: string, hint: string } | OpenGpu>}
 */
async function openGpu(options, maxBatch, phases, t0) {
  let device = options.device;
  let adapterLabel = "a shared GPUDevice";
  if (!device) {
    if (typeof navigator === "undefined" || !navigator.gpu) {
      return { missing: "this browser has no WebGPU (navigator.gpu is missing)", hint: ": use a recent Chrome or Edge, Safari 26, or Firefox 141+ on Windows, served over https or from localhost" };
    }
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return { missing: "this browser has WebGPU but offers no GPU adapter", hint: " (disabled, or the GPU is blocklisted)" };
    adapterLabel = adapterName(adapter.info);
    // The adapter's limits are checked first, so that what is missing is named.
    fit(adapter.limits, maxBatch);
    const spelling = f16Spelling(adapter.features, options.f16);
    device = await adapter.requestDevice({
      requiredLimits: requiredLimits(adapter.limits, maxBatch),
      requiredFeatures: spelling === "native" ? ["shader-f16"] : [],
    });
  }
  const owns = !options.device;
  try {
    const chunk = fit(device.limits, maxBatch);
    const spelling = f16Spelling(device.features, options.f16);
    phases.device = performance.now() - t0;
    // At f32 `shaderPacked` is null, and then `spelling` is too.
    const shaderOf = (/** @type {PlanKernel} */ k) => /** @type {string} */ (spelling === "packed" ? k.shaderPacked : k.shader);
    const s0 = performance.now();
    const sources = new Map();
    await Promise.all(
      [...new Set(PLAN.kernels.map(shaderOf))].map(async (file) => {
        const r = await fetch(new URL(file, import.meta.url));
        if (!r.ok) throw fail(`cannot fetch shader ${file}: HTTP ${r.status}`);
        sources.set(file, await r.text());
      })
    );
    phases.shaders = performance.now() - s0;
    const p0 = performance.now();
    const pipelines = await compilePipelines(device, sources, shaderOf);
    phases.pipelines = performance.now() - p0;
    return { device, adapterLabel, owns, chunk, spelling, pipelines, shaderOf };
  } catch (e) {
    if (owns) device.destroy();
    throw e;
  }
}

// One pipeline per distinct shader text (kernels of the same shape share one), all
// compiled at once with `createComputePipelineAsync`; keyed by shader file.
/**
 * @param {GPUDevice} device
 * @param {Map<string, string>} sources
 * @param {(k: PlanKernel) => string} shaderOf
 * @returns {Promise<Map<string, Pipeline>>}
 */
async function compilePipelines(device, sources, shaderOf) {
  /** @type {Map<string, Promise<Pipeline>>} */
  const bySource = new Map();
  /** @type {Map<string, Promise<Pipeline>>} */
  const byFile = new Map();
  for (const k of PLAN.kernels) {
    const file = shaderOf(k);
    const source = /** @type {string} */ (sources.get(file));
    let pending = bySource.get(source);
    if (!pending) {
      pending = compilePipeline(device, k, source);
      bySource.set(source, pending);
    }
    byFile.set(file, pending);
  }
  const files = [...byFile.keys()];
  const done = await Promise.all(byFile.values());
  return new Map(files.map((f, i) => [f, done[i]]));
}

/**
 * @param {GPUDevice} device
 * @param {PlanKernel} k
 * @param {string} source
 * @returns {Promise<Pipeline>}
 */
async function compilePipeline(device, k, source) {
  const layout = device.createBindGroupLayout({
    label: k.name,
    entries: k.bindings.map((b, j) => ({
      binding: j,
      visibility: GPUShaderStage.COMPUTE,
      buffer: { type: b.write ? "storage" : "read-only-storage" },
    })),
  });
  try {
    const pipeline = await device.createComputePipelineAsync({
      label: k.name,
      layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module: device.createShaderModule({ label: k.name, code: source }), entryPoint: "main" },
    });
    return { pipeline, layout };
  } catch (e) {
    throw fail(`creating its pipelines failed at kernel ${k.name}: ${/** @type {Error} */ (e).message}`);
  }
}

// What `model.info` says of the plan itself, whichever backend runs it.
function planInfo() {
  return {
    name: PLAN.name,
    resolution: PLAN.resolution,
    inputShape: PLAN.inputShape,
    classes: PLAN.classes,
    outputLen: PLAN.outputLen,
    parameters: PLAN.parameters,
    macs: PLAN.macs,
    kernels: PLAN.kernels.length,
  };
}

// `out`, refused when a value is not finite (a forward of either backend).
/**
 * @param {Float32Array} out
 * @returns {Float32Array}
 */
function finite(out) {
  for (let i = 0; i < out.length; i++) {
    if (!Number.isFinite(out[i])) throw fail(`the output has a NaN or infinite value (at ${i}): the weights or the input overflow`);
  }
  return out;
}

export class Model {
  /**
   * @param {GPUDevice} device
   * @param {string} adapter
   * @param {Uint8Array<ArrayBuffer>[]} packed
   * @param {Map<string, Pipeline>} pipelines
   * @param {(k: PlanKernel) => string} shaderOf
   * @param {F16Spelling | null} spelling
   * @param {number} maxBatch
   * @param {number} chunk
   * @param {boolean} ownsDevice
   */
  constructor(device, adapter, packed, pipelines, shaderOf, spelling, maxBatch, chunk, ownsDevice) {
    this.device = device;
    this.maxBatch = maxBatch;
    this.chunk = chunk;
    this.ownsDevice = ownsDevice;
    const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
    device.pushErrorScope("validation");
    device.pushErrorScope("out-of-memory");
    /** @type {GPUBuffer[]} */
    this.buffers = [];
    /** @type {(size: number, usage: number, label: string) => GPUBuffer} */
    const make = (size, usage, label) => {
      const b = device.createBuffer({ size: Math.max(16, Math.ceil(size / 4) * 4), usage, label });
      this.buffers.push(b);
      return b;
    };
    this.slots = PLAN.slots.map((bytes, i) => make(bytes * chunk, STORAGE, `activations #${i}`));
    this.inputAll = make(PLAN.input.bytes * maxBatch, GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST, "input batch");
    this.outputAll = make(PLAN.output.bytes * maxBatch, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, "output batch");
    this.steps = PLAN.kernels.map((k, i) => {
      const w = make(k.weightBytes, STORAGE, `${k.name} weights`);
      device.queue.writeBuffer(w, 0, packed[i]);
      const entry = /** @type {Pipeline} */ (pipelines.get(shaderOf(k)));
      const bindGroup = device.createBindGroup({
        label: k.name,
        layout: entry.layout,
        entries: k.bindings.map((b, j) => ({ binding: j, resource: { buffer: b.weights ? w : this.slots[/** @type {number} */ (b.slot)] } })),
      });
      return { kernel: k, pipeline: entry.pipeline, bindGroup };
    });
    this.ready = Promise.all([device.popErrorScope(), device.popErrorScope()]).then(([oom, val]) => {
      if (oom) throw fail(`out of GPU memory while creating its buffers (weights ${mib(PLAN.weightBytes)}): ${oom.message}`);
      if (val) throw fail(`creating its buffers and bind groups failed: ${val.message}`);
    });
    this.info = {
      ...planInfo(),
      adapter,
      maxBatch,
      chunk,
      precision: spelling ? `f16 (${spelling})` : "f32",
      weightBytes: PLAN.weightBytes,
      fingerprint: PLAN.fingerprint,
      /** How long `load` took, in milliseconds: each phase (the weights' download and
       * check overlap the device, shaders and pipelines) and the total. */
      load: /** @type {LoadPhases | null} */ (null),
      backend: "webgpu",
    };
    /** @type {Promise<unknown>} */
    this.busy = Promise.resolve();
    /** The time of the last `classify`'s forward alone, in milliseconds. */
    this.lastForwardMs = 0;
  }

  // Runs `batch` images, `input` NCHW f32 normalized (batch × 3 × R × R); resolves
  // to `batch × outputLen` values (logits, or the embedding when classes = 0).
  // Forwards run one after another.
  /**
   * @param {Float32Array} input
   * @param {number} [batch]
   * @returns {Promise<Float32Array>}
   */
  forward(input, batch = 1) {
    const run = this.busy.then(() => this.#forward(input, batch));
    this.busy = run.catch(() => {});
    return run;
  }

  /**
   * @param {Float32Array} input
   * @param {number} batch
   * @returns {Promise<Float32Array>}
   */
  async #forward(input, batch) {
    if (!this.buffers.length) throw fail("the model was destroyed");
    const [c, h, w] = PLAN.inputShape;
    checkInput(input, batch, this.maxBatch);
    // NCHW to the plan's NHWC with channels padded to a multiple of 4 (zeros).
    // At f16 the input is stored as halves too.
    const c4 = PLAN.inputC4 * 4;
    const per = h * w * c4;
    const half = PLAN.precision === "f16";
    const nhwc = half ? new Uint16Array(batch * per) : new Float32Array(batch * per);
    for (let n = 0; n < batch; n++) {
      for (let ch = 0; ch < c; ch++) {
        const src = (n * c + ch) * h * w;
        const dst = n * per + ch;
        if (half) for (let p = 0; p < h * w; p++) nhwc[dst + p * c4] = toHalf(input[src + p]);
        else for (let p = 0; p < h * w; p++) nhwc[dst + p * c4] = input[src + p];
      }
    }
    const { device } = this;
    device.pushErrorScope("validation");
    device.queue.writeBuffer(this.inputAll, 0, nhwc);
    // Chunk by chunk, as effc-runtime's encode_batch: copy the chunk's input in,
    // every dispatch (z = images), copy its output out.
    const enc = device.createCommandEncoder({ label: "effc forward" });
    const inSlot = this.slots[PLAN.input.slot];
    const outSlot = this.slots[PLAN.output.slot];
    for (let start = 0; start < batch; ) {
      const n = Math.min(this.chunk, batch - start);
      enc.copyBufferToBuffer(this.inputAll, start * PLAN.input.bytes, inSlot, 0, n * PLAN.input.bytes);
      const pass = enc.beginComputePass({ label: "effc" });
      for (const s of this.steps) {
        pass.setPipeline(s.pipeline);
        pass.setBindGroup(0, s.bindGroup);
        pass.dispatchWorkgroups(s.kernel.grid[0], s.kernel.grid[1], n);
      }
      pass.end();
      enc.copyBufferToBuffer(outSlot, 0, this.outputAll, start * PLAN.output.bytes, n * PLAN.output.bytes);
      start += n;
    }
    device.queue.submit([enc.finish()]);
    const err = await device.popErrorScope();
    if (err) throw fail(`running the model failed: ${err.message}`);
    const bytes = batch * PLAN.outputLen * 4;
    await this.outputAll.mapAsync(GPUMapMode.READ, 0, bytes);
    const out = new Float32Array(this.outputAll.getMappedRange(0, bytes).slice(0));
    this.outputAll.unmap();
    return finite(out);
  }

  // Preprocesses an image as effc does natively: see `preprocessImage`.
  /**
   * @param {ImageSource} source
   * @returns {Promise<Float32Array>}
   */
  preprocess(source) {
    return preprocessImage(source);
  }

  // The top `k` classes of an image: see `classifyWith`.
  /**
   * @param {ImageSource} source
   * @param {number} [k]
   * @returns {Promise<Prediction[]>}
   */
  classify(source, k = 5) {
    return classifyWith(this, source, k);
  }

  // Frees the GPU buffers (and the device when `load` created it).
  destroy() {
    for (const b of this.buffers) b.destroy();
    this.buffers = [];
    if (this.ownsDevice) this.device.destroy();
  }
}

// Preprocesses an image as effc does natively (effc-weights' input.rs): the
// shorter side resized to resolution / 0.875 with Pillow's bicubic filter (the
// same fixed-point arithmetic, so the same bytes as native for the same decoded
// pixels), centre crop, x / 255, (x − mean) / std. Resolves to CHW f32 of one image.
/**
 * @param {ImageSource} source
 * @returns {Promise<Float32Array>}
 */
async function preprocessImage(source) {
  const { rgba, width, height } = await pixels(source);
  const R = PLAN.resolution;
  // As timm computes it: Python's round(), half to even.
  const scale = R / PLAN.crop / Math.min(width, height);
  const nw = Math.max(R, roundHalfEven(width * scale));
  const nh = Math.max(R, roundHalfEven(height * scale));
  const bytes = resizeCrop(rgba, width, height, nw, nh, Math.floor((nw - R) / 2), Math.floor((nh - R) / 2), R);
  const out = new Float32Array(3 * R * R);
  for (let ch = 0; ch < 3; ch++) {
    const m = Math.fround(PLAN.mean[ch]);
    const s = Math.fround(PLAN.std[ch]);
    // f32 arithmetic step by step, as native (double rounding is exact for these).
    for (let i = 0; i < R * R; i++) out[ch * R * R + i] = Math.fround(Math.fround(Math.fround(bytes[i * 3 + ch] / 255) - m) / s);
  }
  return out;
}

// The top `k` classes of an image (an HTMLImageElement, ImageBitmap,
// HTMLCanvasElement, OffscreenCanvas or ImageData) on `model` (either backend):
// `[{ class, name, prob }]`, most probable first. `model.lastForwardMs` is then
// the time of the forward alone.
/**
 * @param {Model | WasmModel} model
 * @param {ImageSource} source
 * @param {number} k
 * @returns {Promise<Prediction[]>}
 */
async function classifyWith(model, source, k) {
  if (PLAN.classes === 0) throw fail("the model has no classifier (classes = 0); forward gives its embedding");
  const input = await preprocessImage(source);
  const t0 = performance.now();
  const logits = await model.forward(input, 1);
  model.lastForwardMs = performance.now() - t0;
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const exp = Array.from(logits, (v) => Math.exp(v - max));
  const sum = exp.reduce((a, b) => a + b, 0);
  return exp
    .map((e, i) => ({ class: i, name: PLAN.classNames[i] ?? `class ${i}`, prob: e / sum }))
    .sort((a, b) => b.prob - a.prob)
    .slice(0, k);
}

// The same checks of a forward's arguments on both backends.
/**
 * @param {Float32Array} input
 * @param {number} batch
 * @param {number} maxBatch
 */
function checkInput(input, batch, maxBatch) {
  const [c, h, w] = PLAN.inputShape;
  if (!Number.isInteger(batch) || batch < 1) throw fail(`batch must be a positive integer, not ${batch}`);
  if (batch > maxBatch) throw fail(`batch ${batch} is more than the model's maxBatch ${maxBatch} (load(weights, { maxBatch }))`);
  if (!(input instanceof Float32Array)) throw fail("forward takes a Float32Array (NCHW)");
  if (input.length !== batch * c * h * w) {
    throw fail(`input has ${input.length} values, a batch of ${batch} × ${c}×${h}×${w} needs ${batch * c * h * w}`);
  }
}

// Where WebGPU is missing (`why`): the wasm backend, unless `options.backend` asked
// for WebGPU (then the error, with `hint`).
/**
 * @param {Backend | undefined} backend
 * @param {ArrayBuffer} buffer
 * @param {number} maxBatch
 * @param {string} why
 * @param {string} hint
 * @returns {Promise<WasmModel>}
 */
async function fallBack(backend, buffer, maxBatch, why, hint) {
  if (backend === "webgpu") throw fail(`${why}${hint}`);
  try {
    return await loadWasm(buffer, maxBatch, why);
  } catch (e) {
    // The inner message already names the model.
    const prefix = `effc model \`${PLAN.name}\`: `;
    const m = /** @type {Error} */ (e).message;
    throw fail(`${why}, and the WebAssembly CPU backend cannot run it either: ${m.startsWith(prefix) ? m.slice(prefix.length) : m}`);
  }
}

// The exports of `effc-cpu.wasm` (crates/effc-wasm: a C ABI over effc-cpu).
/**
 * @typedef {{
 *   memory: WebAssembly.Memory,
 *   effc_alloc(len: number): number,
 *   effc_free(ptr: number, len: number): void,
 *   effc_create(plan: number, planLen: number, weights: number, weightsLen: number, maxBatch: number): number,
 *   effc_destroy(session: number): void,
 *   effc_input(session: number): number,
 *   effc_forward(session: number, batch: number): number,
 *   effc_output(session: number): number,
 *   effc_output_len(session: number): number,
 *   effc_info(session: number): number,
 *   effc_message_ptr(): number,
 *   effc_message_len(): number,
 * }} WasmExports
 */

/**
 * @param {string} file
 * @returns {Promise<ArrayBuffer>}
 */
async function fetchBeside(file) {
  let r;
  try {
    r = await fetch(new URL(file, import.meta.url));
  } catch (e) {
    throw fail(`cannot fetch ${file}: ${/** @type {Error} */ (e).message}`);
  }
  if (!r.ok) throw fail(`cannot fetch ${file}: HTTP ${r.status}`);
  return r.arrayBuffer();
}

// The module's last error message.
/** @param {WasmExports} x */
function wasmMessage(x) {
  return new TextDecoder().decode(new Uint8Array(x.memory.buffer, x.effc_message_ptr(), x.effc_message_len()));
}

// effc's CPU backend in WebAssembly (`effc-cpu.wasm` and `plan.json` beside this
// file) over the weights in `buffer` (already checked by parseWeights).
/**
 * @param {ArrayBuffer} buffer
 * @param {number} maxBatch
 * @param {string} why
 * @returns {Promise<WasmModel>}
 */
async function loadWasm(buffer, maxBatch, why) {
  if (typeof WebAssembly === "undefined") throw fail("this browser has no WebAssembly");
  const [c, h, w] = PLAN.inputShape;
  // wasm32 addresses 4 GiB: a larger batch buffer could not exist (and its size
  // would wrap in the module's 32-bit arguments).
  if (maxBatch * c * h * w * 4 >= 2 ** 32) throw fail(`maxBatch ${maxBatch} needs more than the 4 GiB a WebAssembly module can address; use a smaller maxBatch`);
  const [module, plan] = await Promise.all([fetchBeside("effc-cpu.wasm"), fetchBeside("plan.json")]);
  let instance;
  try {
    ({ instance } = await WebAssembly.instantiate(module, {}));
  } catch (e) {
    throw fail(`cannot start effc-cpu.wasm (${/** @type {Error} */ (e).message}); it needs WebAssembly SIMD (Chrome 91+, Firefox 89+, Safari 16.4+)`);
  }
  const x = /** @type {WasmExports} */ (/** @type {unknown} */ (instance.exports));
  const message = () => wasmMessage(x);
  /** @param {ArrayBuffer} b */
  const copyIn = (b) => {
    const p = x.effc_alloc(b.byteLength);
    if (!p) throw fail(`effc-cpu.wasm: ${message()}`);
    new Uint8Array(x.memory.buffer, p, b.byteLength).set(new Uint8Array(b));
    return p;
  };
  const planPtr = copyIn(plan);
  const weightsPtr = copyIn(buffer);
  const session = x.effc_create(planPtr, plan.byteLength, weightsPtr, buffer.byteLength, maxBatch);
  x.effc_free(planPtr, plan.byteLength);
  x.effc_free(weightsPtr, buffer.byteLength);
  if (!session) throw fail(message());
  x.effc_info(session);
  return new WasmModel(x, session, maxBatch, JSON.parse(message()), why);
}

// A model on effc's CPU backend in WebAssembly: the same API as `Model` (forward,
// preprocess, classify, destroy, info, lastForwardMs).
export class WasmModel {
  /**
   * @param {WasmExports} exports
   * @param {number} session
   * @param {number} maxBatch
   * @param {{ isa: string, threads: number }} cpu
   * @param {string} why
   */
  constructor(exports, session, maxBatch, cpu, why) {
    this.exports = exports;
    this.session = session;
    this.maxBatch = maxBatch;
    this.info = {
      ...planInfo(),
      adapter: `WebAssembly CPU (${cpu.isa}, ${cpu.threads} thread${cpu.threads === 1 ? "" : "s"})`,
      maxBatch,
      chunk: maxBatch,
      precision: "f32",
      weightBytes: PLAN.weightBytes,
      fingerprint: PLAN.fingerprint,
      load: /** @type {LoadPhases | null} */ (null),
      backend: "wasm",
      cpu,
      fallback: why,
    };
    /** The time of the last `classify`'s forward alone, in milliseconds. */
    this.lastForwardMs = 0;
  }

  // Runs `batch` images, `input` NCHW f32 normalized; resolves to `batch ×
  // outputLen` values, as `Model.forward`.
  /**
   * @param {Float32Array} input
   * @param {number} [batch]
   * @returns {Promise<Float32Array>}
   */
  async forward(input, batch = 1) {
    const x = this.exports;
    if (!this.session) throw fail("the model was destroyed");
    checkInput(input, batch, this.maxBatch);
    new Float32Array(x.memory.buffer, x.effc_input(this.session), input.length).set(input);
    if (x.effc_forward(this.session, batch) !== 0) {
      throw fail(`running the model failed: ${wasmMessage(x)}`);
    }
    const n = batch * x.effc_output_len(this.session);
    const out = new Float32Array(x.memory.buffer, x.effc_output(this.session), n).slice();
    return finite(out);
  }

  /**
   * @param {ImageSource} source
   * @returns {Promise<Float32Array>}
   */
  preprocess(source) {
    return preprocessImage(source);
  }

  /**
   * @param {ImageSource} source
   * @param {number} [k]
   * @returns {Promise<Prediction[]>}
   */
  classify(source, k = 5) {
    return classifyWith(this, source, k);
  }

  // Frees the model's memory in the module.
  destroy() {
    if (this.session) this.exports.effc_destroy(this.session);
    this.session = 0;
  }
}

// The RGBA bytes of an image as decoded, without colour-space conversion or
// premultiplied alpha (the alpha channel is then dropped, as native `to_rgb8`).
/**
 * @param {ImageSource} source
 * @returns {Promise<{ rgba: Uint8ClampedArray, width: number, height: number }>}
 */
async function pixels(source) {
  if (typeof ImageData !== "undefined" && source instanceof ImageData) {
    return { rgba: source.data, width: source.width, height: source.height };
  }
  if (typeof HTMLImageElement !== "undefined" && source instanceof HTMLImageElement) await source.decode();
  let bitmap;
  try {
    bitmap = await createImageBitmap(source, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  } catch (e) {
    throw fail(`cannot read the image's pixels (${/** @type {Error} */ (e).message}); classify takes an HTMLImageElement, ImageBitmap, HTMLCanvasElement, OffscreenCanvas or ImageData`);
  }
  const { width, height } = bitmap;
  if (!width || !height) throw fail("the image has no pixels");
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  if (!ctx) throw fail("the browser gives no 2D canvas context to read the image's pixels");
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  return { rgba: ctx.getImageData(0, 0, width, height).data, width, height };
}

/** @param {number} x */
function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// Pillow's fixed-point precision for 8-bit images: 32 − 8 − 2.
const PRECISION_BITS = 22;

// Pillow's bicubic kernel, a = −0.5.
/** @param {number} x */
function bicubic(x) {
  const A = -0.5;
  x = Math.abs(x);
  if (x < 1) return ((A + 2) * x - (A + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * A;
  return 0;
}

// Pillow's precompute_coeffs + normalize_coeffs_8bpc, for output indices
// from..from + count (a port of effc-weights' `taps`).
/**
 * @param {number} inSize
 * @param {number} outSize
 * @param {number} from
 * @param {number} count
 * @returns {{ first: number, weights: number[] }[]}
 */
function taps(inSize, outSize, from, count) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 2 * filterscale;
  const out = [];
  for (let xx = from; xx < from + count; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5));
    const k = [];
    for (let x = xmin; x < Math.max(xmax, xmin); x++) k.push(bicubic((x - center + 0.5) * ss));
    const ww = k.reduce((a, b) => a + b, 0);
    const weights = k.map((v) => {
      v = ww !== 0 ? v / ww : v;
      const f = v * 2 ** PRECISION_BITS;
      return Math.trunc(v < 0 ? f - 0.5 : f + 0.5);
    });
    out.push({ first: xmin, weights });
  }
  return out;
}

/** @param {number} v */
function clip8(v) {
  if (v >= 2 ** (PRECISION_BITS + 8)) return 255;
  if (v <= 0) return 0;
  return Math.floor(v / 2 ** PRECISION_BITS);
}

// Resizes RGBA `src` (w × h) to nw × nh and returns the size × size window at
// (left, top), HWC RGB bytes: Pillow's resize (horizontal pass first, both rounded
// to 8 bits) then crop. Integer sums stay below 2^53, exact in doubles.
/**
 * @param {ArrayLike<number>} src
 * @param {number} w
 * @param {number} h
 * @param {number} nw
 * @param {number} nh
 * @param {number} left
 * @param {number} top
 * @param {number} size
 * @returns {Uint8Array}
 */
export function resizeCrop(src, w, h, nw, nh, left, top, size) {
  const half = 2 ** (PRECISION_BITS - 1);
  const ht = taps(w, nw, left, size);
  const vt = taps(h, nh, top, size);
  const y0 = Math.min(...vt.map((t) => t.first));
  const y1 = Math.max(...vt.map((t) => t.first + t.weights.length));
  const tmp = new Uint8Array((y1 - y0) * size * 3);
  for (let y = y0; y < y1; y++) {
    for (let j = 0; j < size; j++) {
      const t = ht[j];
      for (let c = 0; c < 3; c++) {
        let acc = half;
        for (let x = 0; x < t.weights.length; x++) acc += src[(y * w + t.first + x) * 4 + c] * t.weights[x];
        tmp[((y - y0) * size + j) * 3 + c] = clip8(acc);
      }
    }
  }
  const out = new Uint8Array(size * size * 3);
  for (let i = 0; i < size; i++) {
    const t = vt[i];
    for (let j = 0; j < size; j++) {
      for (let c = 0; c < 3; c++) {
        let acc = half;
        for (let y = 0; y < t.weights.length; y++) acc += tmp[((t.first + y - y0) * size + j) * 3 + c] * t.weights[y];
        out[(i * size + j) * 3 + c] = clip8(acc);
      }
    }
  }
  return out;
}
