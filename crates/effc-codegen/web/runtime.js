// The effc WebGPU runtime. `PLAN` (above, generated) holds the facts the Rust host
// is generated from: kernels, bindings, buffer slots, grids and workgroup sizes.
// This part computes only what depends on the browser's adapter (limits, chunk).

const MIB = 1024 * 1024;
const DEFAULTS = { maxStorageBufferBindingSize: 128 * MIB, maxBufferSize: 256 * MIB, maxStorageBuffersPerShaderStage: 8 };

function fail(message) {
  return new Error(`effc model \`${PLAN.name}\`: ${message}`);
}

function mib(bytes) {
  return `${(bytes / MIB).toFixed(1)} MiB`;
}

// Reads `weights.bin`: magic, version, JSON header, f32 data. Refuses a file made
// for another model or another plan.
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
  const floats = (bytes.length - start) / 4;
  if (floats * 4 !== PLAN.weightBytes) {
    throw fail(`the weights file holds ${floats * 4} bytes of weights, the plan needs ${PLAN.weightBytes}`);
  }
  const data = new Float32Array(buffer, start, floats);
  return PLAN.kernels.map((k, i) => {
    const e = header.kernels[i];
    if (!e || e.name !== k.name || e.len !== k.weightsLen) throw fail(`the weights file's kernel #${i} is not \`${k.name}\``);
    return data.subarray(e.offset, e.offset + e.len);
  });
}

// The limits to request: the defaults, raised to what the model needs (up to what
// the adapter has) for `maxBatch` images in one chunk.
function limitsFor(adapter, maxBatch) {
  const lim = adapter.limits;
  const perImage = Math.max(16, ...PLAN.slots);
  const weights = Math.max(16, ...PLAN.kernels.map((k) => k.weightsLen * 4));
  const binding = Math.max(perImage * maxBatch, weights, PLAN.input.bytes * maxBatch);
  const bindings = Math.max(...PLAN.kernels.map((k) => k.bindings.length));
  const want = {
    maxStorageBufferBindingSize: Math.min(lim.maxStorageBufferBindingSize, Math.max(DEFAULTS.maxStorageBufferBindingSize, binding)),
    maxBufferSize: Math.min(lim.maxBufferSize, Math.max(DEFAULTS.maxBufferSize, binding)),
    maxStorageBuffersPerShaderStage: Math.min(lim.maxStorageBuffersPerShaderStage, Math.max(DEFAULTS.maxStorageBuffersPerShaderStage, bindings)),
  };
  return want;
}

// Checks the device's limits against the plan, as the native runtime does, and
// returns the images per chunk.
function chunkFor(device, maxBatch) {
  const lim = device.limits;
  const maxBinding = Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize);
  for (const k of PLAN.kernels) {
    if (k.weightsLen * 4 > maxBinding) {
      throw fail(`the weights of kernel \`${k.name}\` take ${mib(k.weightsLen * 4)}, more than the adapter's largest storage binding (${mib(maxBinding)})`);
    }
    if (k.bindings.length > lim.maxStorageBuffersPerShaderStage) {
      throw fail(`kernel \`${k.name}\` binds ${k.bindings.length} storage buffers, the adapter allows ${lim.maxStorageBuffersPerShaderStage}`);
    }
    const wg = lim.maxComputeWorkgroupsPerDimension;
    if (k.grid[0] > wg || k.grid[1] > wg) {
      throw fail(`kernel \`${k.name}\` needs ${k.grid[0]}x${k.grid[1]} workgroups, the adapter allows ${wg} per dimension`);
    }
    const threads = k.workgroup[0] * k.workgroup[1] * k.workgroup[2];
    if (threads > lim.maxComputeInvocationsPerWorkgroup) {
      throw fail(`kernel \`${k.name}\` uses ${threads} invocations per workgroup, the adapter allows ${lim.maxComputeInvocationsPerWorkgroup}`);
    }
  }
  const perImage = Math.max(16, ...PLAN.slots);
  if (perImage > maxBinding) {
    throw fail(`an activation takes ${mib(perImage)} for one image, more than the adapter's largest storage binding (${mib(maxBinding)}); compile at a smaller resolution`);
  }
  if (PLAN.input.bytes * maxBatch > lim.maxBufferSize) {
    throw fail(`a batch of ${maxBatch} inputs takes ${mib(PLAN.input.bytes * maxBatch)}, more than the adapter's largest buffer (${mib(lim.maxBufferSize)}); use a smaller maxBatch`);
  }
  return Math.max(1, Math.min(Math.floor(maxBinding / perImage), maxBatch, lim.maxComputeWorkgroupsPerDimension));
}

function adapterName(info) {
  if (!info) return "unknown adapter";
  const parts = [info.vendor, info.architecture, info.device, info.description].filter((s) => s);
  return parts.length ? [...new Set(parts)].join(" ") : "unknown adapter";
}

