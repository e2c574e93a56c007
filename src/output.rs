//! Output files that appear complete or not at all: written to a temporary file in the target
//! folder, flushed to disk, then renamed over the target, and the folder flushed so that the
//! rename itself survives a crash. A failure at any point leaves the target as it was; the
//! temporary file is removed when dropped uncommitted.

use std::fs::{File, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub struct Output {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
}

/// The folder a path's file lives in (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Flushes a folder's entries (a rename into it) to disk.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Output {
    /// Starts writing `path`. Fails at once if its folder does not exist or is not writable.
    pub fn create(path: &Path) -> std::io::Result<Output> {
        let tmp = tempfile::Builder::new()
            .prefix(".nnsign-tmp-")
            // An ordinary file: 0666 less the user's umask, like any other output.
            .permissions(Permissions::from_mode(0o666))
            .tempfile_in(parent_dir(path))?;
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
        sync_dir(parent_dir(&self.path))
    }
}

/// Makes `dir` a folder only this user can use (mode 0700), or checks that the one already
/// there is one: a real folder (not a link), owned by this user, writable by no one else.
/// Otherwise another local user could have planted it, to swap files in after they were
/// checked.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        other => return other,
    }
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.file_type().is_dir()
        || meta.uid() != crate::sys::effective_uid()
        || meta.mode() & 0o022 != 0
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "exists but is not this user's private folder (a link, another user's, or writable by others); remove it and run again",
        ));
    }
    Ok(())
}

/// True when `a` and `b` name the same existing file (so writing one would replace the other).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}
