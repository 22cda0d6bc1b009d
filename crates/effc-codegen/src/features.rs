//! A backbone's items in the generated module (`features = [..]`): the
//! `FEATURE_INFO` constant and `Model::features` / `Model::read_features`, which
//! return the levels as a typed list of NCHW maps. Nothing for other models.

use effc_ir::Model;
use effc_plan::Plan;
use proc_macro2::TokenStream;
use quote::quote;

use crate::emit::usize_lit;

/// The module title's output part: `feature levels 1, 2, 3, 4 (…)`.
pub(crate) fn title(plan: &Plan) -> String {
    let levels: Vec<String> = plan
        .features
        .iter()
        .map(|f| format!("{} ({}×{}×{})", f.level, f.channels, f.h, f.w))
        .collect();
    format!(
        "feature levels {} (a backbone: no head, no classifier)",
        levels.join(", ")
    )
}

pub(crate) fn items(model: &Model, plan: &Plan) -> TokenStream {
    if !plan.is_backbone() {
        return TokenStream::new();
    }
    let p = quote!(::efficientnet::__private);
    let infos = plan.features.iter().map(|f| {
        let path = model
            .blocks()
            .find(|b| b.id == f.block)
            .map_or_else(|| format!("block {}", f.block), |b| b.path());
        let [level, channels, reduction, height, width, block] =
            [f.level, f.channels, f.reduction, f.h, f.w, f.block].map(usize_lit);
        quote! {
            #p::FeatureInfo {
                level: #level,
                channels: #channels,
                reduction: #reduction,
                height: #height,
                width: #width,
                block: #block,
                block_path: #path,
            }
        }
    });
    quote! {
        /// The feature levels the model ends at, in level order: what
        /// [`Model::features`] returns (level, channels, reduction, size and the IR
        /// block each comes from).
        pub const FEATURE_INFO: &[#p::FeatureInfo] = &[#(#infos),*];

        impl Model {
            /// Runs a batch (`batch` images, NCHW f32, normalized) and returns each
            /// feature level of [`FEATURE_INFO`], in order, as an NCHW map of the batch.
            pub fn features(&self, input: &[f32], batch: usize) -> #p::Result<#p::Vec<#p::FeatureMap>, #p::Error> {
                self.engine.features(input, batch)
            }

            /// Waits for the GPU and reads the feature levels of a submitted
            /// [`Model::encode`], as [`Model::features`] returns them.
            pub fn read_features(&self, batch: usize) -> #p::Result<#p::Vec<#p::FeatureMap>, #p::Error> {
                self.engine.read_features(batch)
            }
        }
    }
}
