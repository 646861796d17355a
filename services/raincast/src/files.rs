//! File helpers shared by the offline commands (prep, nowcast, verify).

use anyhow::{Context, Result};
use raincast_algorithms::decode;
use raincast_algorithms::prep::{self, PrepOptions, RainField};
use raincast_algorithms::scan::Format;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes to a temporary file beside `path`, then renames it into place, so
/// that a crash never leaves a half-written file under the final name.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with(path, bytes, std::fs::OpenOptions::new())
}

/// Like [`write_atomically`], for a secret: the file is readable by its
/// owner only (mode 0600 on Unix) from the moment it exists.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    write_with(path, bytes, opts)
}

fn write_with(path: &Path, bytes: &[u8], mut opts: std::fs::OpenOptions) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp-raincast");
    let _ = std::fs::remove_file(&tmp);
    {
        let mut f = opts.write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Every file below `dir`, sorted by path, found as ingest lists a folder
/// bucket ([`raincast_store::files_below`]): symbolic links followed (a
/// folder of links to scans kept elsewhere is read like the scans
/// themselves), each folder once; hidden files, links to nothing and
/// unreadable sub-folders left out with a warning.
pub fn files_below(dir: &Path) -> Result<Vec<PathBuf>> {
    raincast_store::files_below(dir).with_context(|| format!("{}: cannot list", dir.display()))
}

/// The bytes of one scan file: a regular file (a FIFO or a device such as
/// `/dev/zero` would block or never end) of at most ingest's default
/// `max_file_mb` (256), read no further than that, as the folder source
/// reads a scan ([`raincast_store::local::read_at_most`]).
pub fn read_scan(path: &Path) -> Result<Vec<u8>> {
    let limit = raincast_config::IngestSettings::default().max_file_bytes;
    raincast_store::local::read_at_most(path, limit).map_err(|e| match e {
        raincast_store::StoreError::TooLarge { .. } => anyhow::anyhow!(
            "{}: larger than {} MB, ingest's max_file_mb for one scan; not read further",
            path.display(),
            limit >> 20
        ),
        // A file named on the command line: say so, not "local folder".
        raincast_store::StoreError::NotFound { .. } => {
            anyhow::anyhow!("{}: no such file", path.display())
        }
        // The store's error names the file and why.
        e => anyhow::Error::new(e),
    })
}

/// Decodes and preps one scan (default prep: 0.1 mm/h threshold).
pub fn load_field(path: &Path, format: Option<Format>) -> Result<RainField> {
    let bytes = read_scan(path)?;
    let name = path.file_name().and_then(|n| n.to_str());
    let scan = decode::decode(&bytes, name, format)
        .with_context(|| format!("{}: cannot decode", path.display()))?;
    Ok(prep::prep(&scan, &PrepOptions::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn files_below_follows_links_once_and_skips_dangling_ones() -> Result<()> {
        use std::os::unix::fs::symlink;
        let elsewhere = raincast_testkit::TempDir::new("files-elsewhere");
        let root = raincast_testkit::TempDir::new("files-root");
        let (e, r) = (elsewhere.path(), root.path());
        std::fs::create_dir_all(e.join("day"))?;
        std::fs::write(e.join("day/b.h5"), b"b")?;
        std::fs::write(e.join("a.h5"), b"a")?;
        std::fs::write(r.join("c.h5"), b"c")?;
        std::fs::write(r.join(".hidden"), b"h")?;
        symlink(e.join("a.h5"), r.join("a.h5"))?; // a link to a file
        symlink(e.join("day"), r.join("day"))?; // a link to a folder
        symlink(r, r.join("loop"))?; // a link back up the tree
        symlink(e.join("gone.h5"), r.join("gone.h5"))?; // a link to nothing
        let found = files_below(r)?;
        let names: Vec<String> = found
            .iter()
            .map(|p| p.strip_prefix(r).map(|p| p.display().to_string()))
            .collect::<Result<_, _>>()?;
        assert_eq!(names, ["a.h5", "c.h5", "day/b.h5"]);
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn a_scan_is_read_from_a_regular_file_of_bounded_size_only() -> Result<()> {
        let dir = raincast_testkit::TempDir::new("files-read");
        let ok = dir.path().join("a.h5");
        std::fs::write(&ok, b"bytes")?;
        assert_eq!(read_scan(&ok)?, b"bytes");
        for (path, want) in [
            (Path::new("/dev/zero"), "/dev/zero: not a regular file"),
            (dir.path(), "not a regular file"),
        ] {
            let err = read_scan(path)
                .map(|_| ())
                .expect_err("refused")
                .to_string();
            assert!(err.contains(want), "{err}");
        }
        // Past the limit: a sparse file, no disk used.
        let big = dir.path().join("big.h5");
        std::fs::File::create(&big)?.set_len((256 << 20) + 1)?;
        let err = read_scan(&big)
            .map(|_| ())
            .expect_err("too large")
            .to_string();
        assert!(err.contains("larger than 256 MB"), "{err}");
        Ok(())
    }
}
