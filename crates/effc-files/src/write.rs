//! The output policy: what a command may write, decided before it runs, and how
//! each file is written.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::dir::OutputDir;
use crate::kind::FileKind;

/// Why an output was refused or could not be written. Each names the flag (the
/// output's role) and the path.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The output is one of the command's inputs.
    #[error("{role} `{}` is {input_role} (`{}`): refusing to overwrite an input; choose another file", path.display(), input.display())]
    IsInput {
        role: String,
        path: PathBuf,
        input_role: String,
        input: PathBuf,
    },
    /// Two outputs of one command are the same file.
    #[error("{role} `{}` and {other_role} `{}` are the same file: give each output its own path", path.display(), other.display())]
    SameFile {
        role: String,
        path: PathBuf,
        other_role: String,
        other: PathBuf,
    },
    /// The path names a device node, FIFO, socket or directory.
    #[error("{role} `{}` is {kind}: effc writes only regular files (never a device, FIFO, socket or directory); choose a file path", path.display())]
    NotRegular {
        role: String,
        path: PathBuf,
        kind: FileKind,
    },
    /// An output directory's path is something else.
    #[error("{role} `{}` is {kind}, not a directory", path.display())]
    NotDirectory {
        role: String,
        path: PathBuf,
        kind: FileKind,
    },
    /// The directory the file would go in does not exist (or is not a directory).
    #[error("{role} `{}`: its directory `{}` does not exist", path.display(), dir.display())]
    NoDirectory {
        role: String,
        path: PathBuf,
        dir: PathBuf,
    },
    /// A directory effc does not own ([`OutputDir`]).
    #[error("{0}")]
    NotOwned(String),
    /// Reading, writing, renaming or removing failed.
    #[error("cannot write `{}`: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// A file a command reads or writes, as the policy compares them.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) role: String,
    pub(crate) path: PathBuf,
    /// Device and inode of what the path names (following symlinks), when it exists.
    file: Option<(u64, u64)>,
    /// The path with its directory canonicalized (the file itself may not exist).
    normal: PathBuf,
}

impl Entry {
    pub(crate) fn new(role: String, path: &Path) -> Entry {
        Entry {
            role,
            path: path.to_path_buf(),
            file: file_id(path),
            normal: normalized(path),
        }
    }

    pub(crate) fn same(&self, other: &Entry) -> bool {
        self.normal == other.normal || (self.file.is_some() && self.file == other.file)
    }
}

#[cfg(unix)]
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_id(_: &Path) -> Option<(u64, u64)> {
    None
}

/// The directory a file path is in (`.` for a bare name).
pub(crate) fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `path` with its directory canonicalized, or the path itself when that fails.
fn normalized(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    match (std::fs::canonicalize(parent_of(path)), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    }
}

/// Whether two paths name the same existing file (by device and inode, so other
/// spellings, symlinks and hard links count), or the same new one.
pub fn same_file(a: &Path, b: &Path) -> bool {
    Entry::new(String::new(), a).same(&Entry::new(String::new(), b))
}

/// The files a command reads and writes, declared before it runs: each output is
/// checked against every input and every other output as it is declared, so a
/// refused command has written nothing.
///
/// ```no_run
/// # fn main() -> Result<(), effc_files::OutputError> {
/// let mut files = effc_files::Outputs::new();
/// files.input("the checkpoint", "w.safetensors")?;
/// let save = files.file("--save", "y.safetensors")?; // refused if it is w.safetensors
/// // ... run ...
/// save.write(b"...")?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Outputs {
    inputs: Vec<Entry>,
    outputs: Vec<Entry>,
}

impl Outputs {
    pub fn new() -> Outputs {
        Outputs::default()
    }

    /// Declares a file the command reads (`role`: "the checkpoint", "an input
    /// image", "the spec file"). Refused when it is an output declared before.
    pub fn input(
        &mut self,
        role: impl Into<String>,
        path: impl AsRef<Path>,
    ) -> Result<(), OutputError> {
        let e = Entry::new(role.into(), path.as_ref());
        if let Some(o) = self.outputs.iter().find(|o| o.same(&e)) {
            return Err(is_input(o, &e));
        }
        self.inputs.push(e);
        Ok(())
    }

