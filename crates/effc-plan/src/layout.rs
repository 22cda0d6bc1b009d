//! Weight layouts: where each part of a kernel's packed weights lives.
//!
//! The one source of truth for the packed-weight format: the fusion pass gives every
//! kernel a [`WeightLayout`], [`crate::pack`] writes by it, the WGSL backend names its
//! offsets as constants, and a kernel's weight length is its length.

use serde::{Deserialize, Serialize};

/// How packed weights are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElemType {
    F32,
    /// IEEE half (see [`crate::precision`]).
    F16,
}

impl ElemType {
    /// Bytes per element in storage.
    pub fn bytes(self) -> usize {
        match self {
            ElemType::F32 => 4,
            ElemType::F16 => 2,
        }
    }

    /// The WGSL scalar type.
    pub fn wgsl(self) -> &'static str {
        match self {
            ElemType::F32 => "f32",
            ElemType::F16 => "f16",
        }
    }
}

/// One named part of a kernel's packed weights, in elements. Sections start on a
/// vec4 boundary and their lengths are multiples of 4, so a shader reads them as
/// `vec4`s.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// The constant the shader gives its start (in vec4s), e.g. `BIAS`.
    #[serde(deserialize_with = "crate::intern::deserialize")]
    pub name: crate::intern::Static,
    /// First element.
    pub offset: usize,
    /// Elements.
    pub len: usize,
    /// Elements per row for a matrix section (`[rows][row]`), else `len`.
    pub row: usize,
    /// What it holds, for the shader's comment and the printed plan.
    #[serde(deserialize_with = "crate::intern::deserialize")]
    pub what: crate::intern::Static,
}

impl Section {
    /// The start in vec4s.
    pub fn offset4(&self) -> usize {
        self.offset / 4
    }

    /// Rows of a matrix section.
    pub fn rows(&self) -> usize {
        self.len / self.row.max(1)
    }
}

/// The packed weights of one kernel: sections laid out one after another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightLayout {
    pub elem: ElemType,
    pub sections: Vec<Section>,
}

impl WeightLayout {
    /// A layout of `(name, rows, row, what)` sections in order; every `row` is
    /// rounded up to a multiple of 4 elements.
    pub fn new(elem: ElemType, parts: &[(&'static str, usize, usize, &'static str)]) -> Self {
        let mut offset = 0;
        let sections = parts
            .iter()
            .map(|&(name, rows, row, what)| {
                let row = row.div_ceil(4) * 4;
                let s = Section {
                    name,
                    offset,
                    len: rows * row,
                    row,
                    what,
                };
                offset += s.len;
                s
            })
            .collect();
        WeightLayout { elem, sections }
    }

    /// Elements in all.
    pub fn len(&self) -> usize {
        self.sections.last().map_or(0, |s| s.offset + s.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes in storage.
    pub fn bytes(&self) -> usize {
        self.len() * self.elem.bytes()
    }

    /// The section named `name`.
    ///
    /// # Panics
    /// When there is none: layouts and their readers are built together here.
    pub fn section(&self, name: &str) -> &Section {
        self.sections
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no weight section `{name}` in {self:?}"))
    }

    /// The element index of `(row, col)` in section `name`.
    pub fn at(&self, name: &str, row: usize, col: usize) -> usize {
        let s = self.section(name);
        debug_assert!(col < s.row && row < s.rows(), "{name}[{row}][{col}]");
        s.offset + row * s.row + col
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_follow_each_other_on_vec4_boundaries() {
        let l = WeightLayout::new(
            ElemType::F32,
            &[("W", 3, 6, "weights"), ("BIAS", 1, 5, "bias")],
        );
        assert_eq!(l.section("W").row, 8);
        assert_eq!(l.section("BIAS").offset, 24);
        assert_eq!(l.section("BIAS").offset4(), 6);
        assert_eq!(l.len(), 32);
        assert_eq!(l.at("W", 2, 1), 17);
        assert_eq!(l.bytes(), 128);
        let h = WeightLayout::new(ElemType::F16, &[("W", 3, 6, "weights")]);
        assert_eq!(h.bytes(), 48);
    }
}
