//! Rollback and freeze protection for one host, in the spirit of TUF: the highest version of
//! each model name accepted so far, with its artifact digest.
//!
//! [`State::check`] refuses an artifact whose version is lower than the recorded one, or equal
//! to it with other content (two releases under one version). [`State::record`] checks again
//! under a lock (another process may have accepted a newer version meanwhile) and replaces the
//! file atomically: written to a temporary file in the same folder, synced, renamed over the
//! old one, and the folder synced. A crash at any point leaves the old state or the new one,
//! never a mix.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::policy::PolicyError;
use crate::format::parse_version;

/// Largest state file read, in bytes (about 100,000 models).
pub const MAX_STATE_LEN: u64 = 16 << 20;
/// Value of `nnsign_state` in the files this version writes.
pub const STATE_FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    nnsign_state: u32,
    models: BTreeMap<String, Entry>,
}

/// What was accepted for one model name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub version: String,
    /// The artifact digest, `sha256:` and 64 hex digits.
    pub digest: String,
    /// When it was accepted, seconds since the epoch.
    pub accepted: u64,
}

/// A state file (it need not exist yet).
#[derive(Debug, Clone)]
pub struct State {
    path: PathBuf,
}

/// What recording did.
#[derive(Debug, PartialEq, Eq)]
pub enum Recorded {
    /// The version is the highest seen: the file now says so.
    Raised { from: Option<String> },
    /// The same version and content were accepted before; nothing changed.
    Same,
}