    /// Declares a file the command writes (`role`: the flag, `--save`, `-o`).
    /// Refused when it is an input, another output, a device node, FIFO, socket
    /// or directory (following symlinks), or when its directory does not exist.
    pub fn file(
        &mut self,
        role: impl Into<String>,
        path: impl AsRef<Path>,
    ) -> Result<OutputFile, OutputError> {
        let (role, path) = (role.into(), path.as_ref());
        check_target(&role, path)?;
        let dir = parent_of(path);
        if FileKind::at(dir) != Some(FileKind::Directory) {
            return Err(OutputError::NoDirectory {
                role,
                path: path.to_path_buf(),
                dir: dir.to_path_buf(),
            });
        }
        let e = Entry::new(role, path);
        self.check_new_output(&e)?;
        self.outputs.push(e.clone());
        Ok(OutputFile { entry: e })
    }

    /// Declares an output directory ([`OutputDir::open`]); the files staged in
    /// it are checked against the inputs before any is written.
    pub fn dir(
        &mut self,
        role: impl Into<String>,
        path: impl AsRef<Path>,
        force: bool,
    ) -> Result<OutputDir, OutputError> {
        let (role, path) = (role.into(), path.as_ref());
        let e = Entry::new(role.clone(), path);
        self.check_new_output(&e)?;
        let dir = OutputDir::open_for(&role, path, force, self.inputs.clone())?;
        self.outputs.push(e);
        Ok(dir)
    }

    fn check_new_output(&self, e: &Entry) -> Result<(), OutputError> {
        if let Some(i) = self.inputs.iter().find(|i| i.same(e)) {
            return Err(is_input(e, i));
        }
        if let Some(o) = self.outputs.iter().find(|o| o.same(e)) {
            return Err(OutputError::SameFile {
                role: e.role.clone(),
                path: e.path.clone(),
                other_role: o.role.clone(),
                other: o.path.clone(),
            });
        }
        Ok(())
    }
}

pub(crate) fn is_input(output: &Entry, input: &Entry) -> OutputError {
    OutputError::IsInput {
        role: output.role.clone(),
        path: output.path.clone(),
        input_role: input.role.clone(),
        input: input.path.clone(),
    }
}

/// Refuses a target that exists and is not a regular file (following symlinks).
pub(crate) fn check_target(role: &str, path: &Path) -> Result<(), OutputError> {
    match FileKind::at(path) {
        None | Some(FileKind::Regular) => Ok(()),
        Some(kind) => Err(OutputError::NotRegular {
            role: role.to_string(),
            path: path.to_path_buf(),
            kind,
        }),
    }
}

/// One output file a command may write, checked by [`Outputs::file`].
#[derive(Clone, Debug)]
pub struct OutputFile {
    entry: Entry,
}

impl OutputFile {
    pub fn path(&self) -> &Path {
        &self.entry.path
    }

    /// The flag it was given with (`--save`).
    pub fn role(&self) -> &str {
        &self.entry.role
    }

    /// Writes the file whole with [`replace`], after checking again that the path
    /// is not (now) a device node, FIFO, socket or directory.
    pub fn write(&self, bytes: &[u8]) -> Result<(), OutputError> {
        check_target(&self.entry.role, &self.entry.path)?;
        replace(&self.entry.path, bytes).map_err(|cause| OutputError::Io {
            path: self.entry.path.clone(),
            cause,
        })
    }
}

/// Writes `bytes` to `path` whole: a temporary file created exclusively, with an
/// unpredictable name, in the same directory (so a planted file or symlink is
/// never opened), written and `fsync`ed, then renamed over `path` (replacing a
/// symlink there rather than writing through it). The new file keeps the mode of
/// the file it replaces, else gets the usual `0666 & !umask`. A failure removes
/// the temporary file and leaves `path` as it was.
pub fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = parent_of(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp").rand_bytes(12);
    #[cfg(unix)]
    let old_mode = {
        use std::os::unix::fs::PermissionsExt;
        let old = std::fs::symlink_metadata(path)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.permissions().mode() & 0o7777);
        builder.permissions(std::fs::Permissions::from_mode(0o666));
        old
    };
    let mut tmp = builder.tempfile_in(dir)?;
    #[cfg(unix)]
    if let Some(mode) = old_mode {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir);
    Ok(())
}

