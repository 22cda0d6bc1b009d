// A convolution as a tiled GEMM: out[pixel][cout] = sum_k A[pixel][k] * B[k][cout].
// Each workgroup computes TILE_M output pixels by TILE_N4 vec4 columns; each
// invocation ROWS pixels of one column (register blocking). A and B go through
// workgroup memory TILE_K4 vec4s of the reduction at a time.
//
// The writer (effc-wgsl/src/gemm.rs) fills in, from the kernel plan:
//   {{CONSTANTS}}   shapes, tiles and weight-layout offsets (M, K4, N4, TILE_*, B, BIAS, ...)
//   {{B_ROWS}}      TILE_K4 * 4
//   {{POOL_TILE}}   the pooling tile, when the epilogue pools
//   {{ACT}}         the activation `act`
//   {{LOAD_A}}      how A is read: the input itself (1x1), gated by SE, or gathered (kxk)
//   {{WORKGROUP}}   the workgroup size
//   {{EPILOGUE}}    residual add and store
//   {{POOL}}        the pooling sums of this tile
{{CONSTANTS}}

var<workgroup> a_tile: array<array<vec4<f32>, TILE_K4>, TILE_M>;
var<workgroup> b_tile: array<array<vec4<f32>, TILE_N4>, {{B_ROWS}}>;
{{POOL_TILE}}

{{ACT}}
// A[m][k4] of image n: zero outside the matrix.
fn load_a(n: u32, m: u32, k4: u32) -> vec4<f32> {
    if (m >= M || k4 >= K4) {
        return vec4<f32>(0.0);
    }
{{LOAD_A}}
}

@compute @workgroup_size({{WORKGROUP}}, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let n = wg.z;
    let col4 = wg.x * TILE_N4 + lid.x;
    let row0 = wg.y * TILE_M + lid.y * ROWS;
    var acc: array<vec4<f32>, ROWS>;
    for (var r = 0u; r < ROWS; r = r + 1u) {
        acc[r] = vec4<f32>(0.0);
    }
    for (var kt = 0u; kt < K4; kt = kt + TILE_K4) {
        for (var i = li; i < TILE_M * TILE_K4; i = i + THREADS) {
            a_tile[i / TILE_K4][i % TILE_K4] = load_a(n, wg.y * TILE_M + i / TILE_K4, kt + i % TILE_K4);
        }
        for (var i = li; i < TILE_K4 * 4u * TILE_N4; i = i + THREADS) {
            let kr = kt * 4u + i / TILE_N4;
            let c = wg.x * TILE_N4 + i % TILE_N4;
            var b = vec4<f32>(0.0);
            if (kr < K4 * 4u && c < N4) {
                b = weights[B + kr * N4 + c];
            }
            b_tile[i / TILE_N4][i % TILE_N4] = b;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K4; kk = kk + 1u) {
            let b0 = b_tile[kk * 4u][lid.x];
            let b1 = b_tile[kk * 4u + 1u][lid.x];
            let b2 = b_tile[kk * 4u + 2u][lid.x];
            let b3 = b_tile[kk * 4u + 3u][lid.x];
            for (var r = 0u; r < ROWS; r = r + 1u) {
                let a = a_tile[lid.y * ROWS + r][kk];
                acc[r] = acc[r] + a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3;
            }
        }
        workgroupBarrier();
    }
    // epilogue: bias (folded BN), activation{{EPILOGUE_WHAT}}
    var psum = vec4<f32>(0.0);
    if (col4 < N4) {
        let bias = weights[BIAS + col4];
        for (var r = 0u; r < ROWS; r = r + 1u) {
            let m = row0 + r;
            if (m < M) {
                var v = act(acc[r] + bias);
{{EPILOGUE}}
                psum = psum + v;
            }
        }
    }
{{POOL}}
}
