//! The generated module's items, as tokens.

use effc_ir::{Model, Options, PaddingMode};
use effc_plan::Plan;
use effc_wgsl::Shader;
use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::quote;

use crate::Shaders;

pub(crate) struct Input<'a> {
    pub model: &'a Model,
    pub plan: &'a Plan,
    pub shaders: &'a [Shader],
    /// At f16, the packed-half spelling of each kernel; empty at f32.
    pub packed_shaders: &'a [Shader],
    pub spec_name: &'a str,
    pub spec_origin: &'a str,
    pub spec_text: &'a str,
    pub options: &'a Options,
    pub max_batch: usize,
    pub module: &'a str,
    pub embed: Shaders,
    pub tracked_file: Option<&'a str>,
}

/// `blocks.1.0.expand` → `BLOCKS_1_0_EXPAND`
pub(crate) fn const_name(kernel: &str) -> String {
    let mut s: String = kernel
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, 'K');
    }
    s
}

pub(crate) fn usize_lit(v: usize) -> Literal {
    u64_lit(v as u64)
}

/// An unsuffixed integer, with `_` between thousands from 10_000 on.
fn u64_lit(v: u64) -> Literal {
    if v < 10_000 {
        return Literal::u64_unsuffixed(v);
    }
    let grouped = effc_ir::cost::group(v).replace(',', "_");
    grouped
        .parse()
        .unwrap_or_else(|_| Literal::u64_unsuffixed(v))
}

fn u32_lit(v: u32) -> Literal {
    Literal::u32_unsuffixed(v)
}

/// A raw string literal (`r#"…"#`, with enough `#`s), so that formatted code
/// shows multi-line text (WGSL, the spec) as it is.
fn raw_str(text: &str) -> Literal {
    // Raw strings cannot hold a bare carriage return.
    if text.contains('\r') {
        return Literal::string(text);
    }
    let mut hashes = 1;
    while text.contains(&format!("\"{}", "#".repeat(hashes))) {
        hashes += 1;
    }
    let h = "#".repeat(hashes);
    format!("r{h}\"{text}\"{h}")
        .parse()
        .unwrap_or_else(|_| Literal::string(text))
}

