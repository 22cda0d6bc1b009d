//! How a procedure tells its caller what it is doing while it runs: a progress
//! bar's steps and messages, notes and warnings. The CLI draws them on stderr; a
//! server logs them; [`Silent`] drops them.

/// Progress of a long procedure. Every method has a default that does nothing.
pub trait Progress {
    /// A new phase of `len` steps (a bar's length).
    fn start(&self, _len: u64) {}
    /// What is being done now (`timing φ = 0.50`, `opening the GPU`).
    fn message(&self, _msg: &str) {}
    /// `n` more steps done.
    fn inc(&self, _n: u64) {}
    /// The phase is over (a bar is cleared).
    fn finish(&self) {}
    /// `done` of `total` items processed (images of a run in several forwards).
    fn items(&self, _done: usize, _total: usize) {}
    /// A line the user should see (which device runs, what was chosen).
    fn note(&self, _line: &str) {}
    /// Something went wrong but the procedure goes on (a damaged cache ignored).
    fn warn(&self, _line: &str) {}
}

/// Progress that shows nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Progress for Silent {}