impl State {
    pub fn new(path: &Path) -> State {
        State {
            path: path.to_owned(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Refuses `version` of `name` (with artifact digest `digest`) if this host accepted a
    /// higher version, or the same version with other content.
    pub fn check(
        &self,
        name: &str,
        version: Option<&str>,
        digest: &str,
    ) -> Result<(), PolicyError> {
        let models = self.read()?;
        judge(&self.path, models.get(name), name, version, digest).map(drop)
    }

    /// Checks again under the lock and records `version` as the highest accepted for `name`.
    pub fn record(
        &self,
        name: &str,
        version: Option<&str>,
        digest: &str,
        now: u64,
    ) -> Result<Recorded, PolicyError> {
        let io = |what: &str, e: std::io::Error| {
            PolicyError::Io(format!("{}: cannot {what}: {e}", self.path.display()))
        };
        let lock_path = sidecar(&self.path, ".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io("create its lock file", e))?;
        lock.lock().map_err(|e| io("lock it", e))?;
        let mut models = self.read()?;
        let previous = models.get(name).cloned();
        if judge(&self.path, previous.as_ref(), name, version, digest)? {
            return Ok(Recorded::Same);
        }
        let version = version.expect("judge refuses a missing version");
        models.insert(
            name.to_owned(),
            Entry {
                version: version.to_owned(),
                digest: digest.to_owned(),
                accepted: now,
            },
        );
        let text = serde_json::to_string_pretty(&File {
            nnsign_state: STATE_FORMAT,
            models,
        })
        .expect("state serializes");
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        remove_stale_temps(&self.path, dir);
        let mut tmp = tempfile::Builder::new()
            .prefix(&temp_prefix(&self.path))
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|e| io("create a temporary file beside it", e))?;
        let bytes = text.as_bytes();
        let half = bytes.len() / 2;
        tmp.write_all(&bytes[..half]).map_err(|e| io("write", e))?;
        crash_point("state-write");
        tmp.write_all(&bytes[half..]).map_err(|e| io("write", e))?;
        tmp.as_file().sync_all().map_err(|e| io("sync", e))?;
        crash_point("state-rename");
        tmp.persist(&self.path)
            .map_err(|e| io("replace it", e.error))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        drop(lock);
        Ok(Recorded::Raised {
            from: previous.map(|p| p.version),
        })
    }

    /// The recorded models; none when the file does not exist yet.
    fn read(&self) -> Result<BTreeMap<String, Entry>, PolicyError> {
        use std::io::Read;
        let file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => {
                return Err(PolicyError::Io(format!("{}: {e}", self.path.display())));
            }
        };
        let mut text = String::new();
        let read = file.take(MAX_STATE_LEN + 1).read_to_string(&mut text);
        let bad = |why: String| {
            PolicyError::Config(format!(
                "{}: not an nnsign state file ({why}); restore it from a backup: deleting it turns rollback protection off until versions are seen again",
                self.path.display()
            ))
        };
        read.map_err(|e| bad(e.to_string()))?;
        if text.len() as u64 > MAX_STATE_LEN {
            return Err(bad(format!("larger than {MAX_STATE_LEN} bytes")));
        }
        let file: File = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if file.nnsign_state != STATE_FORMAT {
            return Err(bad(format!(
                "state format {}, this nnsign reads {STATE_FORMAT}",
                file.nnsign_state
            )));
        }
        for (name, e) in &file.models {
            parse_version("recorded version", &e.version)
                .map_err(|err| bad(format!("model {name:?}: {err}")))?;
        }
        Ok(file.models)
    }
}

/// Whether `version` may follow `seen`: `Ok(true)` when it is the same release again,
/// `Ok(false)` when it is newer (or the first), an error for a rollback or a second release
/// under one version.
fn judge(
    path: &Path,
    seen: Option<&Entry>,
    name: &str,
    version: Option<&str>,
    digest: &str,
) -> Result<bool, PolicyError> {
    let Some(version) = version else {
        return Err(PolicyError::Freshness(format!(
            "model {name:?} has no version, and rollback protection ({}) compares versions; pack it with --model-version",
            path.display()
        )));
    };
    let v = parse_version("model version", version)
        .map_err(|e| PolicyError::Freshness(e.to_string()))?;
    let Some(seen) = seen else {
        return Ok(false);
    };
    let old = parse_version("recorded version", &seen.version)
        .map_err(|e| PolicyError::Config(e.to_string()))?;
    match v.cmp_precedence(&old) {
        std::cmp::Ordering::Greater => Ok(false),
        std::cmp::Ordering::Less => Err(PolicyError::Freshness(format!(
            "rollback refused: model {name:?} version {version} is older than version {} accepted on {} ({})",
            seen.version,
            crate::clock::utc(seen.accepted),
            path.display()
        ))),
        std::cmp::Ordering::Equal if seen.digest == digest => Ok(true),
        std::cmp::Ordering::Equal => Err(PolicyError::Freshness(format!(
            "model {name:?} version {version} was accepted before with other content ({}, this one is {digest}): two releases under one version; ask for a new version number",
            seen.digest
        ))),
    }
}

/// `path` with `suffix` appended to its file name.
fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(suffix);
    path.with_file_name(name)
}

fn temp_prefix(path: &Path) -> String {
    format!(
        ".{}.",
        path.file_name().unwrap_or_default().to_string_lossy()
    )
}

/// Temporary files an interrupted writer left. Called under the lock, when no writer runs.
fn remove_stale_temps(path: &Path, dir: &Path) {
    let prefix = temp_prefix(path);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && name.ends_with(".tmp") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Test hook: with `NNSIGN_TEST_CRASH` set to `point`, the process dies here, as a power cut
/// or `kill -9` would stop it, so that tests can check what a crash leaves behind.
fn crash_point(point: &str) {
    if std::env::var_os("NNSIGN_TEST_CRASH").is_some_and(|v| v == point) {
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_only_go_up_and_one_version_has_one_content() {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = State::new(&dir.path().join("state.json"));
        let (a, b) = ("sha256:aa", "sha256:bb");
        assert!(s.check("m", Some("1.2.0"), a).is_ok());
        assert_eq!(
            s.record("m", Some("1.2.0"), a, 10).ok(),
            Some(Recorded::Raised { from: None })
        );
        assert_eq!(
            s.record("m", Some("1.2.0"), a, 11).ok(),
            Some(Recorded::Same)
        );
        // Build metadata does not change precedence: still version 1.2.0.
        assert!(matches!(
            s.check("m", Some("1.2.0+build.7"), b),
            Err(PolicyError::Freshness(_))
        ));
        assert!(matches!(
            s.check("m", Some("1.1.9"), a),
            Err(PolicyError::Freshness(_))
        ));
        assert!(matches!(s.check("m", Some("1.3.0-rc.1"), b), Ok(())));
        assert!(matches!(
            s.check("m", None, b),
            Err(PolicyError::Freshness(_))
        ));
        assert!(s.check("other", Some("0.0.1"), b).is_ok());
        assert_eq!(
            s.record("m", Some("1.3.0"), b, 12).ok(),
            Some(Recorded::Raised {
                from: Some("1.2.0".into())
            })
        );
        assert!(matches!(
            s.check("m", Some("1.3.0-rc.1"), b),
            Err(PolicyError::Freshness(_))
        ));
        std::fs::write(s.path(), "{\"nnsign_state\": 1, \"models\": {\"m\": 3}}").expect("write");
        assert!(matches!(
            s.check("m", Some("9.0.0"), a),
            Err(PolicyError::Config(_))
        ));
    }
}
