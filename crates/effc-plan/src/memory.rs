//! The memory plan: tensors share buffers ("slots") when their lifetimes do not
//! overlap. A kernel's inputs and outputs are always in different slots.

use serde::Serialize;

use crate::fuse::{Plan, TensorKind};

/// One activation buffer: its size per image (the largest tensor it holds).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Slot {
    pub bytes: usize,
    pub tensors: Vec<usize>,
}

/// Assigns every tensor of the plan to a slot, greedily by liveness (best fit among
/// the free slots, else grow the largest free one, else a new slot). The input and
/// output get slots of their own, so the caller can upload and read them back
/// without disturbing anything else.
pub fn assign(plan: &mut Plan) {
    let n = plan.tensors.len();
    let mut first = vec![usize::MAX; n];
    let mut last = vec![0usize; n];
    for (i, k) in plan.kernels.iter().enumerate() {
        for t in k.tensors_read().chain(k.tensors_written()) {
            first[t] = first[t].min(i);
            last[t] = last[t].max(i);
        }
    }
    let mut slots: Vec<Slot> = vec![];
    let mut free: Vec<usize> = vec![];
    let dedicated = |kind: TensorKind| matches!(kind, TensorKind::Input | TensorKind::Output);
    for t in 0..n {
        if dedicated(plan.tensors[t].kind) {
            plan.tensors[t].slot = slots.len();
            slots.push(Slot {
                bytes: plan.tensors[t].bytes,
                tensors: vec![t],
            });
        }
    }
    for (i, k) in plan.kernels.iter().enumerate() {
        let born: Vec<usize> = k
            .tensors_written()
            .filter(|&t| first[t] == i && !dedicated(plan.tensors[t].kind))
            .collect();
        for t in born {
            let need = plan.tensors[t].bytes;
            let fit = free
                .iter()
                .enumerate()
                .filter(|(_, &s)| slots[s].bytes >= need)
                .min_by_key(|(_, &s)| slots[s].bytes)
                .map(|(j, _)| j);
            let pick = fit.or_else(|| {
                free.iter()
                    .enumerate()
                    .max_by_key(|(_, &s)| slots[s].bytes)
                    .map(|(j, _)| j)
            });
            let s = match pick {
                Some(j) => free.swap_remove(j),
                None => {
                    slots.push(Slot {
                        bytes: 0,
                        tensors: vec![],
                    });
                    slots.len() - 1
                }
            };
            slots[s].bytes = slots[s].bytes.max(need);
            slots[s].tensors.push(t);
            plan.tensors[t].slot = s;
        }
        let dying: Vec<usize> = k
            .tensors_read()
            .chain(k.tensors_written())
            .filter(|&t| last[t] == i && !dedicated(plan.tensors[t].kind))
            .collect();
        for t in dying {
            let s = plan.tensors[t].slot;
            if !free.contains(&s) {
                free.push(s);
            }
        }
    }
    plan.slots = slots;
}

#[cfg(test)]
mod tests {
    use effc_ir::{Model, Options, Spec};

    #[test]
    fn live_tensors_never_share_a_slot() {
        for name in ["b0", "v2-s", "lite0", "v2-b0"] {
            let m = Model::build(&Spec::builtin(name).unwrap(), &Options::default()).unwrap();
            let p = crate::plan(&m);
            for k in &p.kernels {
                let mut slots: Vec<usize> = k
                    .tensors_read()
                    .chain(k.tensors_written())
                    .map(|t| p.tensors[t].slot)
                    .collect();
                let n = slots.len();
                slots.sort();
                slots.dedup();
                assert_eq!(
                    slots.len(),
                    n,
                    "{name}: kernel {} binds one buffer twice",
                    k.name
                );
            }
            for t in &p.tensors {
                assert!(p.slots[t.slot].bytes >= t.bytes);
            }
            assert!(p.slots.len() <= 8, "{name}: {} slots", p.slots.len());
        }
    }
}
