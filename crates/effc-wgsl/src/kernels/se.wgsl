// The squeeze-and-excitation MLP of one block, one workgroup per image:
// pooled = mean of the depthwise conv's partial sums; hidden = act(W1 . pooled + b1);
// gate = sigmoid(W2 . hidden + b2). The gate buffer holds, per image, the C4 gate
// vec4s followed by the R4 hidden vec4s (GATE_STRIDE in all).
//
// The writer (effc-wgsl/src/reduce.rs) fills in, from the kernel plan:
//   {{CONSTANTS}}   shapes and weight-layout offsets (C4, R, R4, TILES, W1, W2, B2, B1, ...)
//   {{ACT}}         the hidden layer's activation `act`
//   {{THREADS}}     invocations per workgroup
{{CONSTANTS}}

{{ACT}}
fn sigmoid(x: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(1.0) / (vec4<f32>(1.0) + exp(-x));
}

@compute @workgroup_size({{THREADS}}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let n = wg.z;
    let base = n * GATE_STRIDE;
    // 1. global average pool from the partial sums
    for (var c = li; c < C4; c = c + {{THREADS}}u) {
        var s = vec4<f32>(0.0);
        for (var t = 0u; t < TILES; t = t + 1u) {
            s = s + pool[(n * TILES + t) * C4 + c];
        }
        gate[base + c] = s * INV_HW;
    }
    storageBarrier();
    workgroupBarrier();
    // 2. reduce: hidden = act(W1 · pooled + b1), four hidden units per invocation
    for (var r4 = li; r4 < R4; r4 = r4 + {{THREADS}}u) {
        var h = vec4<f32>(0.0);
        for (var j = 0u; j < 4u; j = j + 1u) {
            let r = r4 * 4u + j;
            if (r < R) {
                var d = vec4<f32>(0.0);
                for (var c = 0u; c < C4; c = c + 1u) {
                    d = d + gate[base + c] * weights[W1 + r * C4 + c];
                }
                h[j] = d.x + d.y + d.z + d.w + weights[B1 + r4][j];
            }
        }
        gate[base + C4 + r4] = act(h);
    }
    storageBarrier();
    workgroupBarrier();
    // 3. expand: gate = sigmoid(W2 · hidden + b2)
    for (var c = li; c < C4; c = c + {{THREADS}}u) {
        var g = weights[B2 + c];
        for (var r = 0u; r < R; r = r + 1u) {
            g = g + gate[base + C4 + r / 4u][r % 4u] * weights[W2 + r * C4 + c];
        }
        gate[base + c] = sigmoid(g);
    }
}
