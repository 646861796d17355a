//! A local folder used as a bucket: keys are paths below the folder.
//!
//! Hidden entries (names starting with `.`) are never listed, so a writer that
//! writes `.name.tmp` and renames it into place is never seen half-written.
//! Symbolic links are followed (each folder once); a name that is not UTF-8
//! cannot be a key and is not listed, with a warning naming it.

use crate::error::{StoreError, StoreResult};
use crate::model::SourceObject;
use crate::ScanSource;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use tracing::warn;

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

/// A failed read of one file: a file that is there but cannot be read
/// (permissions, a folder in its place) is [`StoreError::Unreadable`], so
/// that ingest quarantines it and goes on with the other files.
fn fetch_err(path: &Path, e: std::io::Error) -> StoreError {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::PermissionDenied | ErrorKind::IsADirectory => StoreError::Unreadable {
            backend: BACKEND,
            what: path.display().to_string(),
            reason: e.to_string(),
        },
        _ => io_err("fetch", path, e),
    }
}

/// The bytes of the regular file at `path` (links followed), or
/// [`StoreError::TooLarge`] when it holds more than `max_bytes`: its length
/// is checked first, and the read stops one byte past the limit (a file that
/// grows while it is read). Anything but a regular file (a folder, a FIFO
/// that would block, a device such as `/dev/zero` that never ends) is
/// [`StoreError::Unreadable`] before it is opened. Blocking; the folder
/// source's fetch, and the offline commands' reads of scan files.
pub fn read_at_most(path: &Path, max_bytes: u64) -> StoreResult<Vec<u8>> {
    use std::io::Read;
    let too_large = |size: u64| StoreError::TooLarge {
        what: path.display().to_string(),
        size: usize::try_from(size).unwrap_or(usize::MAX),
        limit: usize::try_from(max_bytes).unwrap_or(usize::MAX),
    };
    if !std::fs::metadata(path)
        .map_err(|e| fetch_err(path, e))?
        .is_file()
    {
        return Err(StoreError::Unreadable {
            backend: BACKEND,
            what: path.display().to_string(),
            reason: "not a regular file".into(),
        });
    }
    let file = std::fs::File::open(path).map_err(|e| fetch_err(path, e))?;
    let len = file.metadata().map_err(|e| fetch_err(path, e))?.len();
    if len > max_bytes {
        return Err(too_large(len));
    }
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| fetch_err(path, e))?;
    if out.len() as u64 > max_bytes {
        return Err(too_large(out.len() as u64));
    }
    Ok(out)
}