/// Loads the model: `weights` a URL (default `./weights.bin` beside this file), an
/// `ArrayBuffer` or a `Response`; `options.device` a `GPUDevice` to share,
/// `options.maxBatch` the largest batch a forward takes.
export async function load(weights = new URL("./weights.bin", import.meta.url), options = {}) {
  const maxBatch = options.maxBatch ?? PLAN.maxBatch;
  if (!Number.isInteger(maxBatch) || maxBatch < 1) throw fail(`options.maxBatch must be a positive integer, not ${maxBatch}`);
  let device = options.device;
  let adapterLabel = "shared device";
  if (!device) {
    if (typeof navigator === "undefined" || !navigator.gpu) {
      throw fail("this browser has no WebGPU (navigator.gpu is missing); use a recent Chrome, Edge or Safari, or Firefox with WebGPU enabled, over https or localhost");
    }
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) throw fail("this browser has WebGPU but offers no GPU adapter (it may be disabled or blocklisted)");
    adapterLabel = adapterName(adapter.info);
    device = await adapter.requestDevice({ requiredLimits: limitsFor(adapter, maxBatch) });
  }
  let buffer;
  if (weights instanceof ArrayBuffer) buffer = weights;
  else {
    const response = weights instanceof Response ? weights : await fetch(weights);
    if (!response.ok) throw fail(`cannot fetch the weights ${response.url || weights}: HTTP ${response.status}`);
    buffer = await response.arrayBuffer();
  }
  const packed = parseWeights(buffer);
  const chunk = chunkFor(device, maxBatch);
  const base = new URL(".", import.meta.url);
  const sources = new Map();
  await Promise.all(
    [...new Set(PLAN.kernels.map((k) => k.shader))].map(async (file) => {
      const r = await fetch(new URL(file, base));
      if (!r.ok) throw fail(`cannot fetch shader ${file}: HTTP ${r.status}`);
      sources.set(file, await r.text());
    })
  );
  return new Model(device, adapterLabel, packed, sources, maxBatch, chunk, !options.device);
}

export class Model {
  constructor(device, adapter, packed, sources, maxBatch, chunk, ownsDevice) {
    this.device = device;
    this.maxBatch = maxBatch;
    this.chunk = chunk;
    this.ownsDevice = ownsDevice;
    const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
    device.pushErrorScope("validation");
    device.pushErrorScope("out-of-memory");
    this.buffers = [];
    const make = (size, usage, label) => {
      const b = device.createBuffer({ size: Math.max(16, Math.ceil(size / 4) * 4), usage, label });
      this.buffers.push(b);
      return b;
    };
    this.slots = PLAN.slots.map((bytes, i) => make(bytes * chunk, STORAGE, `activations #${i}`));
    this.inputAll = make(PLAN.input.bytes * maxBatch, GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST, "input batch");
    this.outputAll = make(PLAN.output.bytes * maxBatch, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, "output batch");
    const cache = new Map();
    this.steps = PLAN.kernels.map((k, i) => {
      const w = make(k.weightsLen * 4, STORAGE, `${k.name} weights`);
      device.queue.writeBuffer(w, 0, packed[i]);
      const source = sources.get(k.shader);
      let entry = cache.get(source);
      if (!entry) {
        const layout = device.createBindGroupLayout({
          label: k.name,
          entries: k.bindings.map((b, j) => ({
            binding: j,
            visibility: GPUShaderStage.COMPUTE,
            buffer: { type: b.write ? "storage" : "read-only-storage" },
          })),
        });
        const pipeline = device.createComputePipeline({
          label: k.name,
          layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
          compute: { module: device.createShaderModule({ label: k.name, code: source }), entryPoint: "main" },
        });
        entry = { pipeline, layout };
        cache.set(source, entry);
      }
      const bindGroup = device.createBindGroup({
        label: k.name,
        layout: entry.layout,
        entries: k.bindings.map((b, j) => ({ binding: j, resource: { buffer: b.weights ? w : this.slots[b.slot] } })),
      });
      return { kernel: k, pipeline: entry.pipeline, bindGroup };
    });
    this.ready = Promise.all([device.popErrorScope(), device.popErrorScope()]).then(([oom, val]) => {
      if (oom) throw fail(`out of GPU memory while creating buffers (${oom.message}); weights ${mib(PLAN.weightBytes)}`);
      if (val) throw fail(`creating the pipelines failed: ${val.message}`);
    });
    this.info = {
      name: PLAN.name,
      resolution: PLAN.resolution,
      inputShape: PLAN.inputShape,
      classes: PLAN.classes,
      outputLen: PLAN.outputLen,
      parameters: PLAN.parameters,
      macs: PLAN.macs,
      kernels: PLAN.kernels.length,
      adapter,
      chunk,
      fingerprint: PLAN.fingerprint,
    };
    this.busy = Promise.resolve();
  }

