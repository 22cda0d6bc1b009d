//! The printed plan (`effc inspect --kernels`): one line per kernel, then the buffers.

use std::fmt;

use crate::plan::Plan;

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "kernel plan of {}{}: {} kernels, {} dispatches per forward, {} buffers",
            self.model,
            match self.precision {
                crate::Precision::F32 => "",
                crate::Precision::F16 => " (f16 storage, f32 sums)",
            },
            self.kernels.len(),
            self.dispatches(),
            self.slots.len()
        )?;
        writeln!(
            f,
            "{:<24} {:<11} {:>16} {:>12} {:>10}  implements",
            "kernel", "kind", "output", "workgroups", "weights"
        )?;
        for k in &self.kernels {
            let out = k.tensors_written().next().map(|t| {
                let t = &self.tensors[t];
                format!("{}x{}x{}", t.h, t.w, t.c)
            });
            writeln!(
                f,
                "{:<24} {:<11} {:>16} {:>12} {:>10}  {}",
                k.name,
                k.kind(),
                out.unwrap_or_default(),
                format!("{}x{}xN", k.grid[0], k.grid[1]),
                k.weights_len,
                k.layers.join(", ")
            )?;
        }
        writeln!(f, "buffers (bytes per image):")?;
        for (i, s) in self.slots.iter().enumerate() {
            let names: Vec<&str> = s
                .tensors
                .iter()
                .map(|t| self.tensors[*t].name.as_str())
                .collect();
            let shown = if names.len() > 6 {
                format!("{}, ... ({} tensors)", names[..6].join(", "), names.len())
            } else {
                names.join(", ")
            };
            writeln!(f, "  #{i:<2} {:>12}  {}", s.bytes, shown)?;
        }
        if self.is_backbone() {
            writeln!(
                f,
                "feature levels (CxHxW, read back after the last kernel):"
            )?;
        }
        for l in &self.features {
            let t = &self.tensors[l.tensor];
            writeln!(
                f,
                "  level {}  {:<12} reduction {:>2}  `{}` in buffer #{}",
                l.level,
                format!("{}x{}x{}", l.channels, l.h, l.w),
                l.reduction,
                t.name,
                t.slot.index()
            )?;
        }
        writeln!(
            f,
            "activations {} bytes per image in {} buffers; weights {} bytes",
            self.activation_bytes(1),
            self.slots.len(),
            self.weight_bytes()
        )
    }
}
