// Types of `model.js`, the module `effc compile --target web` writes (the same for
// every model; the model's own numbers are in `Model.info`). Checked with
// `tsc --strict` by effc's tests.

/** The limits `fit` and `requiredLimits` read (a `GPUSupportedLimits` has them). */
export interface Limits {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  maxStorageBuffersPerShaderStage: number;
  maxComputeWorkgroupsPerDimension: number;
  maxComputeWorkgroupSizeX: number;
  maxComputeWorkgroupSizeY: number;
  maxComputeWorkgroupSizeZ: number;
  maxComputeInvocationsPerWorkgroup: number;
}

/** How an f16 model's shaders are spelled: `enable f16;` or halves packed in u32s. */
export type F16Spelling = "native" | "packed";

export interface LoadOptions {
  /** A `GPUDevice` to share; its limits must fit the model. */
  device?: object;
  /** The largest batch a forward takes (default: the compiled `--max-batch`). */
  maxBatch?: number;
  /** Forces the spelling of an f16 model's shaders. */
  f16?: F16Spelling;
  /**
   * `"webgpu"`: WebGPU only; `"wasm"`: effc's CPU backend in WebAssembly
   * (`effc-cpu.wasm`, f32 models). Default: WebGPU, and the wasm backend where
   * the browser has no WebGPU or no adapter.
   */
  backend?: Backend;
}

/** Where a model runs. */
export type Backend = "webgpu" | "wasm";

/** What a loaded model is and where it runs. */
export interface ModelInfo {
  name: string;
  resolution: number;
  /** Channels, height, width of one image. */
  inputShape: [number, number, number];
  classes: number;
  outputLen: number;
  parameters: number;
  macs: number;
  kernels: number;
  adapter: string;
  maxBatch: number;
  /** Images per pass: a larger batch runs in several. */
  chunk: number;
  precision: string;
  weightBytes: number;
  fingerprint: string;
  /** How long `load` took on WebGPU, in milliseconds: each phase and the total
   * (the weights' download and check run beside the device, shaders and
   * pipelines); `null` on the wasm backend. */
  load: LoadPhases | null;
  /** Which path runs: WebGPU, or effc's CPU backend in WebAssembly. */
  backend: Backend;
  /** The wasm backend's instruction set (`simd128`) and threads. */
  cpu?: { isa: string; threads: number };
  /** Why the wasm backend runs (WebGPU missing, or asked for). */
  fallback?: string;
}

/** The phases of `load`, in milliseconds from its start (`weights`, `device`) or
 * their own length (`shaders`, `pipelines`: all compiled at once, `upload`). */
export interface LoadPhases {
  weights: number;
  device: number;
  shaders: number;
  pipelines: number;
  upload: number;
  total: number;
}

/** One class of `classify`'s answer. */
export interface Prediction {
  class: number;
  name: string;
  prob: number;
}

/** An image `preprocess` and `classify` take. */
export type ImageSource =
  | HTMLImageElement
  | ImageBitmap
  | HTMLCanvasElement
  | OffscreenCanvas
  | ImageData;

export class Model {
  private constructor();
  readonly info: ModelInfo;
  /** The time of the last `classify`'s forward alone, in ms. */
  lastForwardMs?: number;
  /** `batch` images NCHW f32 normalized; resolves to `batch × outputLen` values. */
  forward(input: Float32Array, batch?: number): Promise<Float32Array>;
  /** One image as effc preprocesses it natively: CHW f32. */
  preprocess(source: ImageSource): Promise<Float32Array>;
  /** The top `k` classes, most probable first. */
  classify(source: ImageSource, k?: number): Promise<Prediction[]>;
  /** Frees the GPU buffers (and the device `load` created), or the wasm module's memory. */
  destroy(): void;
}

/** Loads `weights.bin` (beside model.js by default), checks it, and creates the model
 * on WebGPU, or on the wasm backend (`options.backend`, or where WebGPU is missing). */
export function load(
  weights?: URL | string | ArrayBuffer | Response,
  options?: LoadOptions,
): Promise<Model>;

/** Checks a `weights.bin` (magic, version, model, fingerprint, kernels) and splits it. */
export function parseWeights(buffer: ArrayBuffer): unknown;

/** The images per pass on an adapter with `limits`; throws naming the limit exceeded. */
export function fit(limits: Limits, maxBatch: number): number;

/** The limits to request of an adapter for `maxBatch` images. */
export function requiredLimits(adapterLimits: Limits, maxBatch: number): Partial<Limits>;

/** The spelling an f16 model uses on a device with `features`; null at f32. */
export function f16Spelling(features: ReadonlySet<string> | undefined, forced?: F16Spelling): F16Spelling | null;

/** The f16 bits effc stores `v` as (round to nearest even, ±65504 clamped). */
export function toHalf(v: number): number;

/** Pillow's bicubic resize of RGBA `src` (w × h) to nw × nh, then the size × size
 * window at (left, top): HWC RGB bytes. */
export function resizeCrop(
  src: Uint8Array | Uint8ClampedArray,
  w: number,
  h: number,
  nw: number,
  nh: number,
  left: number,
  top: number,
  size: number,
): Uint8Array;
