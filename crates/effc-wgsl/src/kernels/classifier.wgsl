// The classifier: the global average pool of the head's partial sums, then the
// linear layer; one invocation per class.
//
// The writer (effc-wgsl/src/reduce.rs) fills in, from the kernel plan:
//   {{CONSTANTS}}   shapes and weight-layout offsets (C, C4, TILES, CLASSES, W, BIAS)
//   {{THREADS}}     invocations per workgroup
{{CONSTANTS}}

@compute @workgroup_size({{THREADS}}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let n = wg.z;
    let j = wg.x * {{THREADS}}u + lid.x;
    if (j >= CLASSES) {
        return;
    }
    var acc = vec4<f32>(0.0);
    for (var c = 0u; c < C4; c = c + 1u) {
        var s = vec4<f32>(0.0);
        for (var t = 0u; t < TILES; t = t + 1u) {
            s = s + pool[(n * TILES + t) * C4 + c];
        }
        acc = acc + s * weights[W + j * C4 + c];
    }
    dst[n * CLASSES + j] = (acc.x + acc.y + acc.z + acc.w) * INV_HW + weights[BIAS + j / 4u][j % 4u];
}
