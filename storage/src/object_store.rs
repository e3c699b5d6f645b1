//! Object storage: one trait, and the filesystem backend (the default,
//! `./data/objects`). Keys are `/`-separated paths of safe characters.
//!
//! What is durable when: [`ObjectStore::put`] returns once the object is
//! whole and fsynced (filesystem: temporary file, fsync, rename, directory
//! fsync), so a crash leaves no partial object under its key.
//!
//! The filesystem backend writes each object first under a temporary name
//! that no key can have (it contains `~`, outside the key alphabet) with a
//! random part, so listings never confuse the two and processes on
//! different hosts sharing one folder never write the same temporary file.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

/// A boxed future, so the trait can be used as `dyn ObjectStore`.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why an object operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("object {0} not found")]
    NotFound(String),
    #[error("invalid object key {0:?}: keys are '/'-separated names of [A-Za-z0-9!-_.*'()]")]
    InvalidKey(String),
    #[error("object store error on {key}: {message}")]
    Backend { key: String, message: String },
}

/// Where Balsa keeps chunks and index segments.
pub trait ObjectStore: Send + Sync {
    /// Stores `bytes` under `key`, replacing any object there; durable on `Ok`.
    fn put<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> BoxFut<'a, Result<(), ObjectError>>;
    /// The object under `key`.
    fn get<'a>(&'a self, key: &'a str) -> BoxFut<'a, Result<Vec<u8>, ObjectError>>;
    /// Keys starting with `prefix`, sorted.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFut<'a, Result<Vec<String>, ObjectError>>;
    /// Removes `key`; removing a missing key is not an error.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFut<'a, Result<(), ObjectError>>;
    /// For logs: which store this is.
    fn describe(&self) -> String;
}

/// Checks a key: non-empty `/`-separated segments of S3's safe characters
/// (`A-Za-z0-9` and `!-_.*'()`, which is also the tenant-id alphabet),
/// none of them `.` or `..`.
pub fn validate_key(key: &str) -> Result<(), ObjectError> {
    let ok = !key.is_empty()
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'!' | b'*' | b'\'' | b'(' | b')'))
        });
    if ok {
        Ok(())
    } else {
        Err(ObjectError::InvalidKey(key.to_string()))
    }
}

/// Objects as files under a root directory.
#[derive(Clone, Debug)]
pub struct FilesystemStore {
    root: PathBuf,
}

impl FilesystemStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
}

fn backend(key: &str, e: impl std::fmt::Display) -> ObjectError {
    ObjectError::Backend { key: key.to_string(), message: e.to_string() }
}

/// Creates `dir` and its missing ancestors, and fsyncs the parent of each
/// directory it created, so the new entries survive a crash.
pub fn create_dir_all_durable(dir: &Path) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.exists() {
            break;
        }
        missing.push(d.to_path_buf());
        cur = d.parent();
    }
    std::fs::create_dir_all(dir)?;
    for d in missing.iter().rev() {
        if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::File::open(parent)?.sync_all()?;
        }
    }
    Ok(())
}

/// Marks temporary files: `~` is not in the key alphabet ([`validate_key`]).
const TEMP_MARK: char = '~';

/// A temporary name beside `path` that no key can have: the object's name,
/// [`TEMP_MARK`], and 64 random bits (hosts sharing the folder may have the
/// same pid).
fn temp_path(path: &Path) -> std::io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| std::io::Error::other("object path has no file name"))?;
    let mut tmp = name.to_os_string();
    tmp.push(format!("{TEMP_MARK}tmp-{:016x}", rand::random::<u64>()));
    Ok(path.with_file_name(tmp))
}

fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().ok_or_else(|| std::io::Error::other("object path has no parent"))?;
    create_dir_all_durable(dir)?;
    let tmp = temp_path(path)?;
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        // Best effort: a failed write leaves no temporary file behind.
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    std::fs::File::open(dir)?.sync_all()
}

fn list_dir(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in rd {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            list_dir(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            let key = rel.to_string_lossy().replace(std::path::MAIN_SEPARATOR, "/");
            if !key.contains(TEMP_MARK) {
                out.push(key);
            }
        }
    }
    Ok(())
}

