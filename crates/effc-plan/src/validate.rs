//! The plan's invariants, stated once: [`Plan::validate`] checks them. The fusion
//! pass runs it in debug builds; the tests run it on every built-in, every spec of
//! `tests/specs` and tuned plans. The WGSL backend and the runtime rely on each.

use crate::plan::{ALoad, Kernel, Op, Plan, TensorDesc, TensorKind};

impl Plan {
    /// Checks every invariant the shaders and the runtime rely on, and says which
    /// one fails first:
    ///
    /// 1. Bindings: the packed weights first, then the tensors read, then those
    ///    written; names unique within a kernel.
    /// 2. A kernel never binds one buffer (slot) twice.
    /// 3. Every tensor read is the input or was written by an earlier kernel; the
    ///    output is written; tensors are written by one kernel only.
    /// 4. The input and the output have buffers of their own.
    /// 5. Tensors alive at once never share a buffer, and every buffer holds its
    ///    largest tensor.
    /// 6. Weight layouts: sections on vec4 boundaries, one after another, and the
    ///    kernel's weight length is the layout's.
    /// 7. Grid × workgroup covers each kernel's work, and the workgroup is the one
    ///    its tiles imply.
    /// 8. Pooling partial sums: a kernel that pools writes a `pool` tensor of
    ///    partial sums, one row per workgroup tile, as many as its grid has; the
    ///    reader adds up that many and divides by the writer's pixel count.
    /// 9. Each kernel binds exactly the buffers its op uses, by the names its shader
    ///    gives them, and the tensors it writes have the op's output shape.
    /// 10. A backbone's feature levels ([`crate::features`]): in level order, each an
    ///     activation of its level's shape written by a kernel, in a buffer of its
    ///     own; the output is the last level, the output length their sum, and the
    ///     last kernel writes the last level (no head, no classifier).
    /// 11. Storage follows the plan's precision: weights and activations at it,
    ///     pooling sums, gates and the output f32; activation bytes are their
    ///     padded size at their element type.
    ///
    /// Ids out of range are reported, never indexed: a broken plan is an error, not
    /// a panic.
    pub fn validate(&self) -> Result<(), String> {
        self.check_ids()?;
        self.check_storage()?;
        let n = self.tensors.len();
        let mut writer: Vec<Option<usize>> = vec![None; n];
        let mut first = vec![usize::MAX; n];
        let mut last = vec![0usize; n];
        for (i, k) in self.kernels.iter().enumerate() {
            self.check_binding_order(k)?;
            // 9
            self.check_bindings(k)?;
            self.check_distinct_buffers(k)?;
            let name = &k.name;
            // 3
            for t in k.tensors_read() {
                let ok = t == self.input || writer[t.0].is_some_and(|w| w < i);
                if !ok {
                    let t = &self.tensors[t];
                    return Err(format!("{name}: reads `{}` before it is written", t.name));
                }
            }
            for t in k.tensors_written() {
                if let Some(w) = writer[t.0] {
                    return Err(format!(
                        "{name}: writes `{}`, already written by `{}`",
                        self.tensors[t].name, self.kernels[w].name
                    ));
                }
                writer[t.0] = Some(i);
            }
            for t in k.tensors_read().chain(k.tensors_written()) {
                first[t.0] = first[t.0].min(i);
                last[t.0] = last[t.0].max(i);
            }
            Self::check_layout(k)?;
            // 7 and 8
            self.check_work(i)?;
        }
        if writer[self.output.0].is_none() {
            return Err("no kernel writes the output".into());
        }
        self.check_io_buffers()?;
        // 10
        self.check_features()?;
        self.check_slots(&first, &last)
    }