fn f64_lit(v: f64) -> Literal {
    Literal::f64_unsuffixed(v)
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> TokenStream) -> TokenStream {
    match v {
        Some(v) => {
            let inner = f(v);
            quote!(::efficientnet::__private::Option::Some(#inner))
        }
        None => quote!(::efficientnet::__private::Option::None),
    }
}

/// Thousands separated by `,` for docs.
fn group(n: u64) -> String {
    effc_ir::cost::group(n)
}

/// One `Kernel` constant per kernel (its WGSL inline or `include_str!`d, at f16
/// also the packed spelling), and the constants' names in kernel order.
fn kernel_consts(i: &Input, p: &TokenStream) -> (Vec<TokenStream>, Vec<Ident>) {
    let plan = i.plan;
    let mut kernel_consts = vec![];
    let mut kernel_names = vec![];
    for (n, (k, s)) in plan.kernels.iter().zip(i.shaders).enumerate() {
        let ident = Ident::new(&const_name(&k.name), Span::call_site());
        let name = &k.name;
        let kind = k.kind();
        let layers = &k.layers;
        let [wx, wy, wz] = k.workgroup.map(u32_lit);
        let [gx, gy] = k.grid.map(u32_lit);
        let weights_len = usize_lit(k.weights_len);
        let file_name = &s.file_name;
        let embed = |s: &Shader| match i.embed {
            Shaders::Inline => {
                let src = raw_str(&s.source);
                quote!(#src)
            }
            Shaders::IncludeStr => {
                let f = &s.file_name;
                quote!(include_str!(#f))
            }
        };
        let wgsl = embed(s);
        let wgsl_packed = opt(i.packed_shaders.get(n), embed);
        let out = k.tensors_written().next().map(|t| {
            let t = &plan.tensors[t];
            format!(", output {}×{}×{}", t.h, t.w, t.c)
        });
        let doc = format!(
            " `{name}` ({kind}): {}{}; {gx}×{gy}×batch workgroups of {wx}×{wy}×{wz}.{}",
            k.layers.join(", "),
            out.unwrap_or_default(),
            if i.packed_shaders.is_empty() {
                ""
            } else {
                " f16 storage: `wgsl` native (`enable f16;`), `wgsl_packed` halves in `u32`s."
            }
        );
        kernel_consts.push(quote! {
            #[doc = #doc]
            pub const #ident: #p::Kernel = #p::Kernel {
                name: #name,
                kind: #kind,
                layers: &[#(#layers),*],
                workgroup: [#wx, #wy, #wz],
                grid: [#gx, #gy],
                weights_len: #weights_len,
                file_name: #file_name,
                wgsl: #wgsl,
                wgsl_packed: #wgsl_packed,
            };
        });
        kernel_names.push(ident);
    }

    (kernel_consts, kernel_names)
}

/// The `Overrides` literal of the settings the request overrode.
fn overrides(i: &Input, p: &TokenStream) -> TokenStream {
    let o = i.options;
    let resolution = opt(o.resolution, |v| {
        let v = usize_lit(v);
        quote!(#v)
    });
    let padding = opt(o.padding, |v| match v {
        PaddingMode::Same => quote!(#p::Padding::Same),
        PaddingMode::Symmetric => quote!(#p::Padding::Symmetric),
    });
    let bn_eps = opt(o.bn_eps, |v| {
        let v = f64_lit(v);
        quote!(#v)
    });
    let classes = opt(o.classes, |v| {
        let v = usize_lit(v);
        quote!(#v)
    });
    let features = opt(o.features.as_ref(), |v| {
        let v = v.iter().copied().map(usize_lit);
        quote!(&[#(#v),*])
    });
    quote! {
        #p::Overrides {
            resolution: #resolution,
            padding: #padding,
            bn_eps: #bn_eps,
            classes: #classes,
            features: #features,
        }
    }
}

pub(crate) fn module_items(i: &Input) -> TokenStream {
    let [title, stats, origin_doc] = module_docs(i);
    let tracked = i.tracked_file.map(|f| {
        quote! {
            // Rebuild when the spec file changes.
            const _: &[u8] = include_bytes!(#f);
        }
    });
    let constants = constants(i);
    let model = model_items(i);
    quote! {
        #![doc = #title]
        #![doc = ""]
        #![doc = #stats]
        #![doc = ""]
        #![doc = #origin_doc]
        #![allow(dead_code)]

        #tracked

        #constants

        #model
    }
}

/// The module's doc lines: what it is, its size, where its spec came from.
fn module_docs(i: &Input) -> [String; 3] {
    let m = i.model;
    let plan = i.plan;
    let cost = m.cost();
    let [c, h, w] = m.input;
    let classes = m.classes;
    let features = m.embedding_len();
    let title = format!(
        " EfficientNet `{}` compiled by effc: input {c}×{h}×{w}, {}.",
        effc_ir::names::in_comment(i.spec_name),
        if plan.is_backbone() {
            crate::features::title(plan)
        } else if classes > 0 {
            format!("{classes} classes")
        } else {
            format!("{features} -value embedding (no classifier)")
        }
    );
    let stats = format!(
        " {} parameters, {} multiply-accumulates per image, {} GPU kernels (one dispatch each per forward).",
        group(cost.params),
        group(cost.macs),
        plan.kernels.len()
    );
    let origin_doc = format!(
        " Spec: `{}`{}. Load a checkpoint with [`Model::load`]; see the `efficientnet` crate for the whole surface.",
        effc_ir::names::in_comment(i.spec_origin),
        settings_note(i.options)
    );

    [title, stats, origin_doc]
}

/// The constants: shapes, sizes, normalization, precision, kernels and the
/// definition the loader rebuilds the model from.
fn constants(i: &Input) -> TokenStream {
    let m = i.model;
    let plan = i.plan;
    let cost = m.cost();
    let p = quote!(::efficientnet::__private);
    let [c, h, w] = m.input;
    let (kernel_consts, kernel_names) = kernel_consts(i, &p);
    let overrides = overrides(i, &p);
    let name = i.spec_name;
    let origin = i.spec_origin;
    let spec_text = raw_str(i.spec_text);
    let (c, h, w) = (usize_lit(c), usize_lit(h), usize_lit(w));
    let resolution = usize_lit(m.resolution);
    let classes_lit = usize_lit(m.classes);
    let features = usize_lit(m.embedding_len());
    let output_len = usize_lit(plan.output_len);
    let params = u64_lit(cost.params);
    let macs = u64_lit(cost.macs);
    let mean = m.mean.map(f64_lit);
    let std = m.std.map(f64_lit);
    let activation_bytes = u64_lit(plan.activation_bytes(1) as u64);
    let weight_bytes = u64_lit(plan.weight_bytes() as u64);
    let max_batch = usize_lit(i.max_batch);
    let dispatches = usize_lit(plan.dispatches());
    let plan_hash = plan.fingerprint();
    let precision = match plan.precision {
        effc_plan::Precision::F32 => quote!(#p::Precision::F32),
        effc_plan::Precision::F16 => quote!(#p::Precision::F16),
    };
    let precision_doc = format!(
        " How weights and activations are stored on the GPU: {}.",
        match plan.precision {
            effc_plan::Precision::F32 => "f32",
            effc_plan::Precision::F16 =>
                "f16 (sums in f32; the loader picks native `f16` or packed halves per adapter)",
        }
    );
    let output_doc = if plan.is_backbone() {
        " Values per image in a forward's output: every feature level's (`FEATURE_INFO`), CHW, one after another; `Model::features` splits them."
    } else if m.classes > 0 {
        " Values per image in a forward's output: `CLASSES` logits."
    } else {
        " Values per image in a forward's output: its embedding, `EMBEDDING_LEN` values: the pooled head (the model has no classifier)."
    };
    quote! {
        /// The model's name in its spec.
        pub const NAME: &str = #name;
        /// Where the spec came from.
        pub const SPEC_ORIGIN: &str = #origin;
        /// The `.enet` source the model is built from.
        pub const SPEC: &str = #spec_text;
        /// One input image, CHW: channels, height, width. A batch is NCHW.
        pub const INPUT_SHAPE: [usize; 3] = [#c, #h, #w];
        /// Input height and width in pixels.
        pub const RESOLUTION: usize = #resolution;
        /// Classifier outputs; 0 when the model ends at its embedding.
        pub const CLASSES: usize = #classes_lit;
        /// Values of the embedding: the pooled head, the classifier's input.
        pub const EMBEDDING_LEN: usize = #features;
        #[doc = #output_doc]
        pub const OUTPUT_LEN: usize = #output_len;
        /// Trainable parameters (convolutions, batch-norm scales and shifts, classifier).
        pub const PARAMETERS: u64 = #params;
        /// Multiply-accumulates per image (convolutions and classifier).
        pub const MACS: u64 = #macs;
        /// Per-channel mean of the input normalization: `(x / 255 - MEAN) / STD`.
        pub const MEAN: [f64; 3] = [#(#mean),*];
        /// Per-channel standard deviation of the input normalization.
        pub const STD: [f64; 3] = [#(#std),*];
        #[doc = #precision_doc]
        pub const PRECISION: #p::Precision = #precision;
        /// Bytes of activation buffers per image on the GPU (after liveness-based reuse), at `PRECISION`.
        pub const ACTIVATION_BYTES: u64 = #activation_bytes;
        /// Bytes of packed weights on the GPU (batch norm folded, channels padded to 4), at `PRECISION`.
        pub const WEIGHT_BYTES: u64 = #weight_bytes;
        /// The largest batch a forward takes, unless the loader changes it.
        pub const MAX_BATCH: usize = #max_batch;
        /// Compute dispatches per forward (one per kernel).
        pub const DISPATCHES: usize = #dispatches;

        /// One constant per GPU kernel, in dispatch order: its layers, grid, workgroup and WGSL.
        pub mod kernels {
            #(#kernel_consts)*
        }

        /// Every kernel, in dispatch order.
        pub const KERNELS: &[#p::Kernel] = &[#(kernels::#kernel_names),*];

        /// The spec, options and kernels the loader rebuilds the model from.
        pub const DEFINITION: #p::Definition = #p::Definition {
            name: NAME,
            spec_origin: SPEC_ORIGIN,
            spec: SPEC,
            overrides: #overrides,
            precision: PRECISION,
            max_batch: MAX_BATCH,
            input_shape: INPUT_SHAPE,
            classes: CLASSES,
            output_len: OUTPUT_LEN,
            parameters: PARAMETERS,
            macs: MACS,
            kernels: KERNELS,
            plan_hash: #plan_hash,
        };

    }
}

/// The `Model` type: its loader, forward and the rest of its surface, and the
/// feature-level items of a backbone.
fn model_items(i: &Input) -> TokenStream {
    let p = quote!(::efficientnet::__private);
    let doc_name = effc_ir::names::in_comment(i.spec_name);
    let model_doc = format!(
        " EfficientNet `{doc_name}` on a GPU: pipelines, packed weights and buffers, created once by [`Model::load`]."
    );
    let module = i.module;
    let load_doc = format!(
        " Reads a safetensors checkpoint of `{doc_name}` (timm, torchvision, TF-port or effc names, detected; f32, f16, bf16), folds batch norm, and creates the model on the process's shared GPU (`efficientnet::default_gpu`) for batches up to [`MAX_BATCH`]."
    );
    let use_doc = format!(" `{module}::Model::load(\"weights.safetensors\")?` then `forward`.");
    let feature_items = crate::features::items(i.model, i.plan);
    quote! {
        #[doc = #model_doc]
        ///
        #[doc = #use_doc]
        #[derive(Debug)]
        pub struct Model {
            engine: #p::Engine,
        }

        impl Model {
            #[doc = #load_doc]
            pub fn load(path: impl #p::AsRef<#p::Path>) -> #p::Result<Self, #p::Error> {
                Self::loader().load(path)
            }

            /// As [`Model::load`], from the checkpoint's bytes.
            pub fn from_bytes(bytes: &[u8]) -> #p::Result<Self, #p::Error> {
                Self::loader().from_bytes(bytes)
            }

            /// A loader, to choose the GPU, force the checkpoint naming or change the maximum batch.
            pub fn loader() -> #p::Loader<Self> {
                #p::Loader::new()
            }

            /// Runs a batch: `input` is `batch` images, NCHW f32, normalized (see
            /// [`Model::load_images`]); returns `batch × OUTPUT_LEN` values, image by image.
            pub fn forward(&self, input: &[f32], batch: usize) -> #p::Result<#p::Vec<f32>, #p::Error> {
                self.engine.forward(input, batch)
            }

            /// Writes a batch of `batch` images (NCHW f32) to the GPU, for [`Model::encode`].
            pub fn upload(&self, input: &[f32], batch: usize) -> #p::Result<(), #p::Error> {
                self.engine.upload(input, batch)
            }

            /// Records a forward of the `batch` images last uploaded into `encoder`
            /// (one from this model's device, [`Model::gpu`]), next to your own GPU
            /// work. Submit it, then [`Model::read_output`] returns the output.
            pub fn encode(&self, encoder: &mut #p::CommandEncoder, batch: usize) -> #p::Result<(), #p::Error> {
                self.engine.encode(encoder, batch)
            }

            /// Waits for the GPU and reads the output of a submitted [`Model::encode`]:
            /// `batch × OUTPUT_LEN` values.
            pub fn read_output(&self, batch: usize) -> #p::Result<#p::Vec<f32>, #p::Error> {
                self.engine.read_output(batch)
            }

            /// Reads PNG or JPEG images and preprocesses them as timm evaluates (shorter
            /// side to `RESOLUTION / 0.875`, bicubic, centre crop, `MEAN`/`STD`): a
            /// batch for [`Model::forward`].
            pub fn load_images<P: #p::AsRef<#p::Path>>(&self, paths: &[P]) -> #p::Result<#p::Vec<f32>, #p::Error> {
                self.engine.load_images(paths)
            }

            /// The device the model runs on (its `device` and `queue` are public).
            pub fn gpu(&self) -> &#p::Arc<#p::Gpu> {
                self.engine.gpu()
            }

            /// The largest batch a forward takes.
            pub fn max_batch(&self) -> usize {
                self.engine.max_batch()
            }

            /// The naming the checkpoint was read in.
            pub fn naming(&self) -> #p::Naming {
                self.engine.naming()
            }
        }

        #feature_items

        impl #p::Network for Model {
            const DEFINITION: &'static #p::Definition = &DEFINITION;

            fn from_engine(engine: #p::Engine) -> Self {
                Model { engine }
            }

            fn engine(&self) -> &#p::Engine {
                &self.engine
            }
        }
    }
}

/// `, with resolution = 256, padding = symmetric` for the docs.
fn settings_note(o: &Options) -> String {
    let mut parts = vec![];
    if let Some(r) = o.resolution {
        parts.push(format!("resolution = {r}"));
    }
    if let Some(p) = o.padding {
        parts.push(format!("padding = {}", p.name()));
    }
    if let Some(e) = o.bn_eps {
        parts.push(format!("bn_eps = {e:e}"));
    }
    if let Some(c) = o.classes {
        parts.push(format!("classes = {c}"));
    }
    if let Some(f) = &o.features {
        let f: Vec<String> = f.iter().map(usize::to_string).collect();
        parts.push(format!("features = [{}]", f.join(", ")));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(", with {}", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn raw_strings_escape_nothing_and_round_trip() {
        for text in ["a\nb", "quote \" and \"# inside", "x\r\ny", ""] {
            let lit = super::raw_str(text);
            let parsed: syn::LitStr = syn::parse2(quote::quote!(#lit)).unwrap();
            assert_eq!(parsed.value(), text);
        }
        assert_eq!(super::raw_str("a\"#b").to_string(), "r##\"a\"#b\"##");
    }

    #[test]
    fn const_names() {
        assert_eq!(super::const_name("blocks.1.0.expand"), "BLOCKS_1_0_EXPAND");
        assert_eq!(super::const_name("stem"), "STEM");
        assert_eq!(super::const_name("1x"), "K1X");
    }
}
