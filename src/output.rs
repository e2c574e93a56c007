//! Output files that appear complete or not at all: written to a temporary file in the target
//! folder, flushed to disk, then renamed over the target. A failure, or a crash, at any point
//! leaves the target as it was; the temporary file is removed when dropped uncommitted.

use std::fs::{File, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub struct Output {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
}

impl Output {
    /// Starts writing `path`. Fails at once if its folder does not exist or is not writable.
    pub fn create(path: &Path) -> std::io::Result<Output> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".nnsign-tmp-")
            .tempfile_in(dir)?;
        // tempfile creates 0600; outputs are ordinary files.
        tmp.as_file()
            .set_permissions(Permissions::from_mode(0o644))?;
        Ok(Output {
            tmp,
            path: path.to_owned(),
        })
    }

    pub fn file(&self) -> &File {
        self.tmp.as_file()
    }

    pub fn file_mut(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    /// Flushes the data to disk and renames the file into place.
    pub fn commit(self) -> std::io::Result<()> {
        self.tmp.as_file().sync_all()?;
        self.tmp.persist(&self.path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// True when `a` and `b` name the same existing file (so writing one would replace the other).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}
