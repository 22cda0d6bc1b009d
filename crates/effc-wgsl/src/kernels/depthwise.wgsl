// A depthwise KSIZE x KSIZE conv + bias (folded BN) + activation, NHWC, one vec4 of
// channels per invocation. Each invocation computes runs of RUN horizontally adjacent
// output pixels, loading the input row segment a run reads once for all its taps and
// pixels (a sliding window). With SE, the workgroup also writes its pooling sums.
//
// The writer (effc-wgsl/src/depthwise.rs) fills in, from the kernel plan:
//   {{CONSTANTS}}   shapes, tiles and weight-layout offsets (C4, KSIZE, RUN, TAPS, BIAS, ...)
//   {{POOL_TILE}}   the pooling tile, when the kernel pools
//   {{ACT}}         the activation `act`
//   {{WORKGROUP}}   the workgroup size
//   {{POOL}}        the pooling sums of this tile
{{CONSTANTS}}

{{POOL_TILE}}
{{ACT}}
@compute @workgroup_size({{WORKGROUP}}, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let n = wg.z;
    let c4 = wg.x * LANES_C4 + lid.x;
    var psum = vec4<f32>(0.0);
    if (c4 < C4) {
        let bias = weights[BIAS + c4];
        for (var r = lid.y; r < TILE_RUNS; r = r + LANES_RUN) {
            let run = wg.y * TILE_RUNS + r;
            if (run >= RUNS) {
                break;
            }
            let oy = run / RUNS_W;
            let ox0 = (run % RUNS_W) * RUN;
            let ix0 = i32(ox0 * STRIDE) - PAD_LEFT;
            // Zeroed explicitly: WGSL zeroes a `var` each time its declaration runs,
            // but Chromium's SwiftShader keeps a loop's array from the previous
            // iteration without an initializer.
            var acc = array<vec4<f32>, RUN>();
            for (var ky = 0u; ky < KSIZE; ky = ky + 1u) {
                let iy = i32(oy * STRIDE + ky) - PAD_TOP;
                if (iy < 0 || iy >= IN_H) {
                    continue;
                }
                // the row's input pixels, loaded once for all taps and pixels of the run
                let row = (n * u32(IN_H) + u32(iy)) * u32(IN_W);
                var seg = array<vec4<f32>, SEG>();
                for (var i = 0u; i < SEG; i = i + 1u) {
                    let ix = ix0 + i32(i);
                    if (ix >= 0 && ix < IN_W) {
                        seg[i] = src[(row + u32(ix)) * C4 + c4];
                    }
                }
                for (var kx = 0u; kx < KSIZE; kx = kx + 1u) {
                    let w = weights[TAPS + (ky * KSIZE + kx) * C4 + c4];
                    for (var j = 0u; j < RUN; j = j + 1u) {
                        acc[j] = acc[j] + seg[j * STRIDE + kx] * w;
                    }
                }
            }
            for (var j = 0u; j < RUN; j = j + 1u) {
                let ox = ox0 + j;
                if (ox < OUT_W) {
                    let v = act(acc[j] + bias);
                    dst[(n * M + oy * OUT_W + ox) * C4 + c4] = v;
                    psum = psum + v;
                }
            }
        }
    }
{{POOL}}
}
