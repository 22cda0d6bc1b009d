//! Bounded reads of the files a user gives: regular files only, never more bytes
//! than a stated limit, and never a blocking open.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::kind::FileKind;

/// What a file is read as, for messages, and the most bytes read of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Input {
    /// `spec file`, `checkpoint`, `image`, ...
    pub what: &'static str,
    /// Larger files are refused before they are read.
    pub limit: u64,
}

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

impl Input {
    const fn new(what: &'static str, limit: u64) -> Input {
        Input { what, limit }
    }

    /// A `.enet` spec: text, 16 MiB at most (the largest built-in is 2 KB).
    pub const SPEC: Input = Input::new("spec file", 16 * MIB);
    /// A safetensors checkpoint: bounded here by 64 GiB; commands check its size
    /// against the host's memory budget before reading it ([`input_size`]).
    pub const CHECKPOINT: Input = Input::new("checkpoint", 64 * GIB);
    /// A PNG or JPEG image: 1 GiB at most (an image is refused past about 179
    /// million pixels anyway, from its header).
    pub const IMAGE: Input = Input::new("image", GIB);
    /// A safetensors file of input tensors (`effc run --input`).
    pub const TENSORS: Input = Input::new("tensor file", 64 * GIB);
    /// One of effc's cache files (tiles, latencies): 64 MiB at most.
    pub const CACHE: Input = Input::new("cache file", 64 * MIB);
}

/// Why a file was not read. Each message names the path and what it should be.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Missing, unreadable, or an error while reading.
    #[error("cannot read `{}`: {cause}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        cause: std::io::Error,
    },
    /// A FIFO, socket, device or directory.
    #[error("{what} `{}` is {kind}, not a regular file: effc reads only regular files (never a pipe, device, socket or directory)", path.display())]
    NotRegular {
        path: PathBuf,
        what: &'static str,
        kind: FileKind,
    },
    /// More bytes than the limit.
    #[error("{what} `{}` is {}, more than the {} effc reads for a {what}", path.display(), shown(*size), shown(*limit))]
    TooLarge {
        path: PathBuf,
        what: &'static str,
        size: u64,
        limit: u64,
    },
    /// Text that is not UTF-8 ([`read_text`]).
    #[error("{what} `{}` is not UTF-8 text (invalid byte at offset {offset})", path.display())]
    NotUtf8 {
        path: PathBuf,
        what: &'static str,
        offset: usize,
    },
}

impl ReadError {
    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ReadError::Io { path, .. }
            | ReadError::NotRegular { path, .. }
            | ReadError::TooLarge { path, .. }
            | ReadError::NotUtf8 { path, .. } => path,
        }
    }

    /// Whether the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io { cause, .. } if cause.kind() == std::io::ErrorKind::NotFound)
    }
}

/// `17 MiB (17825792 bytes)`, `300 bytes`.
fn shown(bytes: u64) -> String {
    if bytes >= GIB {
        format!("{:.1} GiB ({bytes} bytes)", bytes as f64 / GIB as f64)
    } else if bytes >= MIB {
        format!("{:.1} MiB ({bytes} bytes)", bytes as f64 / MIB as f64)
    } else {
        format!("{bytes} bytes")
    }
}

/// Opens `path` for reading if it is a regular file: its type is checked before
/// the open (so a device or FIFO is never opened) and again on the descriptor
/// (opened non-blocking, so a FIFO swapped in meanwhile cannot block either).
fn open_regular(path: &Path, input: Input) -> Result<(File, u64), ReadError> {
    let io = |cause| ReadError::Io {
        path: path.to_path_buf(),
        what: input.what,
        cause,
    };
    let not_regular = |kind| ReadError::NotRegular {
        path: path.to_path_buf(),
        what: input.what,
        kind,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    let kind = FileKind::of(&meta);
    if kind != FileKind::Regular {
        return Err(not_regular(kind));
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = options.open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let kind = FileKind::of(&meta);
    if kind != FileKind::Regular {
        return Err(not_regular(kind));
    }
    if meta.len() > input.limit {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            what: input.what,
            size: meta.len(),
            limit: input.limit,
        });
    }
    Ok((file, meta.len()))
}

/// The size of an input file, after the same checks as [`read`] (regular file,
/// within the limit), without reading it: for budgets decided before anything
/// is read.
pub fn input_size(path: &Path, input: Input) -> Result<u64, ReadError> {
    open_regular(path, input).map(|(_, len)| len)
}

/// Reads a whole input file: a regular file of at most `input.limit` bytes.
pub fn read(path: &Path, input: Input) -> Result<Vec<u8>, ReadError> {
    let (file, len) = open_regular(path, input)?;
    let mut bytes = Vec::with_capacity(len as usize);
    // One byte past the limit tells a file that grew while it was read.
    file.take(input.limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|cause| ReadError::Io {
            path: path.to_path_buf(),
            what: input.what,
            cause,
        })?;
    if bytes.len() as u64 > input.limit {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            what: input.what,
            size: bytes.len() as u64,
            limit: input.limit,
        });
    }
    Ok(bytes)
}

/// [`read`] as UTF-8 text.
pub fn read_text(path: &Path, input: Input) -> Result<String, ReadError> {
    String::from_utf8(read(path, input)?).map_err(|e| ReadError::NotUtf8 {
        path: path.to_path_buf(),
        what: input.what,
        offset: e.utf8_error().valid_up_to(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Input = Input {
        what: "spec file",
        limit: 8,
    };

    #[test]
    fn regular_files_are_read_within_their_limit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.enet");
        std::fs::write(&p, b"12345678").unwrap();
        assert_eq!(read(&p, SMALL).unwrap(), b"12345678");
        assert_eq!(input_size(&p, SMALL).unwrap(), 8);
        std::fs::write(&p, b"123456789").unwrap();
        let e = read(&p, SMALL).unwrap_err().to_string();
        assert!(e.contains("is 9 bytes, more than the 8 bytes"), "{e}");
        let e = read(&dir.path().join("absent"), SMALL).unwrap_err();
        assert!(e.is_not_found(), "{e}");
        std::fs::write(&p, [0x61, 0xff]).unwrap();
        let e = read_text(&p, SMALL).unwrap_err().to_string();
        assert!(
            e.contains("not UTF-8 text (invalid byte at offset 1)"),
            "{e}"
        );
    }

    #[test]
    fn directories_and_devices_are_refused_saying_what_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let e = read(dir.path(), Input::CHECKPOINT).unwrap_err().to_string();
        assert!(e.contains("is a directory, not a regular file"), "{e}");
        #[cfg(unix)]
        {
            let e = read(Path::new("/dev/zero"), Input::CHECKPOINT)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("checkpoint `/dev/zero` is a character device"),
                "{e}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_without_a_writer_is_refused_at_once() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pipe.png");
        let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo on a NUL-terminated path this test owns.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read(&p, Input::IMAGE).unwrap_err().to_string();
        assert!(e.contains("is a FIFO (named pipe)"), "{e}");
        // A symlink to it is the FIFO too.
        let link = dir.path().join("link.png");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        let e = read(&link, Input::IMAGE).unwrap_err().to_string();
        assert!(e.contains("is a FIFO (named pipe)"), "{e}");
    }
}
