//! stdout through a checked writer: a full disk is an error message, never a
//! panic. Files go through the driver's output policy (`effc_driver::files`).

use std::fmt;
use std::io::Write;

use crate::Failure;

/// Writes formatted text to stdout; a write error (ENOSPC, EIO, ...) becomes a
/// [`Failure`]. A closed pipe ends the process quietly (SIGPIPE, see `main`).
pub fn stdout(args: fmt::Arguments<'_>) -> Result<(), Failure> {
    std::io::stdout()
        .lock()
        .write_fmt(args)
        .map_err(|e| Failure::from(format!("cannot write to stdout: {e}")))
}

/// Flushes stdout, so that an error on the last buffered bytes is reported too.
pub fn flush() -> Result<(), Failure> {
    std::io::stdout()
        .flush()
        .map_err(|e| Failure::from(format!("cannot write to stdout: {e}")))
}

/// `print!` through [`stdout`]: returns from the enclosing function with a
/// [`Failure`] when stdout cannot be written.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::stdout(format_args!($($arg)*))?
    };
}

/// `println!` through [`stdout`], see [`out!`].
macro_rules! outln {
    () => {
        $crate::output::stdout(format_args!("\n"))?
    };
    ($($arg:tt)*) => {
        $crate::output::stdout(format_args!("{}\n", format_args!($($arg)*)))?
    };
}

pub(crate) use {out, outln};