  /// Runs `batch` images, NCHW f32 normalized; resolves to `batch × outputLen` values.
  forward(input, batch = 1) {
    const run = this.busy.then(() => this.#forward(input, batch));
    this.busy = run.catch(() => {});
    return run;
  }

  async #forward(input, batch) {
    await this.ready;
    const [c, h, w] = PLAN.inputShape;
    if (!Number.isInteger(batch) || batch < 1) throw fail(`batch must be a positive integer, not ${batch}`);
    if (batch > this.maxBatch) throw fail(`batch ${batch} is more than the model's maxBatch ${this.maxBatch}`);
    if (!(input instanceof Float32Array)) throw fail("forward takes a Float32Array (NCHW)");
    if (input.length !== batch * c * h * w) {
      throw fail(`input has ${input.length} values, a batch of ${batch} × ${c}×${h}×${w} needs ${batch * c * h * w}`);
    }
    const c4 = PLAN.inputC4 * 4;
    const per = h * w * c4;
    const nhwc = new Float32Array(batch * per);
    for (let n = 0; n < batch; n++) {
      for (let ch = 0; ch < c; ch++) {
        const src = (n * c + ch) * h * w;
        for (let p = 0; p < h * w; p++) nhwc[n * per + p * c4 + ch] = input[src + p];
      }
    }
    const { device } = this;
    device.queue.writeBuffer(this.inputAll, 0, nhwc);
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
    device.pushErrorScope("validation");
    device.queue.submit([enc.finish()]);
    const err = await device.popErrorScope();
    if (err) throw fail(`running the model failed: ${err.message}`);
    const bytes = batch * PLAN.outputLen * 4;
    await this.outputAll.mapAsync(GPUMapMode.READ, 0, bytes);
    const out = new Float32Array(this.outputAll.getMappedRange(0, bytes).slice(0));
    this.outputAll.unmap();
    return out;
  }

  /// Preprocesses an image as effc does natively (shorter side to
  /// resolution / 0.875, centre crop, mean/std), with the browser's resampler.
  /// Returns the CHW Float32Array of one image.
  preprocess(source) {
    const R = PLAN.resolution;
    const sw = source.naturalWidth ?? source.width;
    const sh = source.naturalHeight ?? source.height;
    if (!sw || !sh) throw fail("the image has no pixels (not loaded yet?)");
    const scale = R / PLAN.crop / Math.min(sw, sh);
    const nw = Math.max(R, Math.round(sw * scale));
    const nh = Math.max(R, Math.round(sh * scale));
    const left = Math.floor((nw - R) / 2);
    const top = Math.floor((nh - R) / 2);
    const canvas = typeof OffscreenCanvas !== "undefined" ? new OffscreenCanvas(R, R) : Object.assign(document.createElement("canvas"), { width: R, height: R });
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = "high";
    let img = source;
    if (typeof ImageData !== "undefined" && source instanceof ImageData) {
      const tmp = typeof OffscreenCanvas !== "undefined" ? new OffscreenCanvas(sw, sh) : Object.assign(document.createElement("canvas"), { width: sw, height: sh });
      tmp.getContext("2d").putImageData(source, 0, 0);
      img = tmp;
    }
    ctx.drawImage(img, -left, -top, nw, nh);
    const px = ctx.getImageData(0, 0, R, R).data;
    const out = new Float32Array(3 * R * R);
    for (let ch = 0; ch < 3; ch++) {
      const m = PLAN.mean[ch];
      const s = PLAN.std[ch];
      for (let i = 0; i < R * R; i++) out[ch * R * R + i] = (px[i * 4 + ch] / 255 - m) / s;
    }
    return out;
  }

  /// The top `k` classes of an image: `[{ class, name, prob }]`, most likely first.
  async classify(source, k = 5) {
    if (PLAN.classes === 0) throw fail("the model has no classifier (classes = 0); use forward for its pooled features");
    const t0 = performance.now();
    const logits = await this.forward(this.preprocess(source), 1);
    this.lastForwardMs = performance.now() - t0;
    const max = Math.max(...logits);
    const exp = Array.from(logits, (v) => Math.exp(v - max));
    const sum = exp.reduce((a, b) => a + b, 0);
    return exp
      .map((e, i) => ({ class: i, name: PLAN.classNames[i] ?? `class ${i}`, prob: e / sum }))
      .sort((a, b) => b.prob - a.prob)
      .slice(0, k);
  }

  /// Frees the GPU buffers (and the device when `load` created it).
  destroy() {
    for (const b of this.buffers) b.destroy();
    this.buffers = [];
    if (this.ownsDevice) this.device.destroy();
  }
}
