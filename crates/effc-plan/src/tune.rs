//! Tile sizes measured on one adapter: the alternative to the cost models of
//! [`gemm_tiles`] and [`dw_tiles`], per kernel shape.
//!
//! A [`Tuning`] maps a shape key ([`gemm_key`], [`dw_key`]: the conv's geometry, not
//! its layer's name, so that every block of the same shape shares the entry) to the
//! tiles to use. [`plan_tuned`](crate::plan_tuned) applies it; shapes it does not
//! name keep the cost model's choice. The candidates to measure come from
//! [`gemm_candidates`] and [`dw_candidates`]; measuring is the runtime's job
//! (`effc tune`), and so is the cache on disk.

use std::collections::BTreeMap;

use effc_ir::Conv2d;
use serde::{Deserialize, Serialize};

use crate::fuse::{dw_tiles, gemm_tiles, DwTiles, GemmTiles, Kernel, Op};

/// Workgroup invocations every WebGPU adapter allows.
const MAX_INVOCATIONS: usize = 256;
/// Workgroup memory every WebGPU adapter allows, in bytes.
const MAX_WORKGROUP_BYTES: usize = 16384;

/// Tiles per kernel shape, measured on one adapter.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tuning {
    #[serde(default)]
    pub gemm: BTreeMap<String, GemmTiles>,
    #[serde(default)]
    pub depthwise: BTreeMap<String, DwTiles>,
}

impl Tuning {
    /// Whether it names no shape.
    pub fn is_empty(&self) -> bool {
        self.gemm.is_empty() && self.depthwise.is_empty()
    }

    /// Shapes it names.
    pub fn len(&self) -> usize {
        self.gemm.len() + self.depthwise.len()
    }

    /// Drops the entries whose tiles no shader could use (a hand-edited or damaged
    /// cache), and says which.
    pub fn retain_valid(&mut self) -> Vec<String> {
        let mut dropped = vec![];
        self.gemm.retain(|k, t| {
            let ok = t.check().is_ok();
            if !ok {
                dropped.push(k.clone());
            }
            ok
        });
        self.depthwise.retain(|k, t| {
            let ok = t.check().is_ok();
            if !ok {
                dropped.push(k.clone());
            }
            ok
        });
        dropped
    }

    /// Sets the tiles of one shape.
    pub fn set(&mut self, key: &str, tiles: Tiles) {
        match tiles {
            Tiles::Gemm(t) => {
                self.gemm.insert(key.to_string(), t);
            }
            Tiles::Dw(t) => {
                self.depthwise.insert(key.to_string(), t);
            }
        }
    }

    /// Adds (or replaces) the entries of `other`.
    pub fn merge(&mut self, other: Tuning) {
        self.gemm.extend(other.gemm);
        self.depthwise.extend(other.depthwise);
    }

    pub(crate) fn gemm_tiles(&self, key: &str, m: usize, n4: usize) -> GemmTiles {
        self.gemm
            .get(key)
            .copied()
            .filter(|t| t.check().is_ok())
            .unwrap_or_else(|| gemm_tiles(m, n4))
    }

