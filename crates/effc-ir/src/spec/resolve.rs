//! Resolving the models of a file: `extends` through the same file and the catalog,
//! each model once (memoized), chains bounded by [`MAX_EXTENDS_CHAIN`], settings
//! applied over the base's, and the names of what is unknown or given twice.

use super::settings::{apply_model_setting, apply_training_setting};
use super::*;

/// The most models one chain of `extends` may hold, the model itself and the
/// built-in models it reaches included.
pub const MAX_EXTENDS_CHAIN: usize = 64;

/// Resolves the models of one file, following `extends` through the same file and
/// the catalog. Each model is resolved once (memoized by its index), so resolving
/// every model of a file is linear in the number of models, and an error in a base
/// is reported once, not again for every model that extends it.
#[derive(Default)]
pub(super) struct Resolver {
    /// Built-in models being resolved, for cycle detection.
    stack: Vec<String>,
    /// Per model of the file: its spec and the length of its chain, or `None` when
    /// it failed (its errors were returned when it was first resolved).
    memo: HashMap<usize, Option<(Spec, usize)>>,
    /// Per model of the file: the index of its base when that is an earlier model of
    /// the file; and each name's last declaration.
    index: Option<FileIndex>,
}

/// Per model of a file, its base's index when that is an earlier model of the
/// file; and each name's last declaration.
type FileIndex = (Vec<Option<usize>>, HashMap<String, usize>);

impl Resolver {
    pub(super) fn builtin(
        &mut self,
        name: &str,
        used_at: Option<&Loc>,
    ) -> Result<(Spec, usize), Vec<Diagnostic>> {
        let Some(text) = effc_catalog::source(name) else {
            let names: Vec<&str> = effc_catalog::names().collect();
            let mut d = match used_at {
                Some(loc) => Diagnostic::error(
                    format!("unknown base model `{name}`"),
                    loc.clone(),
                    "not a built-in model, nor a model of this file",
                ),
                None => Diagnostic::bare(format!("unknown model `{name}`")),
            };
            d = d.with_help(match closest(name, &names) {
                Some(c) => format!("did you mean `{c}`? built-in models: {}", names.join(", ")),
                None => format!("built-in models: {}", names.join(", ")),
            });
            return Err(vec![d]);
        };
        let source = Source::new(format!("<builtin {name}>"), text);
        // A built-in file is resolved on its own, with the cycle stack carried over.
        let mut sub = Resolver {
            stack: self.stack.clone(),
            ..Resolver::default()
        };
        sub.file(&source, Some(name))
    }

    pub(super) fn file(
        &mut self,
        source: &Arc<Source>,
        model: Option<&str>,
    ) -> Result<(Spec, usize), Vec<Diagnostic>> {
        let file = effc_syntax::parse(source).map_err(|d| vec![d])?;
        let index = match model {
            Some(n) => file
                .models
                .iter()
                .position(|m| m.name.node == n)
                .ok_or_else(|| {
                    vec![Diagnostic::error(
                        format!("no model `{n}` in {}", source.name),
                        Loc::new(source, Span::new(0, 0)),
                        "",
                    )]
                })?,
            None => file
                .models
                .len()
                .checked_sub(1)
                .ok_or_else(|| vec![no_model(source)])?,
        };
        self.resolve_in(source, &file, index)
    }

    fn index(&mut self, file: &ast::File) -> &FileIndex {
        self.index.get_or_insert_with(|| {
            let mut last: HashMap<String, usize> = HashMap::new();
            let mut local = Vec::with_capacity(file.models.len());
            for (i, m) in file.models.iter().enumerate() {
                local.push(m.base.as_ref().and_then(|b| last.get(&b.node).copied()));
                last.insert(m.name.node.clone(), i);
            }
            (local, last)
        })
    }

    /// Resolves model `index` of `file`: first the chain of its not yet resolved
    /// local bases, root first, without recursion.
    pub(super) fn resolve_in(
        &mut self,
        source: &Arc<Source>,
        file: &ast::File,
        index: usize,
    ) -> Result<(Spec, usize), Vec<Diagnostic>> {
        let mut chain = vec![index];
        loop {
            let i = *chain.last().expect("the chain starts with one model");
            if self.memo.contains_key(&i) {
                chain.pop();
                break;
            }
            let m = &file.models[i];
            if m.base.as_ref().is_some_and(|b| b.node == m.name.node) {
                break;
            }
            match self.index(file).0[i] {
                Some(b) => chain.push(b),
                None => break,
            }
        }
        let mut errors = vec![];
        for &i in chain.iter().rev() {
            let result = self.resolve_one(source, file, i);
            let entry = match result {
                Ok(r) => Some(r),
                Err(e) => {
                    errors.extend(e);
                    None
                }
            };
            self.memo.insert(i, entry);
        }
        match &self.memo[&index] {
            Some(r) => Ok(r.clone()),
            None => Err(errors),
        }
    }