    /// Every id in range: the input, the output, each tensor's buffer, each
    /// buffer's tensors.
    fn check_ids(&self) -> Result<(), String> {
        let n = self.tensors.len();
        for (what, t) in [("input", self.input), ("output", self.output)] {
            if t.0 >= n {
                return Err(format!("the {what} is tensor {} of {n}", t.0));
            }
        }
        for t in &self.tensors {
            if t.slot.0 >= self.slots.len() {
                return Err(format!(
                    "`{}` lives in buffer #{} of {}",
                    t.name,
                    t.slot.0,
                    self.slots.len()
                ));
            }
        }
        for (si, s) in self.slots.iter().enumerate() {
            if let Some(t) = s.tensors.iter().find(|t| t.0 >= n) {
                return Err(format!("buffer #{si} lists tensor {} of {n}", t.0));
            }
        }
        Ok(())
    }

    /// Invariant 11: storage at the plan's precision.
    fn check_storage(&self) -> Result<(), String> {
        for t in &self.tensors {
            let elem = self.precision.tensor_elem(t.kind);
            let padded = t.h * t.w * t.c4 * 4 * elem.bytes();
            let sized =
                !matches!(t.kind, TensorKind::Input | TensorKind::Activation) || t.bytes == padded;
            if t.elem != elem || !sized {
                return Err(format!(
                    "`{}` is stored as {} in {} bytes; a {} plan stores it as {} in {padded}",
                    t.name,
                    t.elem.wgsl(),
                    t.bytes,
                    self.precision,
                    elem.wgsl()
                ));
            }
        }
        if let Some(k) = self
            .kernels
            .iter()
            .find(|k| k.layout.elem != self.precision.elem())
        {
            return Err(format!(
                "kernel `{}` stores its weights as {} in a {} plan",
                k.name,
                k.layout.elem.wgsl(),
                self.precision
            ));
        }
        Ok(())
    }

    /// Invariant 1: the weights are binding 0 and only it, reads before writes,
    /// each binding name once, each tensor id in range.
    fn check_binding_order(&self, k: &Kernel) -> Result<(), String> {
        let n = self.tensors.len();
        let name = &k.name;
        if k.bindings.first().map(|b| b.tensor.is_some()) != Some(false)
            || k.bindings[1..].iter().any(|b| b.tensor.is_none())
        {
            return Err(format!(
                "{name}: the weights must be binding 0, and only it"
            ));
        }
        if k.bindings[1..]
            .windows(2)
            .any(|w| w[0].write && !w[1].write)
        {
            return Err(format!("{name}: a tensor read is bound after one written"));
        }
        for (j, b) in k.bindings.iter().enumerate() {
            if k.bindings[..j].iter().any(|o| o.name == b.name) {
                return Err(format!("{name}: binding `{}` twice", b.name));
            }
            if let Some(t) = b.tensor {
                if t.0 >= n {
                    return Err(format!("{name}: binds tensor {} of {n}", t.0));
                }
            }
        }
        Ok(())
    }

    /// Invariant 2: a kernel binds each buffer once.
    fn check_distinct_buffers(&self, k: &Kernel) -> Result<(), String> {
        let name = &k.name;
        let mut slots: Vec<_> = k
            .tensors_read()
            .chain(k.tensors_written())
            .map(|t| self.tensors[t].slot)
            .collect();
        let bound = slots.len();
        slots.sort();
        slots.dedup();
        if slots.len() != bound {
            return Err(format!("{name}: binds one buffer twice"));
        }
        Ok(())
    }

    /// Invariant 6: weight sections follow each other at vec4 boundaries, whole
    /// rows, each name once, and the layout holds the kernel's weights.
    fn check_layout(k: &Kernel) -> Result<(), String> {
        let name = &k.name;
        let mut end = 0;
        for (j, s) in k.layout.sections.iter().enumerate() {
            if s.offset != end || s.offset % 4 != 0 || s.len % 4 != 0 || s.row % 4 != 0 {
                return Err(format!(
                    "{name}: weight section `{}` at {} (+{}) does not follow the previous one at a vec4 boundary",
                    s.name, s.offset, s.len
                ));
            }
            if s.row == 0 || s.len % s.row != 0 {
                return Err(format!(
                    "{name}: weight section `{}` of {} elements is not whole rows of {}",
                    s.name, s.len, s.row
                ));
            }
            if k.layout.sections[..j].iter().any(|o| o.name == s.name) {
                return Err(format!("{name}: weight section `{}` twice", s.name));
            }
            end = s.offset + s.len;
        }
        if k.weights_len != k.layout.len() || k.layout.is_empty() {
            return Err(format!(
                "{name}: {} weights, but its layout holds {}",
                k.weights_len,
                k.layout.len()
            ));
        }
        Ok(())
    }

