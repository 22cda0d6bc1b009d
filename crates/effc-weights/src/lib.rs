//! effc's weights and inputs, for a [`effc_ir::Model`]:
//!
//! - [`Weights`]: a safetensors checkpoint (f32, f16, bf16 or f64) in the timm,
//!   torchvision, TF-port or effc naming, checked tensor by tensor against the
//!   model and keyed by canonical parameter ([`effc_ir::ParamKey`]). A checkpoint
//!   that does not fit is one [`Error::Mismatch`] that lists every problem.
//! - [`load_image`]: a PNG or JPEG file preprocessed the way timm evaluates
//!   (shorter side to `resolution / 0.875` with Pillow's bicubic filter, center
//!   crop, per-channel normalization), bit-for-bit like Pillow's resampler;
//!   files declaring more than [`MAX_IMAGE_PIXELS`] are refused before decoding.
//! - [`imagenet_classes`]: the 1000 ImageNet class names.
//!
//! Invariant: every error a user can cause (a file, its contents) is an [`Error`]
//! naming the file, and the tensor where there is one; nothing here panics on input.

mod checkpoint;
mod classes;
mod error;
mod input;

pub use checkpoint::Weights;
pub use classes::{class_name, imagenet_classes, top_k};
pub use error::{Error, Mismatch};
pub use input::{
    decode_image, image_from_bytes, load_image, preprocess, CROP_PCT, MAX_IMAGE_PIXELS,
};
