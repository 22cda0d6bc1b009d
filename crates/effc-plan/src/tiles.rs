//! Tiles: how a GEMM or depthwise kernel divides its work among workgroups and
//! invocations, the cost models that choose them, the checks that any WebGPU adapter
//! can run them, and the candidates `effc tune` measures.

use serde::{Deserialize, Serialize};

/// Workgroup invocations every WebGPU adapter allows.
const MAX_INVOCATIONS: usize = 256;
/// Workgroup memory every WebGPU adapter allows, in bytes.
const MAX_WORKGROUP_BYTES: usize = 16384;

/// GEMM tiling: output pixels per workgroup tile, vec4 columns per tile, pixels
/// per invocation (register blocking), reduction vec4s per workgroup-memory step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GemmTiles {
    pub tile_m: usize,
    pub tile_n4: usize,
    pub rows: usize,
    pub tile_k4: usize,
}

/// The cost model for GEMM tiles. An invocation computes 4 to 8 output pixels of
/// one vec4 column (register blocking), and a workgroup is 4 or 8 invocations along
/// the pixels by 8 along the columns: 32 or 64 invocations, whole warps on GPUs and
/// whole SIMD rows on llvmpipe. Of those shapes, the one with the lowest cost: rows
/// computed (padding included), each costing 1 + 1/ROWS (fewer pixels per invocation
/// reuse each weight less), plus 8 per tile (its weight panel loaded again). So 14x14
/// maps get 28-pixel tiles and 7x7 and 28x28 maps 56-pixel tiles (7 pixels per
/// invocation) rather than padding to a power of two. Narrow outputs get narrow tiles
/// so that no invocation idles.
pub fn gemm_tiles(m: usize, n4: usize) -> GemmTiles {
    let cost = |rows: usize, lanes: usize| {
        let tile = rows * lanes;
        let tiles = m.div_ceil(tile);
        (tiles * tile) as f64 * (1.0 + 1.0 / rows as f64) + 8.0 * tiles as f64
    };
    // In order of preference where costs tie: more pixels per invocation, then more
    // invocations.
    let mut best = (8, 8);
    for rows in (4..=8).rev() {
        for lanes in [8, 4] {
            if cost(rows, lanes) < cost(best.0, best.1) {
                best = (rows, lanes);
            }
        }
    }
    let (rows, lanes) = best;
    let tile_n4 = if n4 <= 4 { 4 } else { 8 };
    GemmTiles {
        tile_m: rows * lanes,
        tile_n4,
        rows,
        tile_k4: 4,
    }
}

/// Depthwise tiling. Each invocation computes runs of `run` horizontally adjacent
/// output pixels of one channel vec4, so that the input pixels the runs share are
/// loaded once per row (a sliding window); `lanes_c4 * lanes_run` invocations per
/// workgroup (64), `tile_runs` runs per workgroup (2 per invocation, 8 pixels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DwTiles {
    pub run: usize,
    pub lanes_c4: usize,
    pub lanes_run: usize,
    pub tile_runs: usize,
}

/// The cost model for depthwise tiles: narrow layers trade channel lanes for run
/// lanes so that no invocation idles; runs are 4 pixels, or the row when narrower.
pub fn dw_tiles(c4: usize, out_w: usize) -> DwTiles {
    let lanes_c4 = c4.next_power_of_two().clamp(1, 16);
    let lanes_run = 64 / lanes_c4;
    DwTiles {
        run: out_w.clamp(1, 4),
        lanes_c4,
        lanes_run,
        tile_runs: lanes_run * 2,
    }
}

impl GemmTiles {
    /// Whether a shader can be built with these tiles on any WebGPU adapter.
    pub fn check(&self) -> Result<(), String> {
        let GemmTiles {
            tile_m,
            tile_n4,
            rows,
            tile_k4,
        } = *self;
        if !(1..=8).contains(&rows) || tile_m == 0 || tile_m % rows != 0 {
            return Err(format!(
                "tile_m {tile_m} must be a positive multiple of rows {rows} (1 to 8)"
            ));
        }
        if !(1..=16).contains(&tile_n4) || !(1..=8).contains(&tile_k4) {
            return Err(format!(
                "tile_n4 {tile_n4} must be 1 to 16 and tile_k4 {tile_k4} 1 to 8"
            ));
        }
        let invocations = tile_n4 * tile_m / rows;
        if invocations > MAX_INVOCATIONS {
            return Err(format!(
                "{invocations} invocations per workgroup (at most {MAX_INVOCATIONS})"
            ));
        }
        // a_tile, b_tile and (at most) the pooling tile.
        let bytes = 16 * (tile_m * tile_k4 + 4 * tile_k4 * tile_n4 + (tile_m / rows) * tile_n4);
        if bytes > MAX_WORKGROUP_BYTES {
            return Err(format!(
                "{bytes} bytes of workgroup memory (at most {MAX_WORKGROUP_BYTES})"
            ));
        }
        Ok(())
    }
}

impl DwTiles {
    /// Whether a shader can be built with these tiles on any WebGPU adapter.
    pub fn check(&self) -> Result<(), String> {
        let DwTiles {
            run,
            lanes_c4,
            lanes_run,
            tile_runs,
        } = *self;
        if !(1..=8).contains(&run) {
            return Err(format!("run {run} must be 1 to 8"));
        }
        if lanes_c4 == 0 || lanes_run == 0 || lanes_c4 * lanes_run > MAX_INVOCATIONS {
            return Err(format!(
                "{lanes_c4}x{lanes_run} invocations per workgroup (1 to {MAX_INVOCATIONS})"
            ));
        }
        if tile_runs < lanes_run || tile_runs > 16 * lanes_run {
            return Err(format!(
                "tile_runs {tile_runs} must be 1 to 16 times lanes_run {lanes_run}"
            ));
        }
        Ok(())
    }
}