    /// Invariant 4: the input and the output have buffers of their own.
    fn check_io_buffers(&self) -> Result<(), String> {
        for t in [self.input, self.output] {
            let s = &self.slots[self.tensors[t].slot];
            if s.tensors != [t] {
                return Err(format!(
                    "`{}` shares its buffer with other tensors",
                    self.tensors[t].name
                ));
            }
        }
        Ok(())
    }

    /// Invariant 5: tensors sharing a buffer fit it, are listed where they live,
    /// and are never alive at once (`first`/`last`: the kernels using each).
    fn check_slots(&self, first: &[usize], last: &[usize]) -> Result<(), String> {
        for (si, s) in self.slots.iter().enumerate() {
            for (a, &ta) in s.tensors.iter().enumerate() {
                let t = &self.tensors[ta];
                if t.slot.0 != si {
                    return Err(format!(
                        "`{}` is listed in buffer #{si} but lives in #{}",
                        t.name, t.slot.0
                    ));
                }
                if t.bytes > s.bytes {
                    return Err(format!(
                        "`{}` ({} bytes) does not fit buffer #{si} ({} bytes)",
                        t.name, t.bytes, s.bytes
                    ));
                }
                for &tb in &s.tensors[..a] {
                    let overlap = first[ta.0] <= last[tb.0] && first[tb.0] <= last[ta.0];
                    if overlap {
                        return Err(format!(
                            "`{}` and `{}` are alive at once in buffer #{si}",
                            self.tensors[tb].name, t.name
                        ));
                    }
                }
            }
        }
        for (ti, t) in self.tensors.iter().enumerate() {
            if !self.slots[t.slot].tensors.iter().any(|x| x.0 == ti) {
                return Err(format!("`{}` is missing from its buffer's list", t.name));
            }
        }
        Ok(())
    }