    pub(crate) fn dw_tiles(&self, key: &str, c4: usize, out_w: usize) -> DwTiles {
        self.depthwise
            .get(key)
            .copied()
            .filter(|t| t.check().is_ok())
            .unwrap_or_else(|| dw_tiles(c4, out_w))
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

/// A kernel's tiles in its plan (for the kernels that have tiles).
pub fn tiles_of(k: &Kernel) -> Option<Tiles> {
    match &k.op {
        Op::Gemm(g) => Some(Tiles::Gemm(GemmTiles {
            tile_m: g.tile_m,
            tile_n4: g.tile_n4,
            rows: g.rows_per_thread,
            tile_k4: g.tile_k4,
        })),
        Op::Depthwise(d) => Some(Tiles::Dw(d.tiles)),
        _ => None,
    }
}

/// The tiles worth measuring for a kernel, the cost model's choice first (empty for
/// kernels without tiles).
pub fn candidates(k: &Kernel) -> Vec<Tiles> {
    match &k.op {
        Op::Gemm(g) => gemm_candidates(g.m(), g.cout4)
            .into_iter()
            .map(Tiles::Gemm)
            .collect(),
        Op::Depthwise(d) => dw_candidates(d.c4, d.out_w)
            .into_iter()
            .map(Tiles::Dw)
            .collect(),
        _ => vec![],
    }
}

/// The key of a conv run as a GEMM (the stem, 1x1 convs, Fused-MBConv's kxk conv,
/// the head): its geometry, and whether the kernel also writes pooling sums.
pub fn gemm_key(c: &Conv2d, pool: bool) -> String {
    format!("gemm {}{}", geometry(c), if pool { " pool" } else { "" })
}

/// The key of a depthwise conv: its geometry.
pub fn dw_key(c: &Conv2d) -> String {
    format!("dw {}", geometry(c))
}

/// `k3 s2 pad0,1 224x224x3 -> 112x112x32`
fn geometry(c: &Conv2d) -> String {
    let ((ih, iw), (oh, ow)) = (c.in_hw, c.out_hw);
    format!(
        "k{} s{} pad{},{} {ih}x{iw}x{} -> {oh}x{ow}x{}",
        c.kernel, c.stride, c.pad.top, c.pad.left, c.in_ch, c.out_ch
    )
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

    /// Every kernel of a plan tuned with its `pick`-th candidate (the last when it
    /// has fewer) uses those tiles, and the pooling sums it writes are the ones
    /// their reader adds up.
    fn check_tuned(model: &effc_ir::Model, pick: usize) {
        let base = crate::plan(model);
        let mut tuning = Tuning::default();
        for k in &base.kernels {
            let c = candidates(k);
            if let (Some(key), Some(t)) = (&k.tune_key, c.get(pick.min(c.len().max(1) - 1))) {
                tuning.set(key, *t);
            }
        }
        let p = crate::plan_tuned(model, &tuning);
        assert_eq!(p.kernels.len(), base.kernels.len());
        let mut partial_tiles = std::collections::HashMap::new();
        for k in &p.kernels {
            if let Some(key) = &k.tune_key {
                let want = match tiles_of(k).unwrap() {
                    Tiles::Gemm(t) => tuning.gemm[key] == t,
                    Tiles::Dw(t) => tuning.depthwise[key] == t,
                };
                assert!(want, "{}: tiles not applied", k.name);
            }
            let tiles = match &k.op {
                Op::Gemm(g) => g.tiles_m(),
                Op::Depthwise(d) => d.tiles(),
                Op::Se(s) => s.tiles,
                Op::Classifier(h) => h.tiles,
            };
            if matches!(k.op, Op::Gemm(_) | Op::Depthwise(_)) {
                assert_eq!(k.grid[1] as usize, tiles, "{}: grid", k.name);
            }
            // Writer and reader of the same pooling sums agree on their count.
            if let Some(b) = k.bindings.iter().find(|b| b.name == "pool") {
                let t = b.tensor.unwrap();
                assert_eq!(p.tensors[t].h, tiles, "{}: pooling sums", k.name);
                if let Some(w) = partial_tiles.insert(t, tiles) {
                    assert_eq!(w, tiles, "{}: pooling sums", k.name);
                }
            }
        }
        assert!(!partial_tiles.is_empty());
    }

    #[test]
    fn tuned_plans_stay_consistent() {
        let fused_se = effc_ir::Spec::parse_model(
            "fused_se.enet",
            include_str!("../../../tests/specs/gpu/fused_se.enet"),
            None,
        )
        .unwrap();
        for spec in [
            effc_ir::Spec::builtin("b0").unwrap(),
            effc_ir::Spec::builtin("v2-s").unwrap(),
            fused_se,
        ] {
            let model = effc_ir::Model::build(&spec, &Default::default()).unwrap();
            for pick in [0, 1, 5, 100] {
                check_tuned(&model, pick);
            }
        }
    }

    #[test]
    fn damaged_entries_are_dropped() {
        let mut t = Tuning::default();
        let good = gemm_tiles(196, 30);
        t.gemm.insert("a".into(), good);
        t.gemm.insert(
            "b".into(),
            GemmTiles {
                rows: 3,
                tile_m: 16,
                ..good
            },
        );
        t.gemm.insert(
            "c".into(),
            GemmTiles {
                tile_n4: 16,
                tile_m: 128,
                rows: 1,
                tile_k4: 8,
            },
        );
        t.depthwise.insert(
            "d".into(),
            DwTiles {
                run: 0,
                ..dw_tiles(4, 4)
            },
        );
        assert_eq!(t.retain_valid(), ["b", "c", "d"]);
        assert_eq!(t.len(), 1);
    }
}
