//! An output directory that effc owns: `.effc-manifest` lists the files effc wrote
//! there. Writing again replaces those files, removes the ones the new output no
//! longer has (stale kernels of another model), and touches nothing else: a file
//! effc did not write is never overwritten (unless `--force`), and a non-empty
//! directory without a manifest is refused.
//!
//! Files are staged with [`OutputDir::write`] and written by [`OutputDir::finish`],
//! after every check passed: a refusal writes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::Failure;

/// The manifest's file name.
pub const MANIFEST: &str = ".effc-manifest";

const HEADER: &str = "# Files effc wrote into this directory; the next `effc compile` into it replaces\n# them and removes those it no longer writes. Other files are left alone.\n";

pub struct OutputDir {
    dir: PathBuf,
    force: bool,
    /// The files the previous run wrote (its manifest).
    previous: BTreeSet<String>,
    staged: BTreeMap<String, Vec<u8>>,
}

/// What [`OutputDir::finish`] did.
#[derive(Debug)]
pub struct Written {
    /// Files of the previous output that this one no longer has, removed.
    pub removed: Vec<String>,
}

impl OutputDir {
    /// Opens `dir` (created if needed). Refuses an existing non-empty directory
    /// without a manifest unless `force`.
    pub fn open(dir: &Path, force: bool) -> Result<OutputDir, Failure> {
        let shown = dir.display();
        let previous = match std::fs::read_dir(dir) {
            Ok(entries) => {
                let manifest = dir.join(MANIFEST);
                match std::fs::read_to_string(&manifest) {
                    Ok(text) => text
                        .lines()
                        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                        .filter(|l| plain_name(l))
                        .map(str::to_string)
                        .collect(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        let mut names: Vec<String> = entries
                            .filter_map(|e| e.ok())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect();
                        if !names.is_empty() && !force {
                            names.sort();
                            let shown_names = names.iter().take(3).cloned().collect::<Vec<_>>();
                            return Err(format!(
                                "`{shown}` is not empty ({} entries: {}{}) and effc did not write it (no {MANIFEST}); give an empty or new directory, or --force to write into it anyway",
                                names.len(),
                                shown_names.join(", "),
                                if names.len() > 3 { ", ..." } else { "" }
                            )
                            .into());
                        }
                        BTreeSet::new()
                    }
                    Err(e) => {
                        return Err(format!("cannot read `{}`: {e}", manifest.display()).into())
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => return Err(format!("cannot read directory `{shown}`: {e}").into()),
        };
        Ok(OutputDir {
            dir: dir.to_path_buf(),
            force,
            previous,
            staged: BTreeMap::new(),
        })
    }

    /// Stages a file (a plain name inside the directory) for [`finish`](Self::finish).
    pub fn write(&mut self, name: &str, bytes: impl Into<Vec<u8>>) -> Result<(), Failure> {
        if !plain_name(name) || name == MANIFEST {
            return Err(format!("effc cannot write `{name}`: not a plain file name").into());
        }
        self.staged.insert(name.to_string(), bytes.into());
        Ok(())
    }

    /// Checks that no staged file would overwrite a file effc did not write, then
    /// writes them all, removes the previous output's files that are no longer
    /// written, and writes the manifest.
    pub fn finish(self) -> Result<Written, Failure> {
        let theirs: Vec<&String> = self
            .staged
            .keys()
            .filter(|n| !self.previous.contains(*n) && self.dir.join(n).exists())
            .collect();
        if !theirs.is_empty() && !self.force {
            let names: Vec<String> = theirs.iter().take(5).map(|n| format!("`{n}`")).collect();
            return Err(format!(
                "`{}` holds {} that effc did not write (not in {MANIFEST}): {}{}; move it away, or --force to overwrite",
                self.dir.display(),
                if theirs.len() == 1 { "a file" } else { "files" },
                names.join(", "),
                if theirs.len() > 5 { ", ..." } else { "" }
            )
            .into());
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create `{}`: {e}", self.dir.display()))?;
        for (name, bytes) in &self.staged {
            crate::output::write_atomic(&self.dir.join(name), bytes)?;
        }
        let mut removed = vec![];
        for name in self
            .previous
            .difference(&self.staged.keys().cloned().collect())
        {
            let p = self.dir.join(name);
            match std::fs::remove_file(&p) {
                Ok(()) => removed.push(name.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot remove `{}`: {e}", p.display()).into()),
            }
        }
        let mut manifest = HEADER.to_string();
        for name in self.staged.keys() {
            manifest += name;
            manifest.push('\n');
        }
        crate::output::write_atomic(&self.dir.join(MANIFEST), manifest.as_bytes())?;
        Ok(Written { removed })
    }
}

/// A file name without directories, `..` or anything a manifest line could not hold.
fn plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\n', '\r', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

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
        let e = o.finish().unwrap_err().message;
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
        let e = OutputDir::open(tmp.path(), false).err().unwrap().message;
        assert!(e.contains("not empty") && e.contains("report.md"), "{e}");
        // An empty existing directory is fine.
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        OutputDir::open(&empty, false).unwrap();
        // Names that leave the directory are refused.
        let mut o = OutputDir::open(&empty, false).unwrap();
        assert!(o.write("../x", "x").is_err());
        assert!(o.write(MANIFEST, "x").is_err());
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
}
