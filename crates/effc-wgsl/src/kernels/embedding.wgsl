// No classifier (classes = 0): the output is the embedding, the global average
// of the head's partial sums; one invocation per channel.
//
// The writer (effc-wgsl/src/reduce.rs) fills in, from the kernel plan:
//   {{CONSTANTS}}   shapes (C, C4, TILES, INV_HW)
//   {{THREADS}}     invocations per workgroup
{{CONSTANTS}}

// No classifier: the output is the embedding (the pooled head).
@compute @workgroup_size({{THREADS}}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let n = wg.z;
    let c = wg.x * {{THREADS}}u + lid.x;
    if (c >= C) {
        return;
    }
    _ = weights[0];
    var s = 0.0;
    for (var t = 0u; t < TILES; t = t + 1u) {
        s = s + pool[(n * TILES + t) * C4 + c / 4u][c % 4u];
    }
    dst[n * C + c] = s * INV_HW;
}
