//! Decoders: bytes of one radar file in, a [`RadarScan`] out.
//!
//! One module per format. Each exposes
//! `decode(bytes: &[u8], file_name: Option<&str>) -> Result<RadarScan, DecodeError>`
//! and `looks_like(bytes, file_name) -> bool` for auto-detection. The file
//! name is only used where a format keeps metadata there (MeteoSwiss puts the
//! scan time in the name); decoders never touch the file system.

pub mod bom;
pub mod fmi_pgm;
mod h5;
pub mod mch_gif;
pub mod nexrad;
pub mod odim;

use crate::scan::{DecodeError, Format, RadarScan, DEFAULT_MAX_CELLS};

/// HDF5 superblock signature (ODIM_H5 and netCDF4 both start with it).
pub(crate) const HDF5_MAGIC: &[u8; 8] = b"\x89HDF\r\n\x1a\n";

/// Guesses the format from the content (and, for GIFs, nothing else).
/// Returns `None` when no decoder recognises the bytes.
pub fn detect(bytes: &[u8], file_name: Option<&str>) -> Option<Format> {
    if bytes.starts_with(HDF5_MAGIC) {
        // Both ODIM and BOM (netCDF-4) are HDF5; the decoders tell them
        // apart by content. Any other HDF5 goes to the ODIM decoder, whose
        // error then names the group it misses.
        if bom::looks_like(bytes, file_name) {
            return Some(Format::Bom);
        }
        return Some(Format::Odim);
    }
    if bom::looks_like(bytes, file_name) {
        // Classic netCDF (CDF-1/2/5) Rainfields files.
        return Some(Format::Bom);
    }
    if mch_gif::looks_like(bytes, file_name) {
        return Some(Format::MchGif);
    }
    if fmi_pgm::looks_like(bytes, file_name) {
        return Some(Format::FmiPgm);
    }
    if nexrad::looks_like(bytes, file_name) {
        return Some(Format::Nexrad);
    }
    None
}

/// Per-format decoder options; the defaults suit every sample format.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeOptions {
    /// Largest grid accepted, in cells (rows × cols, or radials × gates for
    /// polar volumes). Every decoder checks the *declared* shape against it
    /// before allocating or inflating anything and fails with
    /// [`DecodeError::TooLarge`]. Default [`DEFAULT_MAX_CELLS`]; values
    /// above [`crate::scan::MAX_CELLS`] are capped to it.
    pub max_cells: u64,
    /// NEXRAD: the sweep to grid and the site of volumes that carry no
    /// location. (The grid is the default 1 km / 250 km one; services that
    /// want another grid or a cached mapping call [`nexrad::decode_with`].)
    /// Its own `max_cells`, when unset, is the one above.
    pub nexrad: nexrad::NexradOptions,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            max_cells: DEFAULT_MAX_CELLS,
            nexrad: nexrad::NexradOptions::default(),
        }
    }
}

/// Decodes `bytes`, auto-detecting the format unless `format` forces one.
pub fn decode(
    bytes: &[u8],
    file_name: Option<&str>,
    format: Option<Format>,
) -> Result<RadarScan, DecodeError> {
    decode_with_options(bytes, file_name, format, &DecodeOptions::default())
}

/// [`decode`] with per-format options.
pub fn decode_with_options(
    bytes: &[u8],
    file_name: Option<&str>,
    format: Option<Format>,
    options: &DecodeOptions,
) -> Result<RadarScan, DecodeError> {
    let format = match format {
        Some(f) => f,
        None => detect(bytes, file_name).ok_or_else(|| DecodeError::UnknownContent {
            head: hex_head(bytes),
        })?,
    };
    let max_cells = options.max_cells;
    match format {
        Format::Odim => odim::decode_limited(bytes, file_name, max_cells),
        Format::Bom => bom::decode_limited(bytes, file_name, max_cells),
        Format::MchGif => mch_gif::decode_limited(bytes, file_name, max_cells),
        Format::FmiPgm => fmi_pgm::decode_limited(bytes, file_name, max_cells),
        Format::Nexrad => {
            let nexrad = nexrad::NexradOptions {
                max_cells: options.nexrad.max_cells.or(Some(max_cells)),
                ..options.nexrad.clone()
            };
            nexrad::decode_with(
                bytes,
                file_name,
                &nexrad,
                &mut crate::polar::PolarGridder::default(),
            )
        }
    }
}

/// The first bytes as printable text for error messages (`"GIF89a.."`, `"1f 8b 08"`).
pub(crate) fn hex_head(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(8)];
    if head.is_empty() {
        return "an empty file".into();
    }
    head.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Test helper: reports missing real data. A skip with a printed reason
/// outside CI; under CI (`CI` set, not `0`/`false`) a test that cannot run
/// is a failure, never a silent pass.
#[cfg(test)]
pub(crate) fn missing_shared_data(reason: &str) {
    let ci = std::env::var("CI")
        .is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"));
    if ci {
        panic!("{reason} (CI is set, so a test that cannot run fails)");
    }
    eprintln!("skipped: {reason}");
}

/// Test helper: every file below `../shared/data/<folder>` whose name
/// contains `needle`, sorted; `None` after printing the skip notice when the
/// shared data folder is absent.
#[cfg(test)]
pub(crate) fn shared_data_files(folder: &str, needle: &str) -> Option<Vec<std::path::PathBuf>> {
    // The run-time value (cargo sets it for the test): CI reuses one target
    // folder for clones at different paths without rebuilding.
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            std::path::PathBuf::from,
        )
        .join("../../shared/data");
    if !root.is_dir() {
        missing_shared_data("../shared/data not found");
        return None;
    }
    let mut out = Vec::new();
    let mut stack = vec![root.join(folder)];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.flatten().map(|e| e.path()) {
            if path.is_dir() {
                stack.push(path);
            } else if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().contains(needle))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_empty_content_are_errors() {
        let err = decode(b"hello world", None, None).unwrap_err();
        assert_eq!(err.code(), "unknown_content");
        assert!(err.to_string().contains("68 65 6c 6c"));
        let err = decode(b"", None, None).unwrap_err();
        assert!(err.to_string().contains("empty"));
    }
}
