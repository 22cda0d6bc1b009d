//! The small writer behind every kernel: the header comment and bindings, the
//! weight-layout constants, activations, and filling a kernel kind's fixed `.wgsl`
//! body (`kernels/*.wgsl`) with the parts generated from the plan.

use std::fmt::Write;

use effc_ir::Activation;
use effc_plan::{ElemType, Kernel, Plan, TensorDesc, TensorKind};

use crate::half::{self, Spelling};

/// Fills `{{KEY}}` placeholders of a kernel body. The body's leading comment (its
/// documentation in the `.wgsl` file) is left out. A placeholder alone on its line
/// is replaced by the value's lines, and the line disappears when the value is
/// empty; elsewhere it is replaced in place.
///
/// # Panics
/// On a placeholder without a value: the bodies are part of this crate, and every
/// kind is tested.
pub(crate) fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut body = template;
    while body.starts_with("//") {
        body = body.split_once('\n').map_or("", |(_, rest)| rest);
    }
    let value = |key: &str| {
        values
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no value for {{{{{key}}}}}"))
    };
    let mut out = String::with_capacity(body.len() * 2);
    for line in body.split_inclusive('\n') {
        let text = line.trim_end_matches('\n');
        let alone = text
            .strip_prefix("{{")
            .and_then(|r| r.strip_suffix("}}"))
            .filter(|k| !k.contains('{') && !k.contains('}'));
        if let Some(key) = alone {
            let v = value(key);
            if !v.is_empty() {
                out.push_str(v);
                out.push_str(&line[text.len()..]);
            }
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("{{") {
            let end = rest[start..].find("}}").expect("a placeholder is closed") + start;
            out.push_str(&rest[..start]);
            out.push_str(value(&rest[start + 2..end]));
            rest = &rest[end + 2..];
        }
        out.push_str(rest);
    }
    out
}

/// The bindings of a kernel stored as f16 (see [`crate::half`]), by name.
pub(crate) fn f16_bindings(plan: &Plan, k: &Kernel) -> Vec<&'static str> {
    k.bindings
        .iter()
        .filter(|b| binding_elem(plan, k, b.tensor) == ElemType::F16)
        .map(|b| b.name)
        .collect()
}

fn binding_elem(plan: &Plan, k: &Kernel, tensor: Option<effc_plan::TensorId>) -> ElemType {
    tensor.map_or(k.layout.elem, |t| plan.tensors[t].elem)
}

/// The header comment (kernel, layers, tensors, dispatch) and the bindings (f16
/// ones in `spelling`, with their accessors).
pub(crate) fn header(o: &mut String, plan: &Plan, k: &Kernel, spelling: Spelling) {
    let _ = writeln!(
        o,
        "// effc kernel `{}` ({}) of model `{}`",
        k.name,
        k.kind(),
        effc_ir::names::in_comment(&plan.model)
    );
    let _ = writeln!(o, "// implements: {}", k.layers.join(", "));
    for b in &k.bindings {
        if let Some(t) = b.tensor {
            let t = &plan.tensors[t];
            let _ = writeln!(o, "// {:<8} {:<24} {}", b.name, t.name, shape_comment(t));
        }
    }
    let _ = writeln!(
        o,
        "// dispatch: {}x{}xN workgroups of {}x{}x{}",
        k.grid[0], k.grid[1], k.workgroup[0], k.workgroup[1], k.workgroup[2]
    );
    let halves = f16_bindings(plan, k);
    if !halves.is_empty() {
        let _ = writeln!(
            o,
            "// f16 storage ({}: {}), f32 arithmetic",
            spelling.name(),
            halves.join(", ")
        );
    }
    let _ = writeln!(o);
    if !halves.is_empty() && spelling == Spelling::Native {
        let _ = writeln!(o, "enable f16;\n");
    }
    for (i, b) in k.bindings.iter().enumerate() {
        let elem = match b.tensor.map(|t| plan.tensors[t].kind) {
            _ if halves.contains(&b.name) => half::elem(spelling).to_string(),
            None => format!("vec4<{}>", k.layout.elem.wgsl()),
            Some(TensorKind::Output) => "f32".into(),
            Some(_) => "vec4<f32>".into(),
        };
        let access = if b.write { "read_write" } else { "read" };
        let _ = writeln!(
            o,
            "@group(0) @binding({i}) var<storage, {access}> {}: array<{elem}>;",
            b.name
        );
    }
    let _ = writeln!(o);
    if !halves.is_empty() {
        for b in k.bindings.iter().filter(|b| halves.contains(&b.name)) {
            half::accessors(o, spelling, b.name, b.write);
        }
        let _ = writeln!(o);
    }
}

fn shape_comment(t: &TensorDesc) -> String {
    match t.kind {
        TensorKind::PoolPartial => format!(
            "pool sums: {} tile{} x {} ch (NHWC vec4, per image)",
            t.h,
            if t.h == 1 { "" } else { "s" },
            t.c
        ),
        TensorKind::Gate => format!("SE gate and hidden: {} values per image", t.c),
        TensorKind::Output => format!("{} f32 per image", t.c),
        _ => format!("{}x{}x{} NHWC, {} vec4/pixel", t.h, t.w, t.c, t.c4),
    }
}

/// One constant per section of the kernel's weight layout: where it starts, in
/// vec4s of `weights`.
pub(crate) fn layout_consts(o: &mut String, k: &Kernel) {
    let _ = writeln!(
        o,
        "// weights ({}), offsets in vec4s:",
        k.layout.elem.wgsl()
    );
    for s in &k.layout.sections {
        let _ = writeln!(o, "const {}: u32 = {}u; // {}", s.name, s.offset4(), s.what);
    }
}

/// The WGSL function `name` applying an activation to a vec4, followed by a blank line.
pub(crate) fn act_fn(name: &str, act: Option<Activation>) -> String {
    let body = match act {
        None => "return x;",
        Some(Activation::Swish) => "return x / (vec4<f32>(1.0) + exp(-x));",
        Some(Activation::Relu) => "return max(x, vec4<f32>(0.0));",
        Some(Activation::Relu6) => "return clamp(x, vec4<f32>(0.0), vec4<f32>(6.0));",
    };
    let what = act.map_or("identity", |a| a.name());
    format!("// {what}\nfn {name}(x: vec4<f32>) -> vec4<f32> {{\n    {body}\n}}\n")
}

/// The gate tensor's stride per image, in vec4s (the gate, then the SE hidden layer).
pub(crate) fn gate_stride(plan: &Plan, k: &Kernel) -> Option<usize> {
    k.bindings
        .iter()
        .find(|b| b.name == "gate")
        .and_then(|b| b.tensor)
        .map(|t| plan.tensors[t].c4)
}

#[cfg(test)]
mod tests {
    use super::fill;

    #[test]
    fn placeholders_alone_on_a_line_vanish_when_empty() {
        let t = "// doc\n// more doc\na\n{{X}}\nb {{Y}} c\n{{Z}}\n";
        assert_eq!(
            fill(t, &[("X", ""), ("Y", "1"), ("Z", "2\n3")]),
            "a\nb 1 c\n2\n3\n"
        );
    }
}