    /// The chain of names from model `index` through its local bases, for messages.
    fn chain_names(&mut self, file: &ast::File, index: usize) -> String {
        let mut names = vec![];
        let mut at = Some(index);
        while let Some(i) = at {
            names.push(file.models[i].name.node.as_str());
            at = self.index(file).0[i];
            if at.is_none() {
                if let Some(b) = &file.models[i].base {
                    names.push(b.node.as_str());
                }
            }
        }
        if names.len() > 8 {
            let tail = names.split_off(names.len() - 3);
            names.truncate(4);
            names.push("...");
            names.extend(tail);
        }
        names.join(" -> ")
    }

    /// Resolves one model whose local base, if any, is already resolved.
    fn resolve_one(
        &mut self,
        source: &Arc<Source>,
        file: &ast::File,
        index: usize,
    ) -> Result<(Spec, usize), Vec<Diagnostic>> {
        let m = &file.models[index];
        let name_loc = Loc::new(source, m.name.span);
        let (spec, depth) = match &m.base {
            None => (Spec::defaults(&m.name.node, name_loc.clone()), 1),
            Some(base) => {
                let base_loc = Loc::new(source, base.span);
                if base.node == m.name.node {
                    return Err(vec![Diagnostic::error(
                        format!("model `{}` extends itself", m.name.node),
                        base_loc,
                        "a model cannot be its own base",
                    )
                    .with_help("name a built-in model (`effc list`) or a model declared earlier in this file")]);
                }
                let (mut s, base_depth) = match self.index(file).0[index] {
                    // A model of the same file declared before this one.
                    Some(b) => match &self.memo[&b] {
                        Some((s, d)) => (s.clone(), *d),
                        // The base failed; its errors are already reported.
                        None => return Err(vec![]),
                    },
                    None => {
                        if self
                            .index(file)
                            .1
                            .get(&base.node)
                            .is_some_and(|&last| last > index)
                        {
                            return Err(vec![Diagnostic::error(
                                format!(
                                    "model `{}` is declared after `{}`, which extends it",
                                    base.node, m.name.node
                                ),
                                base_loc,
                                "declared later in this file",
                            )
                            .with_help("declare a base model before the models that extend it")]);
                        }
                        if self.stack.contains(&base.node) || self.stack.contains(&m.name.node) {
                            return Err(vec![Diagnostic::error(
                                format!(
                                    "model `{}` extends itself ({} -> {} -> {})",
                                    m.name.node,
                                    self.stack.join(" -> "),
                                    m.name.node,
                                    base.node
                                ),
                                base_loc,
                                "cycle",
                            )]);
                        }
                        self.stack.push(m.name.node.clone());
                        let r = self.builtin(&base.node, Some(&base_loc));
                        self.stack.pop();
                        r?
                    }
                };
                let depth = base_depth + 1;
                if depth > MAX_EXTENDS_CHAIN {
                    let chain = self.chain_names(file, index);
                    return Err(vec![Diagnostic::error(
                        format!(
                            "`extends` chain too long: model `{}` is model {depth} of its chain, at most {MAX_EXTENDS_CHAIN} may extend each other",
                            m.name.node
                        ),
                        base_loc,
                        format!("model {depth} of the chain"),
                    )
                    .with_help(format!("the chain: {chain}; declare this model with its own settings instead of extending"))]);
                }
                s.base = Some(base.node.clone());
                s.name = m.name.node.clone();
                s.decl = name_loc.clone();
                (s, depth)
            }
        };
        self.resolve_decl(source, m, spec).map(|s| (s, depth))
    }

    fn resolve_decl(
        &mut self,
        source: &Arc<Source>,
        m: &ast::ModelDecl,
        mut spec: Spec,
    ) -> Result<Spec, Vec<Diagnostic>> {
        let mut errors = vec![];
        let (seen, phi_parts) = model_settings(source, m, &mut spec, &mut errors);
        phi_scaling(source, &seen, phi_parts, &mut spec, &mut errors);
        blocks(source, m, &mut spec, &mut errors);
        training(source, m, &mut spec, &mut errors);
        if errors.is_empty() {
            Ok(spec)
        } else {
            Err(errors)
        }
    }
}

/// The declaration's settings, each at most once: where each was given, and
/// `phi`, `alpha`, `beta`, `gamma` (applied after all are read).
fn model_settings<'m>(
    source: &Arc<Source>,
    m: &'m ast::ModelDecl,
    spec: &mut Spec,
    errors: &mut Vec<Diagnostic>,
) -> (HashMap<&'m str, Span>, [Option<f64>; 4]) {
    let mut seen: HashMap<&str, Span> = HashMap::new();
    let mut phi_parts: [Option<f64>; 4] = [None; 4];
    for s in &m.settings {
        if let Some(first) = seen.get(s.key.node.as_str()) {
            errors.push(twice(source, &s.key, *first));
            continue;
        }
        seen.insert(&s.key.node, s.key.span);
        if let Err(d) = apply_model_setting(spec, &mut phi_parts, source, s) {
            errors.push(d);
        }
    }
    (seen, phi_parts)
}