/// Every file below the folder `dir`, found as the folder source lists a
/// bucket (links followed, each folder once; hidden names, links to nothing,
/// names that are not UTF-8 and unreadable sub-folders left out, each with a
/// warning), sorted by path. Blocking. For the offline commands, which read
/// a folder of scans the way ingest reads a folder bucket.
pub fn files_below(dir: &Path) -> StoreResult<Vec<PathBuf>> {
    let meta = std::fs::metadata(dir).map_err(|e| io_err("list", dir, e))?;
    if !meta.is_dir() {
        let e = std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a folder");
        return Err(io_err("list", dir, e));
    }
    let mut out: Vec<PathBuf> = walk(dir, "", None)?
        .into_iter()
        .map(|o| dir.join(o.key))
        .collect();
    out.sort();
    Ok(out)
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
    let mut stack = vec![(start.clone(), dir_part.to_string())];
    // Folders entered, by their real path: a link back up the tree is
    // followed once, not for ever.
    let mut seen = HashSet::new();
    while let Some((dir, key_prefix)) = stack.pop() {
        if let Ok(real) = std::fs::canonicalize(&dir) {
            if !seen.insert(real) {
                continue;
            }
        }
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            // A folder below the one listed (say, a folder named like a
            // scan) that cannot be read must not stop the listing of every
            // file beside it: it is left out, with a warning naming it.
            Err(e) if dir != start => {
                warn!(folder = %dir.display(), error = %e, "cannot list a folder of the source; left out");
                continue;
            }
            Err(e) => return Err(io_err("list", &dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_err("list", &dir, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                // Not UTF-8: cannot be a key. Said, so that a scan is not
                // lost without a word.
                warn!(folder = %dir.display(), name = %entry.file_name().to_string_lossy(),
                    "a file name that is not UTF-8 cannot be a key; not listed");
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let key = format!("{key_prefix}{name}");
            let mut ft = entry
                .file_type()
                .map_err(|e| io_err("list", &entry.path(), e))?;
            let mut meta = None;
            // Links are followed, as the offline commands do (a folder of
            // links to scans kept elsewhere); a link to nothing is skipped.
            if ft.is_symlink() {
                match std::fs::metadata(entry.path()) {
                    Ok(m) => {
                        ft = m.file_type();
                        meta = Some(m);
                    }
                    Err(e) => {
                        warn!(link = %entry.path().display(), error = %e, "a link to nothing usable; not listed");
                        continue;
                    }
                }
            }
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
                let meta = match meta {
                    Some(m) => m,
                    None => entry
                        .metadata()
                        .map_err(|e| io_err("list", &entry.path(), e))?,
                };
                out.push(SourceObject {
                    key,
                    size: meta.len(),
                    last_modified: meta.modified().ok().map(DateTime::<Utc>::from),
                });
            } else if !ft.is_dir() && !ft.is_file() && key.starts_with(prefix) {
                // A FIFO, socket or device (also behind a link): no scan,
                // and reading it could block or never end. Said, so that
                // it is not left out without a word.
                warn!(path = %entry.path().display(),
                    "not a regular file (a FIFO, socket or device); not listed");
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
        // `metadata` follows a link to a folder, as the listing does.
        if full.starts_with(prefix) && std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()) {
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

    async fn fetch(&self, key: &str, max_bytes: u64) -> StoreResult<Vec<u8>> {
        let path = self.path_of(key)?;
        blocking(move || read_at_most(&path, max_bytes)).await
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

    use raincast_testkit::TempDir;

    #[tokio::test]
    async fn a_folder_that_cannot_be_listed_does_not_hide_the_files_beside_it() {
        let dir = TempDir::new("local-deep");
        let day = dir.path().join("r1/2026/12/05");
        std::fs::create_dir_all(&day).unwrap();
        std::fs::write(day.join("r1_20261205_1000.h5"), b"scan").unwrap();
        // Folders nested deeper than PATH_MAX allows to open (each level
        // made relative to the one before): reading the deepest fails even
        // for root, as an unreadable folder does for the service's user.
        let name = "d".repeat(250);
        let made = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "for i in $(seq 18); do mkdir {name} && cd {name}; done"
            ))
            .current_dir(&day)
            .status()
            .unwrap();
        assert!(made.success());
        let source = LocalSource::new(dir.path());
        let listed = source.list("r1/2026/12/05/", None).await.unwrap();
        let keys: Vec<_> = listed.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["r1/2026/12/05/r1_20261205_1000.h5"]);
        // The listed folder itself failing is still an error.
        std::fs::write(dir.path().join("r2"), b"a file, not a folder").unwrap();
        assert!(source.list("r2/2026/", None).await.is_err());
    }

    #[tokio::test]
    async fn links_are_followed_once_and_dangling_ones_skipped() {
        use std::os::unix::fs::symlink;
        // As `raincast prep DIR` reads them: a scan linked into the bucket
        // must not be left out of ingest without a word.
        let elsewhere = TempDir::new("local-elsewhere");
        let dir = TempDir::new("local-links");
        let (e, day) = (elsewhere.path(), dir.path().join("r1/2026/12/05"));
        std::fs::create_dir_all(e.join("more")).unwrap();
        std::fs::create_dir_all(&day).unwrap();
        std::fs::write(e.join("linked.h5"), b"linked scan").unwrap();
        std::fs::write(e.join("more/c.h5"), b"c").unwrap();
        std::fs::write(day.join("a.h5"), b"a").unwrap();
        symlink(e.join("linked.h5"), day.join("b.h5")).unwrap();
        symlink(e.join("more"), day.join("more")).unwrap();
        symlink(&day, day.join("loop")).unwrap();
        symlink(e.join("gone.h5"), day.join("gone.h5")).unwrap();
        let source = LocalSource::new(dir.path());
        let listed = source.list("r1/2026/12/05/", None).await.unwrap();
        let keys: Vec<_> = listed.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "r1/2026/12/05/a.h5",
                "r1/2026/12/05/b.h5",
                "r1/2026/12/05/more/c.h5"
            ]
        );
        assert_eq!(listed[1].size, 11, "the linked file's size");
        assert_eq!(
            source.fetch("r1/2026/12/05/b.h5", 1 << 20).await.unwrap(),
            b"linked scan"
        );
        // A linked day folder is found by the folder discovery too.
        symlink(&day, dir.path().join("r1/2026/12/06")).unwrap();
        assert_eq!(
            source.list_dirs("r1/2026/12/").await.unwrap(),
            ["r1/2026/12/05/", "r1/2026/12/06/"]
        );
    }

    #[tokio::test]
    async fn a_file_that_cannot_be_read_is_unreadable_not_a_failed_source() {
        let dir = TempDir::new("local-unreadable");
        std::fs::create_dir_all(dir.path().join("r1/a.h5")).unwrap();
        let source = LocalSource::new(dir.path());
        let err = source.fetch("r1/a.h5", 1 << 20).await.unwrap_err();
        assert_eq!(err.kind(), "unreadable", "{err}");
        assert!(err.to_string().contains("r1/a.h5"), "{err}");
        // The same for a permission error (what a file with mode 000 gives
        // a service that does not run as root); a missing file stays
        // `not_found`.
        let denied = fetch_err(
            Path::new("x"),
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        );
        assert_eq!(denied.kind(), "unreadable");
        let err = source.fetch("r1/missing.h5", 1 << 20).await.unwrap_err();
        assert_eq!(err.kind(), "not_found");
    }

    #[test]
    fn keys_must_stay_inside_the_folder() {
        assert!(check_key("a/b/c.h5").is_ok());
        assert!(check_key("").is_ok());
        for bad in ["/etc/passwd", "a/../b", "./a", "a\\b"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }
}
