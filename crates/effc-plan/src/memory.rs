//! The memory plan: tensors share buffers ("slots") when their lifetimes do not
//! overlap. A kernel's inputs and outputs are always in different slots.

use crate::plan::{Kernel, Slot, SlotId, TensorId, TensorKind};

/// The memory plan: the buffers, and the one each tensor lives in.
#[derive(Clone, Debug, PartialEq)]
pub struct Memory {
    pub slots: Vec<Slot>,
    /// By tensor index.
    pub slot_of: Vec<SlotId>,
}

/// Assigns every tensor (given as its kind and bytes per image, by index) to a slot,
/// greedily by liveness over `kernels` in dispatch order (best fit among the free
/// slots, else grow the largest free one, else a new slot). The input and output get
/// slots of their own, so the caller can upload and read them back without
/// disturbing anything else.
pub fn assign(tensors: &[(TensorKind, usize)], kernels: &[Kernel]) -> Memory {
    assign_keeping(tensors, kernels, &[])
}

/// [`assign`], where the tensors of `keep` (a backbone's feature levels) also get
/// buffers of their own: alive from their first write to the end of the forward,
/// and read back after it.
pub fn assign_keeping(
    tensors: &[(TensorKind, usize)],
    kernels: &[Kernel],
    keep: &[TensorId],
) -> Memory {
    let n = tensors.len();
    let mut first = vec![usize::MAX; n];
    let mut last = vec![0usize; n];
    for (i, k) in kernels.iter().enumerate() {
        for t in k.tensors_read().chain(k.tensors_written()) {
            first[t.0] = first[t.0].min(i);
            last[t.0] = last[t.0].max(i);
        }
    }
    let mut slots: Vec<Slot> = vec![];
    let mut slot_of: Vec<Option<SlotId>> = vec![None; n];
    let mut free: Vec<SlotId> = vec![];
    let dedicated = |t: TensorId| {
        matches!(tensors[t.0].0, TensorKind::Input | TensorKind::Output) || keep.contains(&t)
    };
    for t in (0..n).map(TensorId) {
        if dedicated(t) {
            slot_of[t.0] = Some(SlotId(slots.len()));
            slots.push(Slot {
                bytes: tensors[t.0].1,
                tensors: vec![t],
            });
        }
    }
    for (i, k) in kernels.iter().enumerate() {
        let born: Vec<TensorId> = k
            .tensors_written()
            .filter(|&t| first[t.0] == i && !dedicated(t))
            .collect();
        for t in born {
            let need = tensors[t.0].1;
            let fit = free
                .iter()
                .enumerate()
                .filter(|(_, &s)| slots[s.0].bytes >= need)
                .min_by_key(|(_, &s)| slots[s.0].bytes)
                .map(|(j, _)| j);
            let pick = fit.or_else(|| {
                free.iter()
                    .enumerate()
                    .max_by_key(|(_, &s)| slots[s.0].bytes)
                    .map(|(j, _)| j)
            });
            let s = match pick {
                Some(j) => free.swap_remove(j),
                None => {
                    slots.push(Slot {
                        bytes: 0,
                        tensors: vec![],
                    });
                    SlotId(slots.len() - 1)
                }
            };
            slots[s.0].bytes = slots[s.0].bytes.max(need);
            slots[s.0].tensors.push(t);
            slot_of[t.0] = Some(s);
        }
        let dying: Vec<TensorId> = k
            .tensors_read()
            .chain(k.tensors_written())
            .filter(|&t| last[t.0] == i && !dedicated(t))
            .collect();
        for t in dying {
            let s = slot_of[t.0].expect("a tensor is written before it dies");
            if !free.contains(&s) {
                free.push(s);
            }
        }
    }
    // A tensor no kernel touches (there is none in a plan from `fuse`) still gets a
    // buffer of its own, so every tensor has one.
    let slot_of = slot_of
        .into_iter()
        .enumerate()
        .map(|(t, s)| {
            s.unwrap_or_else(|| {
                slots.push(Slot {
                    bytes: tensors[t].1,
                    tensors: vec![TensorId(t)],
                });
                SlotId(slots.len() - 1)
            })
        })
        .collect();
    Memory { slots, slot_of }
}

#[cfg(test)]
mod tests {
    use effc_ir::{Model, Options, Spec};

    #[test]
    fn few_buffers_and_a_valid_plan() {
        for name in ["b0", "v2-s", "lite0", "v2-b0"] {
            let m = Model::build(&Spec::builtin(name).unwrap(), &Options::default()).unwrap();
            let p = crate::plan(&m);
            // `validate` checks that live tensors never share a buffer.
            assert_eq!(p.validate(), Ok(()), "{name}");
            assert!(p.slots.len() <= 8, "{name}: {} slots", p.slots.len());
        }
    }
}
