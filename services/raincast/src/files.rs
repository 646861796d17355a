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

/// Every regular file below `dir`, sorted by path (hidden files skipped).
pub fn files_below(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in
            std::fs::read_dir(&d).with_context(|| format!("{}: cannot list", d.display()))?
        {
            let entry = entry?;
            let p = entry.path();
            if p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
            {
                continue;
            }
            let ft = entry.file_type()?;
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Decodes and preps one scan (default prep: 0.1 mm/h threshold).
pub fn load_field(path: &Path, format: Option<Format>) -> Result<RainField> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let name = path.file_name().and_then(|n| n.to_str());
    let scan = decode::decode(&bytes, name, format)
        .with_context(|| format!("{}: cannot decode", path.display()))?;
    Ok(prep::prep(&scan, &PrepOptions::default()))
}