/// Makes a rename in `dir` durable (best effort: not every system can fsync a
/// directory).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// An exclusive advisory lock on a directory (`flock`), held until dropped: the
/// read-merge-write of a cache file under it loses no other process's entries.
/// Where `flock` does not exist, no lock.
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
}

impl DirLock {
    /// Waits for the lock on `dir` (which must exist).
    pub fn acquire(dir: &Path) -> std::io::Result<DirLock> {
        let file = std::fs::File::open(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::io::AsRawFd;
            loop {
                // SAFETY: flock on a descriptor this function owns; no memory is shared.
                if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                    break;
                }
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The names in `dir`, sorted (the tests of `dir.rs` use it too).
    pub(crate) fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn an_output_is_never_an_input_whatever_the_spelling() {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().join("my.enet");
        std::fs::write(&spec, "model x extends b0 {}").unwrap();
        let hard = dir.path().join("hard.enet");
        std::fs::hard_link(&spec, &hard).unwrap();
        let mut o = Outputs::new();
        o.input("the spec file", &spec).unwrap();
        for p in [
            spec.clone(),
            dir.path().join(".").join("my.enet"),
            dir.path().join("sub/../my.enet"),
            hard.clone(),
        ] {
            std::fs::create_dir_all(dir.path().join("sub")).unwrap();
            let e = o.file("--save", &p).unwrap_err().to_string();
            assert!(e.contains("is the spec file"), "{e}");
        }
        #[cfg(unix)]
        {
            let link = dir.path().join("link.enet");
            std::os::unix::fs::symlink(&spec, &link).unwrap();
            assert!(o.file("--save", &link).is_err());
        }
        // An input declared after the output is caught too.
        let mut o = Outputs::new();
        let out = dir.path().join("out.bin");
        o.file("--save", &out).unwrap();
        std::fs::write(&out, "x").unwrap();
        let e = o.input("an input image", &out).unwrap_err().to_string();
        assert!(
            e.contains("--save") && e.contains("is an input image"),
            "{e}"
        );
        assert_eq!(
            std::fs::read_to_string(&spec).unwrap(),
            "model x extends b0 {}"
        );
    }

    #[test]
    fn two_outputs_that_are_one_file_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outputs::new();
        let a = o.file("-o", dir.path().join("x.enet")).unwrap();
        let e = o
            .file("--plot", dir.path().join("./x.enet"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--plot") && e.contains("-o") && e.contains("same file"),
            "{e}"
        );
        assert!(names(dir.path()).is_empty());
        a.write(b"spec").unwrap();
        assert_eq!(names(dir.path()), ["x.enet"]);
    }

    #[cfg(unix)]
    #[test]
    fn devices_fifos_and_directories_are_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outputs::new();
        let e = o.file("--save", "/dev/null").unwrap_err().to_string();
        assert!(e.contains("`/dev/null` is a character device"), "{e}");
        let e = o.file("--svg", dir.path()).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        let missing = dir.path().join("no/such/out.svg");
        let e = o.file("--svg", &missing).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        // A symlink to a device is the device.
        let link = dir.path().join("null");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        assert!(o.file("--save", &link).is_err());
        // A path that becomes a FIFO after the check is refused at write time.
        let p = dir.path().join("later.bin");
        let f = o.file("--save", &p).unwrap();
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo on a NUL-terminated path this test owns.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = f.write(b"x").unwrap_err().to_string();
        assert!(e.contains("is a FIFO"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_symlink_is_never_written_through() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let precious = outside.path().join("precious");
        std::fs::write(&precious, "keep").unwrap();
        // The temporary names effc used to use, and the target itself.
        let pid = std::process::id();
        for name in [format!(".model.rs.{pid}.tmp"), "model.rs".to_string()] {
            std::os::unix::fs::symlink(&precious, dir.path().join(name)).unwrap();
        }
        let target = dir.path().join("model.rs");
        replace(&target, b"generated").unwrap();
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "generated");
        assert!(std::fs::symlink_metadata(&target).unwrap().is_file());
        // The mode of a replaced file is kept.
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
        replace(&target, b"again").unwrap();
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        // No temporary file is left behind.
        assert_eq!(names(dir.path()).len(), 2);
    }
}