impl ObjectStore for FilesystemStore {
    fn put<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> BoxFut<'a, Result<(), ObjectError>> {
        Box::pin(async move {
            validate_key(key)?;
            let path = self.root.join(key);
            tokio::task::spawn_blocking(move || write_durably(&path, &bytes))
                .await
                .map_err(|e| backend(key, e))?
                .map_err(|e| backend(key, e))
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFut<'a, Result<Vec<u8>, ObjectError>> {
        Box::pin(async move {
            validate_key(key)?;
            match tokio::fs::read(self.root.join(key)).await {
                Ok(b) => Ok(b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ObjectError::NotFound(key.to_string())),
                Err(e) => Err(backend(key, e)),
            }
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFut<'a, Result<Vec<String>, ObjectError>> {
        Box::pin(async move {
            let root = self.root.clone();
            // Walk only the directory part of the prefix.
            let dir_part = match prefix.rfind('/') {
                Some(i) => prefix[..i].to_string(),
                None => String::new(),
            };
            let start = if dir_part.is_empty() { root.clone() } else { root.join(&dir_part) };
            let mut keys = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                list_dir(&root, &start, &mut out).map(|_| out)
            })
            .await
            .map_err(|e| backend(prefix, e))?
            .map_err(|e| backend(prefix, e))?;
            keys.retain(|k| k.starts_with(prefix));
            keys.sort();
            Ok(keys)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFut<'a, Result<(), ObjectError>> {
        Box::pin(async move {
            validate_key(key)?;
            match tokio::fs::remove_file(self.root.join(key)).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(backend(key, e)),
            }
        })
    }

    fn describe(&self) -> String {
        format!("filesystem:{}", self.root.display())
    }
}

/// The behaviour every backend must show; each backend's tests run it.
pub mod suite {
    use super::*;

    /// Runs the suite against `store` (which must be empty under `t/`).
    pub async fn run(store: &dyn ObjectStore) {
        assert!(matches!(store.get("t/missing").await, Err(ObjectError::NotFound(_))));
        store.put("t/a/1", b"one".to_vec()).await.expect("put");
        store.put("t/a/2", b"two".to_vec()).await.expect("put");
        store.put("t/b/1", vec![0u8; 300_000]).await.expect("put a larger object");
        assert_eq!(store.get("t/a/1").await.expect("get"), b"one");
        assert_eq!(store.get("t/b/1").await.expect("get").len(), 300_000);
        store.put("t/a/1", b"uno".to_vec()).await.expect("overwrite");
        assert_eq!(store.get("t/a/1").await.expect("get"), b"uno");
        assert_eq!(store.list("t/a/").await.expect("list"), vec!["t/a/1", "t/a/2"]);
        assert_eq!(store.list("t/").await.expect("list").len(), 3);
        assert!(store.list("t/zzz/").await.expect("list of nothing").is_empty());
        store.delete("t/a/1").await.expect("delete");
        store.delete("t/a/1").await.expect("delete twice");
        assert!(matches!(store.get("t/a/1").await, Err(ObjectError::NotFound(_))));
        // Names that look like temporary files are ordinary keys.
        store.put("t/a.tmp-b/x.tmp-1", b"tmp-like".to_vec()).await.expect("put");
        assert_eq!(store.list("t/a.tmp-b/").await.expect("list"), vec!["t/a.tmp-b/x.tmp-1"]);
        assert_eq!(store.get("t/a.tmp-b/x.tmp-1").await.expect("get"), b"tmp-like");
        store.delete("t/a.tmp-b/x.tmp-1").await.expect("delete");
        for bad in ["", "/abs", "a//b", "../x", "a/../b", "a b", "a~tmp-1"] {
            assert!(matches!(store.put(bad, vec![]).await, Err(ObjectError::InvalidKey(_))), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn filesystem_passes_the_suite() {
        let dir = tempfile::tempdir().unwrap();
        suite::run(&FilesystemStore::new(dir.path())).await;
    }
}