    /// Invariants 7 and 8 for kernel `i`.
    fn check_work(&self, i: usize) -> Result<(), String> {
        let k = &self.kernels[i];
        let name = &k.name;
        let [gx, gy] = k.grid.map(|g| g as usize);
        let [wx, wy, wz] = k.workgroup.map(|w| w as usize);
        // The partial sums a pooling kernel writes, or a reducing kernel reads: as
        // many rows as tiles, the op's channels, and (for the reader) the pixel
        // count of the kernel that wrote them.
        let check_partials = |tiles: usize, c4: usize, hw: Option<usize>| -> Result<(), String> {
            let Some(t) = self.bound(k, "pool") else {
                return Err(format!("{name}: pools, but binds no partial sums"));
            };
            if t.kind != TensorKind::PoolPartial || t.h != tiles || t.c4 != c4 {
                return Err(format!(
                    "{name}: {tiles} pooling tiles of {c4} vec4s, but `{}` ({:?}) holds {} partial sums of {}",
                    t.name, t.kind, t.h, t.c4
                ));
            }
            let Some(hw) = hw else { return Ok(()) };
            let pool = k
                .bindings
                .iter()
                .find(|b| b.name == "pool")
                .and_then(|b| b.tensor);
            let pixels = self.kernels[..i]
                .iter()
                .find(|w| w.tensors_written().any(|x| Some(x) == pool))
                .and_then(|w| match &w.op {
                    Op::Gemm(g) => Some(g.m()),
                    Op::Depthwise(d) => Some(d.out_h * d.out_w),
                    _ => None,
                });
            if pixels != Some(hw) {
                return Err(format!(
                    "{name}: divides by {hw} pixels, but `{}` sums {pixels:?}",
                    t.name
                ));
            }
            Ok(())
        };
        match &k.op {
            Op::Gemm(g) => {
                if [wx, wy, wz] != [g.tile_n4, g.tile_m / g.rows_per_thread.max(1), 1]
                    || g.tile_m % g.rows_per_thread.max(1) != 0
                {
                    return Err(format!(
                        "{name}: workgroup {:?} is not its GEMM tiles'",
                        k.workgroup
                    ));
                }
                if gx * g.tile_n4 < g.cout4 || gy * g.tile_m < g.m() {
                    return Err(format!(
                        "{name}: grid {:?} does not cover {}x{} vec4 outputs",
                        k.grid,
                        g.m(),
                        g.cout4
                    ));
                }
                if g.epilogue.pool {
                    // One partial row per workgroup row: no more, no fewer.
                    if gy != g.tiles_m() {
                        return Err(format!(
                            "{name}: grid {:?} pools over {gy} tiles, not its {}",
                            k.grid,
                            g.tiles_m()
                        ));
                    }
                    check_partials(g.tiles_m(), g.cout4, None)?;
                }
            }
            Op::Depthwise(d) => {
                if [wx, wy, wz] != [d.tiles.lanes_c4, d.tiles.lanes_run, 1] {
                    return Err(format!(
                        "{name}: workgroup {:?} is not its tiles'",
                        k.workgroup
                    ));
                }
                if gx * d.tiles.lanes_c4 < d.c4 || gy != d.tiles() {
                    return Err(format!(
                        "{name}: grid {:?} does not cover {} vec4 channels in {} tiles",
                        k.grid,
                        d.c4,
                        d.tiles()
                    ));
                }
                if d.pool {
                    check_partials(d.tiles(), d.c4, None)?;
                }
            }
            Op::Se(s) => {
                // One workgroup per image; its invocations stride over the channels.
                if [gx, gy] != [1, 1] || wy * wz != 1 {
                    return Err(format!(
                        "{name}: grid {:?} is not one workgroup per image",
                        k.grid
                    ));
                }
                check_partials(s.tiles, s.c4, Some(s.hw))?;
            }
            Op::Classifier(c) => {
                let outputs = if c.classes > 0 { c.classes } else { c.c };
                if gx * wx < outputs || wy * wz != 1 {
                    return Err(format!(
                        "{name}: {} invocations cannot cover the output",
                        gx * wx
                    ));
                }
                check_partials(c.tiles, c.c4, Some(c.hw))?;
            }
        }
        Ok(())
    }
}

impl Plan {
    /// The tensor kernel `k` binds as `name`, if any (ids already checked).
    fn bound(&self, k: &Kernel, name: &str) -> Option<&TensorDesc> {
        k.bindings
            .iter()
            .find(|b| b.name == name)
            .and_then(|b| b.tensor)
            .map(|t| &self.tensors[t])
    }

