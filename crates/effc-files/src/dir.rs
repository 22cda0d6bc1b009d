//! An output directory that effc owns: `.effc-manifest` lists the files effc wrote
//! there. Writing again replaces those files, removes the ones the new output no
//! longer has (stale kernels of another model), and touches nothing else: a file
//! effc did not write is never overwritten (unless `force`), and a non-empty
//! directory without a manifest is refused.
//!
//! Files are staged with [`OutputDir::write`] and written by [`OutputDir::finish`],
//! after every check passed (the directory, every staged name, every file to
//! remove): a refusal writes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::kind::FileKind;
use crate::read::{read_text, Input};
use crate::write::{is_input, replace, Entry, OutputError};

/// The manifest's file name.
pub const MANIFEST: &str = ".effc-manifest";

const HEADER: &str = "# Files effc wrote into this directory; the next `effc compile` into it replaces\n# them and removes those it no longer writes. Other files are left alone.\n";

const MANIFEST_INPUT: Input = Input {
    what: "manifest",
    limit: 16 << 20,
};

#[derive(Debug)]
pub struct OutputDir {
    role: String,
    dir: PathBuf,
    force: bool,
    /// The files the previous run wrote (its manifest).
    previous: BTreeSet<String>,
    staged: BTreeMap<String, Vec<u8>>,
    /// The command's inputs: no staged file may be one of them.
    inputs: Vec<Entry>,
}

/// What [`OutputDir::finish`] did.
#[derive(Debug)]
pub struct Written {
    /// Files of the previous output that this one no longer has, removed.
    pub removed: Vec<String>,
}

fn owned(msg: String) -> OutputError {
    OutputError::NotOwned(msg)
}

impl OutputDir {
    /// Opens `dir` (created by [`finish`](Self::finish) if needed). Refuses a path
    /// that is not a directory, and an existing non-empty directory without a
    /// manifest unless `force`. [`crate::Outputs::dir`] opens one that also
    /// checks the command's inputs.
    pub fn open(dir: &Path, force: bool) -> Result<OutputDir, OutputError> {
        OutputDir::open_for("-o", dir, force, vec![])
    }

    pub(crate) fn open_for(
        role: &str,
        dir: &Path,
        force: bool,
        inputs: Vec<Entry>,
    ) -> Result<OutputDir, OutputError> {
        let previous = match FileKind::at(dir) {
            None => BTreeSet::new(),
            Some(FileKind::Directory) => previous_files(dir, force)?,
            Some(kind) => {
                return Err(OutputError::NotDirectory {
                    role: role.to_string(),
                    path: dir.to_path_buf(),
                    kind,
                })
            }
        };
        Ok(OutputDir {
            role: role.to_string(),
            dir: dir.to_path_buf(),
            force,
            previous,
            staged: BTreeMap::new(),
            inputs,
        })
    }

