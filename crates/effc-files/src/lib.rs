//! How effc reads the files it is given and writes the files it makes: one policy
//! for every command, library and cache.
//!
//! **Reads** ([`read`], [`read_text`], [`input_size`]): a spec, checkpoint, image or
//! tensor file must be a regular file. Its type is checked before it is opened and
//! again on the open descriptor (opened with `O_NONBLOCK`, so a FIFO never blocks);
//! a FIFO, socket, device or directory is refused with a message saying what the
//! path is. Every read is bounded ([`Input::limit`]), checked against the file's
//! size first and again while reading (a file that grows, or `/proc`).
//!
//! **Writes** ([`Outputs`]): a command declares its inputs and its outputs before
//! it runs anything. An output is refused when it is one of the inputs (compared
//! as files by device and inode, whatever the spelling: `./x`, a symlink, a hard
//! link), when two outputs are the same file, when the path is a device node,
//! FIFO, socket or directory, or when its directory does not exist. A refusal
//! writes nothing. A file is written by [`replace`]: a temporary file created
//! exclusively (`O_CREAT | O_EXCL`, an unpredictable name) in the target's
//! directory, written, `fsync`ed, then renamed over the target (a symlink at the
//! target is replaced, never written through); a failure leaves the target as it
//! was. [`OutputDir`] is an output directory effc owns through its manifest.
//!
//! Caches (effc's own files) use [`replace`] and [`DirLock`] the same way.

mod dir;
mod kind;
mod read;
mod write;

pub use dir::{OutputDir, Written, MANIFEST};
pub use kind::FileKind;
pub use read::{input_size, read, read_text, Input, ReadError};
pub use write::{replace, same_file, DirLock, OutputError, OutputFile, Outputs};
