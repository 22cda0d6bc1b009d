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

use crate::plan::{Kernel, Op};
pub use crate::tiles::Tiles;
use crate::tiles::{dw_candidates, dw_tiles, gemm_candidates, gemm_tiles, DwTiles, GemmTiles};
use crate::Precision;

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
/// the head): its geometry, whether the kernel also writes pooling sums, and ` f16`
/// at f16 storage (whose best tiles are measured apart from f32's).
pub fn gemm_key(c: &Conv2d, pool: bool, precision: Precision) -> String {
    format!(
        "gemm {}{}{}",
        geometry(c),
        if pool { " pool" } else { "" },
        precision_suffix(precision)
    )
}

/// The key of a depthwise conv: its geometry, and ` f16` at f16 storage.
pub fn dw_key(c: &Conv2d, precision: Precision) -> String {
    format!("dw {}{}", geometry(c), precision_suffix(precision))
}

fn precision_suffix(precision: Precision) -> &'static str {
    match precision {
        Precision::F32 => "",
        Precision::F16 => " f16",
    }
}

/// `k3 s2 pad0,1 224x224x3 -> 112x112x32`
fn geometry(c: &Conv2d) -> String {
    let ((ih, iw), (oh, ow)) = (c.in_hw, c.out_hw);
    format!(
        "k{} s{} pad{},{} {ih}x{iw}x{} -> {oh}x{ow}x{}",
        c.kernel, c.stride, c.pad.top, c.pad.left, c.in_ch, c.out_ch
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