/// φ-scaling: `phi` derives width, depth and resolution (so none of them may be
/// given beside it), with α, β, γ given or the paper's; α, β, γ without `phi`
/// are an error.
fn phi_scaling(
    source: &Arc<Source>,
    seen: &HashMap<&str, Span>,
    phi_parts: [Option<f64>; 4],
    spec: &mut Spec,
    errors: &mut Vec<Diagnostic>,
) {
    if let Some(phi) = phi_parts[0] {
        for k in ["width", "depth", "resolution"] {
            if let Some(span) = seen.get(k) {
                errors.push(
                    Diagnostic::error(
                        format!(
                            "`{k}` and `phi` both given: φ derives width, depth and resolution"
                        ),
                        Loc::new(source, *span),
                        format!("`{k}` given here"),
                    )
                    .with_note(Loc::new(source, seen["phi"]), "`phi` given here")
                    .with_help(format!(
                        "remove `{k}`, or remove `phi` and give width, depth and resolution"
                    )),
                );
            }
        }
        let d = crate::scale::PAPER;
        let c = crate::scale::Coefficients {
            alpha: phi_parts[1].unwrap_or(d.alpha),
            beta: phi_parts[2].unwrap_or(d.beta),
            gamma: phi_parts[3].unwrap_or(d.gamma),
        };
        crate::scale::apply(spec, phi, &c);
        let loc = Loc::new(source, seen["phi"]);
        for k in ["width", "depth", "resolution"] {
            spec.origin.insert(k, loc.clone());
        }
    } else if let Some(k) = ["alpha", "beta", "gamma"]
        .iter()
        .find(|k| seen.contains_key(**k))
    {
        errors.push(
            Diagnostic::error(
                format!("`{k}` given without `phi`"),
                Loc::new(source, seen[k]),
                "unused without `phi`",
            )
            .with_help("α, β and γ only matter with `phi = N`"),
        );
    }
}

/// The `blocks` section: once, not empty, each string decoded; a model without
/// one must inherit its blocks.
fn blocks(source: &Arc<Source>, m: &ast::ModelDecl, spec: &mut Spec, errors: &mut Vec<Diagnostic>) {
    let block_spans: Vec<Span> = m.blocks.iter().map(|b| b.span).collect();
    errors.extend(section_twice(source, "blocks", &block_spans));
    if let Some(b) = m.blocks.first() {
        if b.strings.is_empty() {
            errors.push(
                Diagnostic::error(
                    "`blocks` is empty",
                    Loc::new(source, b.span),
                    "no block strings",
                )
                .with_help("give one block string per stage, e.g. r1_k3_s1_e1_i32_o16"),
            );
        }
        let mut decoded = vec![];
        for s in &b.strings {
            match effc_syntax::block::decode(source, s) {
                Ok(a) => decoded.push(a),
                Err(e) => errors.extend(e),
            }
        }
        spec.blocks = decoded;
        spec.blocks_source = source.clone();
        spec.origin.insert("blocks", Loc::new(source, b.span));
    } else if spec.blocks.is_empty() && m.base.is_none() {
        errors.push(
            Diagnostic::error(format!("model `{}` has no `blocks`", m.name.node), Loc::new(source, m.name.span), "no blocks")
                .with_help("add `blocks { ... }` with one block string per stage, or `extends` a model that has them"),
        );
    }
}

/// The `training` section: once, each setting at most once.
fn training(
    source: &Arc<Source>,
    m: &ast::ModelDecl,
    spec: &mut Spec,
    errors: &mut Vec<Diagnostic>,
) {
    let training_spans: Vec<Span> = m.training.iter().map(|t| t.span).collect();
    errors.extend(section_twice(source, "training", &training_spans));
    if let Some(t) = m.training.first() {
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for s in &t.settings {
            if let Some(first) = seen.get(s.key.node.as_str()) {
                errors.push(twice(source, &s.key, *first));
                continue;
            }
            seen.insert(&s.key.node, s.key.span);
            if let Err(d) = apply_training_setting(&mut spec.training, source, s) {
                errors.push(d);
            }
        }
    }
}

/// A section (`blocks`, `training`) written more than once in one model.
fn section_twice(source: &Arc<Source>, what: &str, spans: &[Span]) -> Option<Diagnostic> {
    let [first, second, ..] = spans else {
        return None;
    };
    Some(
        Diagnostic::error(
            format!("`{what}` given twice"),
            Loc::new(source, *second),
            format!("second `{what}` section"),
        )
        .with_note(Loc::new(source, *first), "first given here"),
    )
}

fn twice(source: &Arc<Source>, key: &Spanned<String>, first: Span) -> Diagnostic {
    Diagnostic::error(
        format!("setting `{}` given twice", key.node),
        Loc::new(source, key.span),
        "given again here",
    )
    .with_note(Loc::new(source, first), "first given here")
    .with_help("remove one of them")
}

/// The closest name by edit distance, when it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    fn dist(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let v = (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1);
                cur.push(v);
            }
            prev = cur;
        }
        prev[b.len()]
    }
    candidates
        .iter()
        .map(|c| (dist(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}
