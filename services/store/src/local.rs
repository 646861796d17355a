//! A local folder used as a bucket: keys are paths below the folder.
//!
//! Hidden entries (names starting with `.`) are never listed, so a writer that
//! writes `.name.tmp` and renames it into place is never seen half-written.

use crate::error::{StoreError, StoreResult};
use crate::model::SourceObject;
use crate::ScanSource;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};

/// A folder as a [`ScanSource`].
#[derive(Debug, Clone)]
pub struct LocalSource {
    root: PathBuf,
}

const BACKEND: &str = "local folder";

impl LocalSource {
    /// A source rooted at `root` (it need not exist yet: it lists as empty).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &str) -> StoreResult<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

/// Keys must be relative, `/`-separated, with no `.`/`..` components.
fn check_key(key: &str) -> StoreResult<()> {
    let bad =
        key.starts_with('/') || key.contains('\\') || key.split('/').any(|c| c == ".." || c == ".");
    if bad {
        return Err(StoreError::invalid(
            "key",
            format!("{key:?} is not a relative key"),
        ));
    }
    Ok(())
}

fn io_err(op: &'static str, path: &Path, e: std::io::Error) -> StoreError {
    if e.kind() == std::io::ErrorKind::NotFound {
        StoreError::NotFound {
            backend: BACKEND,
            what: path.display().to_string(),
        }
    } else {
        StoreError::Backend {
            backend: BACKEND,
            op,
            reason: format!("{}: {e}", path.display()),
        }
    }
}

/// Lists every file below `dir` whose key (relative to `root`) starts with
/// `prefix` and sorts after `start_after`. Blocking.
fn walk(root: &Path, prefix: &str, start_after: Option<&str>) -> StoreResult<Vec<SourceObject>> {
    // Start in the deepest folder named completely by the prefix.
    let dir_part = match prefix.rfind('/') {
        Some(i) => &prefix[..=i],
        None => "",
    };
    let start = root.join(dir_part);
    let mut out = Vec::new();
    let mut stack = vec![(start, dir_part.to_string())];
    while let Some((dir, key_prefix)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("list", &dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_err("list", &dir, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue; // not UTF-8: cannot be a key
            };
            if name.starts_with('.') {
                continue;
            }
            let key = format!("{key_prefix}{name}");
            let ft = entry
                .file_type()
                .map_err(|e| io_err("list", &entry.path(), e))?;
            if ft.is_dir() {
                let dir_key = format!("{key}/");
                // Descend only where keys can still match the prefix.
                if dir_key.starts_with(prefix) || prefix.starts_with(&dir_key) {
                    stack.push((entry.path(), dir_key));
                }
            } else if ft.is_file() && key.starts_with(prefix) {
                if start_after.is_some_and(|s| key.as_str() <= s) {
                    continue;
                }
                let meta = entry
                    .metadata()
                    .map_err(|e| io_err("list", &entry.path(), e))?;
                out.push(SourceObject {
                    key,
                    size: meta.len(),
                    last_modified: meta.modified().ok().map(DateTime::<Utc>::from),
                });
            }
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

fn dirs(root: &Path, prefix: &str) -> StoreResult<Vec<String>> {
    let dir_part = match prefix.rfind('/') {
        Some(i) => &prefix[..=i],
        None => "",
    };
    let dir = root.join(dir_part);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", &dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err("list", &dir, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let full = format!("{dir_part}{name}/");
        if full.starts_with(prefix) && entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.push(full);
        }
    }
    out.sort();
    Ok(out)
}

#[async_trait]
impl ScanSource for LocalSource {
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> StoreResult<Vec<SourceObject>> {
        check_key(prefix)?;
        let root = self.root.clone();
        let prefix = prefix.to_string();
        let start_after = start_after.map(str::to_string);
        blocking(move || walk(&root, &prefix, start_after.as_deref())).await
    }

    async fn list_dirs(&self, prefix: &str) -> StoreResult<Vec<String>> {
        check_key(prefix)?;
        let root = self.root.clone();
        let prefix = prefix.to_string();
        blocking(move || dirs(&root, &prefix)).await
    }

    async fn fetch(&self, key: &str) -> StoreResult<Vec<u8>> {
        let path = self.path_of(key)?;
        tokio::task::spawn_blocking(move || {
            std::fs::read(&path).map_err(|e| io_err("fetch", &path, e))
        })
        .await
        .map_err(join_err)?
    }

    fn needs_settling(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> StoreResult<T> + Send + 'static,
) -> StoreResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(join_err)?
}

fn join_err(e: tokio::task::JoinError) -> StoreError {
    StoreError::Backend {
        backend: BACKEND,
        op: "blocking task",
        reason: e.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_stay_inside_the_folder() {
        assert!(check_key("a/b/c.h5").is_ok());
        assert!(check_key("").is_ok());
        for bad in ["/etc/passwd", "a/../b", "./a", "a\\b"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }
}
