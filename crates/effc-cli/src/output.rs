//! Where effc's output goes: stdout through a checked writer (a full disk is an
//! error message, never a panic), and files written whole (a temporary file beside
//! the target, then a rename) and never over one of the command's inputs.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

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

/// Refuses an output path that is one of the command's inputs (the same file,
/// compared by identity, so `./w.safetensors`, a symlink or a hard link count).
/// `inputs` pairs each input with what it is ("the checkpoint", "an image", ...).
pub fn refuse_overwrite<'a>(
    flag: &str,
    out: &Path,
    inputs: impl IntoIterator<Item = (&'a Path, &'a str)>,
) -> Result<(), Failure> {
    for (input, what) in inputs {
        if same_file(out, input) {
            return Err(format!(
                "{flag} `{}` is {what} (`{}`): refusing to overwrite an input; choose another file",
                out.display(),
                input.display()
            )
            .into());
        }
    }
    Ok(())
}

/// Whether two paths name the same existing file.
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Writes `bytes` to `path` whole: into a temporary file in the same directory,
/// then renamed over `path`. A failure leaves `path` as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let err =
        |p: &Path, e: std::io::Error| Failure::from(format!("cannot write `{}`: {e}", p.display()));
    let tmp = temp_beside(path);
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .map_err(|e| err(path, e))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| err(path, e)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn temp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_file_sees_through_other_spellings_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.bin");
        std::fs::write(&a, b"x").unwrap();
        let b = dir.path().join("b.bin");
        std::fs::write(&b, b"x").unwrap();
        assert!(same_file(&a, &dir.path().join(".").join("a.bin")));
        assert!(!same_file(&a, &b));
        assert!(!same_file(&a, &dir.path().join("absent")));
        let hard = dir.path().join("hard.bin");
        std::fs::hard_link(&a, &hard).unwrap();
        assert!(same_file(&a, &hard));
        let e = refuse_overwrite("--save", &hard, [(a.as_path(), "the checkpoint")]);
        assert!(e.unwrap_err().message.contains("is the checkpoint"));
    }

    #[test]
    fn write_atomic_replaces_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        std::fs::write(&p, b"old").unwrap();
        write_atomic(&p, b"new contents").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new contents");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let missing = dir.path().join("no/such/dir/out.bin");
        let e = write_atomic(&missing, b"x").unwrap_err();
        assert!(e.message.contains("no/such/dir/out.bin"), "{}", e.message);
    }
}