    /// Stages a file (a plain name inside the directory) for [`finish`](Self::finish).
    pub fn write(&mut self, name: &str, bytes: impl Into<Vec<u8>>) -> Result<(), OutputError> {
        if !plain_name(name) || name == MANIFEST {
            return Err(owned(format!(
                "effc cannot write `{name}`: not a plain file name"
            )));
        }
        self.staged.insert(name.to_string(), bytes.into());
        Ok(())
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Checks that no staged file would overwrite a file effc did not write, an
    /// input, or something that is not a regular file, and that every file to
    /// remove is one; then writes them all, removes the previous output's files
    /// that are no longer written, and writes the manifest.
    pub fn finish(self) -> Result<Written, OutputError> {
        self.check()?;
        std::fs::create_dir_all(&self.dir).map_err(|cause| OutputError::Io {
            path: self.dir.clone(),
            cause,
        })?;
        for (name, bytes) in &self.staged {
            let p = self.dir.join(name);
            replace(&p, bytes).map_err(|cause| OutputError::Io { path: p, cause })?;
        }
        let mut removed = vec![];
        for name in self.stale() {
            let p = self.dir.join(name);
            match std::fs::remove_file(&p) {
                Ok(()) => removed.push(name.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(cause) => return Err(OutputError::Io { path: p, cause }),
            }
        }
        let mut manifest = HEADER.to_string();
        for name in self.staged.keys() {
            manifest += name;
            manifest.push('\n');
        }
        let p = self.dir.join(MANIFEST);
        replace(&p, manifest.as_bytes()).map_err(|cause| OutputError::Io { path: p, cause })?;
        Ok(Written { removed })
    }

    /// The previous output's files that this one no longer writes.
    fn stale(&self) -> impl Iterator<Item = &String> {
        self.previous
            .iter()
            .filter(|n| !self.staged.contains_key(*n))
    }

    /// Everything [`finish`](Self::finish) checks before it writes.
    fn check(&self) -> Result<(), OutputError> {
        let theirs: Vec<&String> = self
            .staged
            .keys()
            .filter(|n| {
                !self.previous.contains(*n) && std::fs::symlink_metadata(self.dir.join(n)).is_ok()
            })
            .collect();
        if !theirs.is_empty() && !self.force {
            let names: Vec<String> = theirs.iter().take(5).map(|n| format!("`{n}`")).collect();
            return Err(owned(format!(
                "`{}` holds {} that effc did not write (not in {MANIFEST}): {}{}; move it away, or --force to overwrite",
                self.dir.display(),
                if theirs.len() == 1 { "a file" } else { "files" },
                names.join(", "),
                if theirs.len() > 5 { ", ..." } else { "" }
            )));
        }
        for name in self.staged.keys() {
            let p = self.dir.join(name);
            // A symlink is replaced, not followed: only what the name itself is counts.
            if let Ok(m) = std::fs::symlink_metadata(&p) {
                let kind = FileKind::of(&m);
                if !matches!(kind, FileKind::Regular | FileKind::Symlink) {
                    return Err(OutputError::NotRegular {
                        role: format!("{} `{}`: the file", self.role, self.dir.display()),
                        path: p,
                        kind,
                    });
                }
            }
            let e = Entry::new(
                format!("{} `{}`: the file", self.role, self.dir.display()),
                &p,
            );
            if let Some(i) = self.inputs.iter().find(|i| i.same(&e)) {
                return Err(is_input(&e, i));
            }
        }
        for name in self.stale() {
            let p = self.dir.join(name);
            if let Ok(m) = std::fs::symlink_metadata(&p) {
                let kind = FileKind::of(&m);
                if !matches!(kind, FileKind::Regular | FileKind::Symlink) {
                    return Err(owned(format!(
                        "`{}` is listed in `{}` as a file effc wrote, but it is {kind}: effc removes only files; move it away or delete its line from the manifest",
                        p.display(),
                        self.dir.join(MANIFEST).display()
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The files a directory's manifest lists; a non-empty directory without one is
/// refused unless `force`.
fn previous_files(dir: &Path, force: bool) -> Result<BTreeSet<String>, OutputError> {
    let manifest = dir.join(MANIFEST);
    match read_text(&manifest, MANIFEST_INPUT) {
        Ok(text) => Ok(text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter(|l| plain_name(l))
            .map(str::to_string)
            .collect()),
        Err(e) if e.is_not_found() => {
            let entries = std::fs::read_dir(dir).map_err(|cause| OutputError::Io {
                path: dir.to_path_buf(),
                cause,
            })?;
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            if !names.is_empty() && !force {
                names.sort();
                let shown: Vec<String> = names.iter().take(3).cloned().collect();
                return Err(owned(format!(
                    "`{}` is not empty ({} entries: {}{}) and effc did not write it (no {MANIFEST}); give an empty or new directory, or --force to write into it anyway",
                    dir.display(),
                    names.len(),
                    shown.join(", "),
                    if names.len() > 3 { ", ..." } else { "" }
                )));
            }
            Ok(BTreeSet::new())
        }
        Err(e) => Err(owned(e.to_string())),
    }
}

/// A file name without directories, `..` or anything a manifest line could not hold.
fn plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\n', '\r', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::write::tests::names;

    #[test]
    fn rewrites_its_own_files_removes_stale_ones_and_keeps_the_users() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        let mut o = OutputDir::open(&dir, false).unwrap();
        o.write("a.wgsl", "a").unwrap();
        o.write("b.wgsl", "b").unwrap();
        o.write("report.md", "r1").unwrap();
        assert!(o.finish().unwrap().removed.is_empty());
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();

        let mut o = OutputDir::open(&dir, false).unwrap();
        o.write("a.wgsl", "a2").unwrap();
        o.write("report.md", "r2").unwrap();
        let w = o.finish().unwrap();
        assert_eq!(w.removed, vec!["b.wgsl".to_string()]);
        assert_eq!(names(&dir), [MANIFEST, "a.wgsl", "notes.txt", "report.md"]);
        assert_eq!(
            std::fs::read_to_string(dir.join("report.md")).unwrap(),
            "r2"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
            "mine"
        );

        // A file the user put there under a name effc now writes: refused, nothing written.
        let mut o = OutputDir::open(&dir, false).unwrap();
        o.write("a.wgsl", "a3").unwrap();
        o.write("notes.txt", "effc's").unwrap();
        let e = o.finish().unwrap_err().to_string();
        assert!(e.contains("`notes.txt`") && e.contains("--force"), "{e}");
        assert_eq!(std::fs::read_to_string(dir.join("a.wgsl")).unwrap(), "a2");
        // With --force it is overwritten, and then effc's.
        let mut o = OutputDir::open(&dir, true).unwrap();
        o.write("notes.txt", "effc's").unwrap();
        o.finish().unwrap();
        assert_eq!(names(&dir), [MANIFEST, "notes.txt"]);
    }

    #[test]
    fn a_directory_it_did_not_write_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("report.md"), "mine").unwrap();
        let e = OutputDir::open(tmp.path(), false)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not empty") && e.contains("report.md"), "{e}");
        // An empty existing directory is fine.
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        OutputDir::open(&empty, false).unwrap();
        // Names that leave the directory are refused.
        let mut o = OutputDir::open(&empty, false).unwrap();
        assert!(o.write("../x", "x").is_err());
        assert!(o.write(MANIFEST, "x").is_err());
        // A file is not a directory.
        let e = OutputDir::open(&tmp.path().join("report.md"), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a regular file, not a directory"), "{e}");
    }

    #[test]
    fn manifest_lines_that_leave_the_directory_are_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("precious");
        std::fs::write(&outside, "keep").unwrap();
        let dir = tmp.path().join("out");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(MANIFEST), "../precious\n/etc/passwd\n").unwrap();
        let mut o = OutputDir::open(&dir, false).unwrap();
        o.write("a.wgsl", "a").unwrap();
        assert!(o.finish().unwrap().removed.is_empty());
        assert!(outside.exists());
    }

    #[test]
    fn a_manifest_entry_that_is_a_directory_is_refused_before_writing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        let mut o = OutputDir::open(&dir, false).unwrap();
        o.write("old.wgsl", "old").unwrap();
        o.write("report.md", "r1").unwrap();
        o.finish().unwrap();
        std::fs::remove_file(dir.join("old.wgsl")).unwrap();
        std::fs::create_dir(dir.join("old.wgsl")).unwrap();
        std::fs::write(dir.join("old.wgsl/mine"), "keep").unwrap();
        let mut o = OutputDir::open(&dir, false).unwrap();
        o.write("report.md", "r2").unwrap();
        let e = o.finish().unwrap_err().to_string();
        assert!(
            e.contains("old.wgsl") && e.contains("is a directory"),
            "{e}"
        );
        // Nothing was written.
        assert_eq!(
            std::fs::read_to_string(dir.join("report.md")).unwrap(),
            "r1"
        );
        // A staged name that is a directory is refused the same way.
        let mut o = OutputDir::open(&dir, false).unwrap();
        o.write("old.wgsl", "new").unwrap();
        let e = o.finish().unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        assert_eq!(
            std::fs::read_to_string(dir.join("old.wgsl/mine")).unwrap(),
            "keep"
        );
    }

    #[test]
    fn a_staged_file_that_is_an_input_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        let mut o = OutputDir::open(&dir, false).unwrap();
        o.write("weights.bin", "old").unwrap();
        o.finish().unwrap();
        let mut files = crate::Outputs::new();
        files
            .input("the checkpoint", dir.join("weights.bin"))
            .unwrap();
        let mut o = files.dir("-o", &dir, false).unwrap();
        o.write("weights.bin", "new").unwrap();
        let e = o.finish().unwrap_err().to_string();
        assert!(e.contains("is the checkpoint"), "{e}");
        assert_eq!(
            std::fs::read_to_string(dir.join("weights.bin")).unwrap(),
            "old"
        );
    }
}