    /// Invariant 9 for kernel `k`: the bindings its shader declares, in order, and
    /// the shapes of the tensors it reads and writes.
    fn check_bindings(&self, k: &Kernel) -> Result<(), String> {
        let name = &k.name;
        let mut want = vec!["weights"];
        match &k.op {
            Op::Gemm(g) => {
                want.push("src");
                if matches!(g.a, ALoad::Pointwise { gated: true }) {
                    want.push("gate");
                }
                if g.epilogue.residual && !g.epilogue.residual_is_src {
                    want.push("residual");
                }
                if g.epilogue.store {
                    want.push("dst");
                }
                if g.epilogue.pool {
                    want.push("pool");
                }
            }
            Op::Depthwise(d) => {
                want.extend(["src", "dst"]);
                if d.pool {
                    want.push("pool");
                }
            }
            Op::Se(_) => want.extend(["pool", "gate"]),
            Op::Classifier(_) => want.extend(["pool", "dst"]),
        }
        let have: Vec<_> = k.bindings.iter().map(|b| b.name).collect();
        if have != want {
            return Err(format!("{name}: binds {have:?}, its op uses {want:?}"));
        }
        let shape = |binding: &str, h: usize, w: usize, c4: usize| -> Result<(), String> {
            match self.bound(k, binding) {
                Some(t) if [t.h, t.w, t.c4] != [h, w, c4] => Err(format!(
                    "{name}: `{binding}` is `{}` of {}x{}x{} vec4s, the op's is {h}x{w}x{c4}",
                    t.name, t.h, t.w, t.c4
                )),
                _ => Ok(()),
            }
        };
        match &k.op {
            Op::Gemm(g) => {
                shape("dst", g.out_h, g.out_w, g.cout4)?;
                match g.a {
                    ALoad::Conv { in_h, in_w, .. } => shape("src", in_h, in_w, g.cin4)?,
                    ALoad::Pointwise { .. } => {
                        let src = self.bound(k, "src").expect("checked above");
                        if src.h * src.w != g.m() || src.c4 != g.cin4 || g.k != g.cin4 * 4 {
                            return Err(format!(
                                "{name}: `{}` is not {} pixels of {} vec4s",
                                src.name,
                                g.m(),
                                g.cin4
                            ));
                        }
                    }
                }
                if g.epilogue.residual {
                    let r = if g.epilogue.residual_is_src {
                        "src"
                    } else {
                        "residual"
                    };
                    shape(r, g.out_h, g.out_w, g.cout4)?;
                }
            }
            Op::Depthwise(d) => {
                shape("src", d.in_h, d.in_w, d.c4)?;
                shape("dst", d.out_h, d.out_w, d.c4)?;
            }
            Op::Se(_) | Op::Classifier(_) => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use effc_ir::{Model, Options, Spec};

    use crate::plan::{Binding, SlotId, TensorId};
    use crate::{plan, plan_tuned, tune, Plan, Tuning};

    fn b0() -> Plan {
        let m = Model::build(&Spec::builtin("b0").unwrap(), &Options::default()).unwrap();
        plan(&m)
    }

    #[test]
    fn every_builtin_and_spec_plans_validly() {
        for name in effc_catalog::names() {
            let spec = Spec::builtin(name).unwrap();
            for options in [
                Options::default(),
                Options {
                    resolution: Some(64),
                    classes: Some(0),
                    ..Default::default()
                },
            ] {
                let m = Model::build(&spec, &options).unwrap();
                assert_eq!(plan(&m).validate(), Ok(()), "{name}");
            }
        }
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/specs");
        let mut seen = 0;
        for sub in ["ok", "gpu"] {
            for e in std::fs::read_dir(format!("{dir}/{sub}")).unwrap() {
                let path = e.unwrap().path();
                let text = std::fs::read_to_string(&path).unwrap();
                let spec = Spec::parse_model(&path.display().to_string(), &text, None).unwrap();
                let m = Model::build(&spec, &Options::default()).unwrap();
                assert_eq!(plan(&m).validate(), Ok(()), "{}", path.display());
                seen += 1;
            }
        }
        assert!(seen >= 16, "{seen} specs");
    }

    #[test]
    fn tuned_plans_are_valid() {
        let m = Model::build(&Spec::builtin("v2-b0").unwrap(), &Options::default()).unwrap();
        let base = plan(&m);
        for pick in [1, 3, 7] {
            let mut t = Tuning::default();
            for k in &base.kernels {
                let c = tune::candidates(k);
                if let (Some(key), Some(&tiles)) =
                    (&k.tune_key, c.get(pick.min(c.len().max(1) - 1)))
                {
                    t.set(key, tiles);
                }
            }
            assert_eq!(plan_tuned(&m, &t).validate(), Ok(()), "candidate {pick}");
        }
    }

    #[test]
    fn broken_plans_are_refused() {
        let err = |mutate: &dyn Fn(&mut Plan)| {
            let mut p = b0();
            mutate(&mut p);
            p.validate().expect_err("a broken plan passed")
        };
        // Weights not first.
        assert!(err(&|p| p.kernels[3].bindings.swap(0, 1)).contains("binding 0"));
        // A read after a write.
        assert!(err(&|p| {
            let k = &mut p.kernels[0];
            k.bindings.push(Binding::read("late", TensorId(0)));
        })
        .contains("after one written"));
        // Two live tensors in one buffer: the stem output moved into the next one's.
        assert!(err(&|p| {
            let (a, b) = (
                p.kernels[1].tensors_read().next().unwrap(),
                p.kernels[1].tensors_written().next().unwrap(),
            );
            let sb = p.tensors[b].slot;
            let sa = p.tensors[a].slot;
            p.slots[sa.0].tensors.retain(|&t| t != a);
            p.slots[sb.0].tensors.push(a);
            p.tensors[a].slot = sb;
        })
        .contains("buffer twice"));
        // The output shares its buffer.
        assert!(err(&|p| {
            let s: SlotId = p.tensors[p.output].slot;
            p.slots[s.0].tensors.push(TensorId(1));
        })
        .contains("shares its buffer"));
        // A layout whose length is not the kernel's.
        assert!(err(&|p| p.kernels[5].weights_len += 4).contains("layout holds"));
        // A grid one workgroup short.
        assert!(err(&|p| p.kernels[2].grid[1] -= 1).contains("grid"));
        // The SE kernel adding up fewer partials than its depthwise conv writes.
        assert!(err(&|p| {
            let k = p.kernels.iter_mut().find(|k| k.kind() == "se").unwrap();
            if let crate::Op::Se(s) = &mut k.op {
                s.tiles += 1;
            }
        })
        .contains("partial sums"));
        // The SE kernel dividing by another pixel count than its depthwise conv's.
        assert!(err(&|p| {
            let k = p.kernels.iter_mut().find(|k| k.kind() == "se").unwrap();
            if let crate::Op::Se(s) = &mut k.op {
                s.hw += 1;
            }
        })
        .contains("pixels"));
        // The head pooling over one workgroup row more than it has partial rows for.
        assert!(err(&|p| {
            let k = p.kernels.iter_mut().find(|k| k.kind() == "head").unwrap();
            k.grid[1] += 1;
        })
        .contains("pools over"));
        // A pooling depthwise conv whose partial sums are not bound.
        assert!(err(&|p| {
            let k = p
                .kernels
                .iter_mut()
                .find(|k| k.kind() == "depthwise")
                .unwrap();
            k.bindings.retain(|b| b.name != "pool");
        })
        .contains("its op uses"));
        // A GEMM writing a tensor of another shape than its output.
        assert!(err(&|p| {
            let k = p
                .kernels
                .iter_mut()
                .find(|k| k.kind() == "pointwise")
                .unwrap();
            if let crate::Op::Gemm(g) = &mut k.op {
                g.out_w += 1;
            }
        })
        .contains("the op's is"));
        // Two sections of one name.
        assert!(err(&|p| {
            let l = &mut p.kernels[0].layout;
            l.sections[1].name = l.sections[0].name;
        })
        .contains("twice"));
        // Ids out of range are errors, not panics.
        assert!(err(&|p| p.output = TensorId(p.tensors.len())).contains("the output"));
        assert!(err(&|p| p.tensors[3].slot = SlotId(p.slots.len())).contains("lives in"));
        assert!(err(&|p| p.slots[0].tensors.push(TensorId(usize::MAX))).contains("lists"));
    }

    #[test]
    fn the_fingerprint_sees_a_layout_change_of_the_same_length() {
        let p = b0();
        assert_eq!(p.fingerprint(), b0().fingerprint());
        assert_eq!(p.fingerprint().len(), 16);
        let mut q = p.clone();
        let l = &mut q.kernels[1].layout;
        let (a, b) = (l.sections[0].clone(), l.sections[1].clone());
        l.sections[0].name = b.name;
        l.sections[1].name = a.name;
        assert_eq!(p.kernels[1].weights_len, q.kernels[1].weights_len);
        assert_ne!(p.fingerprint(), q.fingerprint());
    }
}