/// The tiles of one kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tiles {
    Gemm(GemmTiles),
    Dw(DwTiles),
}

impl std::fmt::Display for Tiles {
    /// `56px x 32ch, 7 px/thread, k 16` (a GEMM tile: pixels by channels, pixels per
    /// invocation, reduction step); `runs of 4px, 16ch x 4, 8 runs` (depthwise: run
    /// length, channels by run lanes, runs per workgroup).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tiles::Gemm(t) => write!(
                f,
                "{}px x {}ch, {} px/thread, k {}",
                t.tile_m,
                t.tile_n4 * 4,
                t.rows,
                t.tile_k4 * 4
            ),
            Tiles::Dw(t) => write!(
                f,
                "runs of {}px, {}ch x {}, {} runs",
                t.run,
                t.lanes_c4 * 4,
                t.lanes_run,
                t.tile_runs
            ),
        }
    }
}

/// GEMM tiles worth measuring for `m` output pixels and `n4` output vec4s: the cost
/// model's choice first, then 8, 7, 5 or 4 pixels per invocation, 8 or 4 invocations
/// along the pixels, reduction steps of 4 or 8 vec4s, and 4-column tiles where 8
/// would pad the columns; tiles that pad the pixels by more than a quarter are left
/// out.
pub fn gemm_candidates(m: usize, n4: usize) -> Vec<GemmTiles> {
    let mut v = vec![gemm_tiles(m, n4)];
    let widths: &[usize] = match n4 {
        0..=4 => &[4],
        _ if n4.is_multiple_of(8) => &[8],
        _ => &[8, 4],
    };
    for &tile_n4 in widths {
        for rows in [8, 7, 5, 4] {
            for lanes in [8, 4] {
                let tile_m = rows * lanes;
                if m.div_ceil(tile_m) * tile_m - m > (m / 4).max(8) {
                    continue;
                }
                for tile_k4 in [4, 8] {
                    let t = GemmTiles {
                        tile_m,
                        tile_n4,
                        rows,
                        tile_k4,
                    };
                    if !v.contains(&t) && t.check().is_ok() {
                        v.push(t);
                    }
                }
            }
        }
    }
    v
}

/// Depthwise tiles worth measuring: the cost model's choice first, then runs of 4
/// or 2 pixels, half the channel lanes, and 1, 2 or 4 runs per invocation.
pub fn dw_candidates(c4: usize, out_w: usize) -> Vec<DwTiles> {
    let base = dw_tiles(c4, out_w);
    let mut v = vec![base];
    for run in [4, 2] {
        let run = run.min(out_w.max(1));
        for lanes_c4 in [base.lanes_c4, (base.lanes_c4 / 2).max(1)] {
            let lanes_run = 64 / lanes_c4;
            for per_lane in [2, 1, 4] {
                let t = DwTiles {
                    run,
                    lanes_c4,
                    lanes_run,
                    tile_runs: lanes_run * per_lane,
                };
                if !v.contains(&t) && t.check().is_ok() {
                    v.push(t);
                }
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_tiles_cover_every_output_with_whole_invocations() {
        for m in (1..=300).chain([784, 3136, 12544, 1 << 20]) {
            for n4 in [1, 3, 4, 5, 8, 30, 320] {
                let t = gemm_tiles(m, n4);
                assert_eq!(t.tile_m % t.rows, 0, "{m}x{n4}: {t:?}");
                let invocations = t.tile_n4 * t.tile_m / t.rows;
                assert!([16, 32, 64].contains(&invocations), "{m}x{n4}: {t:?}");
                // Padding: at most a fifth of the map, plus 16 rows.
                let padded = m.div_ceil(t.tile_m) * t.tile_m;
                assert!(padded <= m + m / 5 + 16, "{m}: {t:?}");
            }
        }
    }

    #[test]
    fn gemm_tiles_of_b0_maps() {
        // 112x112, 56x56, 28x28, 14x14, 7x7: no padding but at 7x7 (7 rows).
        let tiles: Vec<(usize, usize)> = [12544, 3136, 784, 196, 49]
            .iter()
            .map(|&m| gemm_tiles(m, 30))
            .map(|t| (t.tile_m, t.rows))
            .collect();
        assert_eq!(tiles, [(64, 8), (64, 8), (56, 7), (28, 7), (56, 7)]);
    }

    #[test]
    fn dw_tiles_fill_the_workgroup_and_rows() {
        for c4 in [1, 2, 3, 4, 6, 16, 17, 240] {
            for w in [1, 2, 3, 4, 7, 14, 112] {
                let t = dw_tiles(c4, w);
                assert_eq!(t.lanes_c4 * t.lanes_run, 64, "{c4} {w}: {t:?}");
                assert!(t.run >= 1 && t.run <= w.max(1), "{c4} {w}: {t:?}");
                assert!(t.lanes_c4 <= c4.next_power_of_two(), "{c4}: {t:?}");
            }
        }
    }

    #[test]
    fn candidates_are_valid_and_start_with_the_cost_model() {
        for m in [1, 49, 196, 784, 12544] {
            for n4 in [1, 4, 30, 320] {
                let c = gemm_candidates(m, n4);
                assert_eq!(c[0], gemm_tiles(m, n4));
                assert!(m < 49 || c.len() > 4, "{m}x{n4}: {c:?}");
                assert!(c.iter().all(|t| t.check().is_ok()));
            }
        }
        for c4 in [1, 4, 24, 288] {
            for w in [1, 3, 7, 112] {
                let c = dw_candidates(c4, w);
                assert_eq!(c[0], dw_tiles(c4, w));
                assert!(c.iter().all(|t| t.check().is_ok() && t.run <= w));
            }
        }
    }
}
