//! The syntax tree of a `.enet` file. Every node keeps its span.

use crate::diag::Span;

/// A value with the span of the text it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned<T> {
    pub node: T,
    pub span: Span,
}

impl<T> Spanned<T> {
    pub fn new(node: T, span: Span) -> Self {
        Spanned { node, span }
    }
}

/// A parsed file: its models, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct File {
    pub models: Vec<ModelDecl>,
}

/// `model NAME [extends BASE] { ... }`
#[derive(Clone, Debug, PartialEq)]
pub struct ModelDecl {
    pub name: Spanned<String>,
    pub base: Option<Spanned<String>>,
    /// Model settings in source order (duplicates are kept; the resolver reports them).
    pub settings: Vec<Setting>,
    /// Every `blocks { ... }` section (more than one is an error, reported by the resolver).
    pub blocks: Vec<BlocksDecl>,
    /// Every `training { ... }` section.
    pub training: Vec<TrainingDecl>,
    /// The whole declaration.
    pub span: Span,
}

/// `key = value`
#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    pub key: Spanned<String>,
    pub value: Spanned<Value>,
}

/// A setting's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A number, with its text (so `224` and `224.0` can be told apart).
    Number(f64, String),
    /// A bare word: `swish`, `same`, `true`, `v2`.
    Word(String),
    /// `[a, b, c]`
    List(Vec<Spanned<f64>>),
    /// `a .. b`
    Range(f64, f64),
}

impl Value {
    /// What kind of value this is, for error messages.
    pub fn describe(&self) -> &'static str {
        match self {
            Value::Number(..) => "a number",
            Value::Word(_) => "a word",
            Value::List(_) => "a list",
            Value::Range(..) => "a range",
        }
    }
}

/// `blocks { r1_k3_s11_e1_i32_o16_se0.25 ... }`
#[derive(Clone, Debug, PartialEq)]
pub struct BlocksDecl {
    /// The `blocks` keyword.
    pub span: Span,
    pub strings: Vec<Spanned<String>>,
}

/// `training { size = 300 ... }`
#[derive(Clone, Debug, PartialEq)]
pub struct TrainingDecl {
    pub span: Span,
    pub settings: Vec<Setting>,
}
