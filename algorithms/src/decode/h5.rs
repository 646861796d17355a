//! Shared plumbing for the HDF5-based decoders (ODIM_H5, BOM netCDF4):
//! opening bytes with `hdf5-reader`, reading attributes by name, and mapping
//! reader errors onto [`DecodeError`].
//!
//! Nothing here parses HDF5 itself: the container is read by the pure-Rust
//! `hdf5-reader` crate (see docs/ARCHITECTURE.md for why).

use super::HDF5_MAGIC;
use crate::grid::MAX_GRID_SIDE;
use crate::scan::{check_cells, DecodeError, Format, MAX_CELLS};
use hdf5_reader::{Attribute, Datatype, Hdf5File};
use ndarray::Array2;

/// Checks the HDF5 signature and that the bytes reach the end-of-file
/// address declared by the superblock, so that a cut-off download is
/// reported as [`DecodeError::Truncated`] rather than as some inner
/// structure failing to parse.
pub(crate) fn check_signature_and_length(
    bytes: &[u8],
    format: Format,
    expected: &'static str,
) -> Result<(), DecodeError> {
    if bytes.len() < HDF5_MAGIC.len() {
        if HDF5_MAGIC.starts_with(bytes) {
            return Err(DecodeError::Truncated {
                format,
                what: "HDF5 signature",
                needed: HDF5_MAGIC.len(),
                available: bytes.len(),
            });
        }
        return Err(bad_magic(bytes, format, expected));
    }
    if !bytes.starts_with(HDF5_MAGIC) {
        return Err(bad_magic(bytes, format, expected));
    }
    let mut cursor = hdf5_reader::io::Cursor::new(bytes);
    let superblock = hdf5_reader::superblock::Superblock::parse(&mut cursor)
        .map_err(|e| map_err(format, "HDF5 superblock", bytes.len(), e))?;
    let end = superblock
        .base_address
        .saturating_add(superblock.eof_address);
    if end > bytes.len() as u64 {
        return Err(DecodeError::Truncated {
            format,
            what: "HDF5 file (superblock end-of-file address)",
            needed: usize::try_from(end).unwrap_or(usize::MAX),
            available: bytes.len(),
        });
    }
    Ok(())
}

fn bad_magic(bytes: &[u8], format: Format, expected: &'static str) -> DecodeError {
    DecodeError::BadMagic {
        format,
        expected,
        found: super::hex_head(bytes),
    }
}

/// Opens HDF5 bytes after [`check_signature_and_length`]. The reader keeps
/// its own copy of the bytes (a memcpy, small next to decompression).
pub(crate) fn open(bytes: &[u8], format: Format, max_cells: u64) -> Result<Hdf5File, DecodeError> {
    check_signature_and_length(bytes, format, "HDF5 signature 89 48 44 46 0d 0a 1a 0a")?;
    Hdf5File::from_bytes_with_options(bytes, open_options(max_cells))
        .map_err(|e| map_err(format, "HDF5 file", bytes.len(), e))
}

/// Deepest group nesting [`check_group_tree`] accepts (the root is depth 0).
/// A radar product nests a few levels at most; the bound keeps a reader
/// that recurses once per level (netcdf-reader's model builder) far from
/// the end of a 2 MiB thread stack.
pub(crate) const MAX_GROUP_DEPTH: usize = 16;
/// Most groups [`check_group_tree`] accepts in one file.
pub(crate) const MAX_GROUPS: usize = 1024;

/// Walks the group tree of an opened file without recursion and rejects it
/// unless it is a tree of at most [`MAX_GROUPS`] groups nested at most
/// [`MAX_GROUP_DEPTH`] deep: a group that is reached twice (a hard or soft
/// link back to an ancestor, or one group linked under two names) is a
/// [`DecodeError::Container`] naming its path.
///
/// `netcdf-reader` builds its model by recursing into every child group
/// with no cycle check, so a file whose group links back to itself would
/// overflow the stack: an abort, which no `catch_unwind` can turn into an
/// error. This check runs first, so the reader only ever sees a finite,
/// shallow tree.
pub(crate) fn check_group_tree(file: &Hdf5File, format: Format) -> Result<(), DecodeError> {
    let len = file_len(file);
    let layer = "HDF5 group tree";
    let root = file
        .root_group()
        .map_err(|e| map_err(format, layer, len, e))?;
    let mut seen = std::collections::HashSet::from([root.address()]);
    let mut stack = vec![(root, String::from("/"), 0usize)];
    let bad = |reason: String| DecodeError::Container {
        format,
        layer,
        reason,
    };
    while let Some((group, path, depth)) = stack.pop() {
        let children = group.groups().map_err(|e| map_err(format, layer, len, e))?;
        for child in children {
            let name = child.name().rsplit('/').next().unwrap_or_default();
            let child_path = format!("{}{name}/", path);
            if !seen.insert(child.address()) {
                return Err(bad(format!(
                    "group {child_path} (object header at byte {}) was already reached \
                     by another path (a link cycle or a shared group); netCDF groups \
                     form a tree",
                    child.address()
                )));
            }
            if depth + 1 > MAX_GROUP_DEPTH {
                return Err(bad(format!(
                    "group {child_path} is nested deeper than {MAX_GROUP_DEPTH} levels"
                )));
            }
            if seen.len() > MAX_GROUPS {
                return Err(bad(format!("more than {MAX_GROUPS} groups")));
            }
            stack.push((child, child_path, depth + 1));
        }
    }
    Ok(())
}

/// Reader options for decoding one scan: no chunk cache (every chunk is
/// decoded exactly once, straight into the output, and caching would keep
/// them all alive), and read limits that match `max_cells`.
pub(crate) fn open_options(max_cells: u64) -> hdf5_reader::OpenOptions {
    let max_read_bytes =
        usize::try_from(max_cells.min(MAX_CELLS).saturating_mul(8)).unwrap_or(usize::MAX);
    hdf5_reader::OpenOptions {
        chunk_cache_bytes: 0,
        // One chunk may not exceed 256 MiB decoded (the crate's default),
        // nor the whole of `max_cells` f64 values.
        max_chunk_bytes: hdf5_reader::DEFAULT_MAX_CHUNK_BYTES.min(max_read_bytes),
        // `max_cells` values of f64.
        max_read_bytes,
        ..Default::default()
    }
}

/// Size in bytes of the opened file (for error messages).
pub(crate) fn file_len(file: &Hdf5File) -> usize {
    usize::try_from(file.storage().len()).unwrap_or(usize::MAX)
}

/// Maps an `hdf5-reader` error: reads past the end of the file become
/// [`DecodeError::Truncated`], everything else a
/// [`DecodeError::Container`] naming `layer`.
pub(crate) fn map_err(
    format: Format,
    layer: &'static str,
    len: usize,
    err: hdf5_reader::error::Error,
) -> DecodeError {
    use hdf5_reader::error::Error as E;
    let mut root = &err;
    while let E::Context { source, .. } = root {
        root = source;
    }
    match root {
        // Only a read past the end of the whole file is a truncation; a read
        // past the end of an inner structure is corruption (Container).
        E::UnexpectedEof { offset, needed, .. } if offset.saturating_add(*needed) > len as u64 => {
            DecodeError::Truncated {
                format,
                what: layer,
                needed: usize::try_from(offset.saturating_add(*needed)).unwrap_or(usize::MAX),
                available: len,
            }
        }
        E::OffsetOutOfBounds(offset) if *offset >= len as u64 => DecodeError::Truncated {
            format,
            what: layer,
            needed: usize::try_from(offset.saturating_add(1)).unwrap_or(usize::MAX),
            available: len,
        },
        _ => DecodeError::Container {
            format,
            layer,
            reason: err.to_string(),
        },
    }
}

/// Rejects a declared shape that is empty, above `max_cells` cells
/// ([`DecodeError::TooLarge`]) or above [`MAX_GRID_SIDE`] per side, before
/// anything is allocated for it.
pub(crate) fn check_shape(
    format: Format,
    rows: u64,
    cols: u64,
    what: &str,
    max_cells: u64,
) -> Result<(), DecodeError> {
    check_cells(format, what, rows, cols, max_cells.min(MAX_CELLS))?;
    for (side, v) in [("rows", rows), ("cols", cols)] {
        if v == 0 || v > MAX_GRID_SIDE as u64 {
            return Err(DecodeError::AbsurdSize {
                format,
                field: format!("{what} {side}"),
                value: v,
                limit: MAX_GRID_SIDE as u64,
            });
        }
    }
    Ok(())
}

/// The converted values as a `(rows, cols)` field.
pub(crate) fn into_array(
    format: Format,
    field: &str,
    rows: usize,
    cols: usize,
    values: Vec<f32>,
) -> Result<Array2<f32>, DecodeError> {
    Array2::from_shape_vec((rows, cols), values).map_err(|e| DecodeError::Shape {
        format,
        field: field.into(),
        expected: format!("{rows}x{cols}"),
        found: e.to_string(),
    })
}

/// True when the error only says that a group, dataset or attribute is absent.
pub(crate) fn is_not_found(err: &hdf5_reader::error::Error) -> bool {
    use hdf5_reader::error::Error as E;
    let mut root = err;
    while let E::Context { source, .. } = root {
        root = source;
    }
    matches!(
        root,
        E::GroupNotFound(_) | E::DatasetNotFound(_) | E::AttributeNotFound(_)
    )
}

/// The attributes of one group or dataset, read once and looked up by name.
pub(crate) struct Attrs {
    /// Path of the owner, for error messages (`/dataset1/what`).
    pub path: String,
    list: Vec<Attribute>,
}

impl Attrs {
    /// Attributes of the group at `path`; an absent group gives an empty set.
    pub fn of_group(file: &Hdf5File, path: &str, format: Format) -> Result<Self, DecodeError> {
        let len = file_len(file);
        let list = match file.group(path) {
            Ok(group) => group
                .attributes()
                .map_err(|e| map_err(format, "HDF5 attributes", len, e))?,
            Err(e) if is_not_found(&e) => Vec::new(),
            Err(e) => return Err(map_err(format, "HDF5 group", len, e)),
        };
        Ok(Self {
            path: path.to_string(),
            list,
        })
    }

    fn get(&self, name: &str) -> Option<&Attribute> {
        self.list.iter().find(|a| a.name == name)
    }

    /// The attribute as text (fixed or variable-length string), trimmed of
    /// NULs and blanks. `Ok(None)` when absent; an error when present but
    /// not text.
    pub fn string(&self, name: &str, format: Format) -> Result<Option<String>, DecodeError> {
        let Some(attr) = self.get(name) else {
            return Ok(None);
        };
        attr_string(attr)
            .map(Some)
            .ok_or_else(|| DecodeError::BadValue {
                format,
                field: format!("{}/{}", self.path, name),
                value: format!("{:?}", attr.datatype),
                reason: "expected a string attribute".into(),
            })
    }

    /// The attribute as a number (any integer or float type, or a string
    /// holding a number, as a few producers write). `Ok(None)` when absent.
    pub fn f64(&self, name: &str, format: Format) -> Result<Option<f64>, DecodeError> {
        let Some(attr) = self.get(name) else {
            return Ok(None);
        };
        if let Ok(v) = attr.read_as_f64() {
            return Ok(Some(v));
        }
        if let Some(s) = attr_string(attr) {
            if let Ok(v) = s.trim().parse::<f64>() {
                return Ok(Some(v));
            }
        }
        Err(DecodeError::BadValue {
            format,
            field: format!("{}/{}", self.path, name),
            value: format!("{:?}", attr.datatype),
            reason: "expected a numeric attribute".into(),
        })
    }
}

fn attr_string(attr: &Attribute) -> Option<String> {
    if let Some(first) = attr.decoded_strings.as_ref().and_then(|v| v.first()) {
        return Some(clean(first));
    }
    match &attr.datatype {
        Datatype::String { .. } | Datatype::VarLen { .. } => {
            attr.read_string().ok().map(|s| clean(&s))
        }
        _ => None,
    }
}

fn clean(s: &str) -> String {
    s.trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .to_string()
}

/// A numeric storage type of raw radar values (HDF5 / netCDF).
pub(crate) trait Raw: hdf5_reader::H5Type + Copy + PartialEq {
    /// Size in bytes.
    const SIZE: usize;
    fn to_f64(self) -> f64;
    /// `v` in this type when it is exactly representable (for comparing
    /// with `nodata`/`undetect`); `None` means no raw value can match.
    fn exact(v: f64) -> Option<Self>;
    /// Decodes one value from exactly `SIZE` bytes.
    fn decode_raw(b: &[u8], big_endian: bool) -> Self;
}

macro_rules! raw_type {
    ($t:ty, $size:literal, $exact:expr) => {
        impl Raw for $t {
            const SIZE: usize = $size;
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn exact(v: f64) -> Option<Self> {
                #[allow(clippy::redundant_closure_call)]
                ($exact)(v)
            }
            fn decode_raw(b: &[u8], big_endian: bool) -> Self {
                let mut a = [0u8; $size];
                a.copy_from_slice(&b[..$size]);
                if big_endian {
                    <$t>::from_be_bytes(a)
                } else {
                    <$t>::from_le_bytes(a)
                }
            }
        }
    };
}

macro_rules! raw_int {
    ($($t:ty: $size:literal),*) => {$(
        raw_type!($t, $size, |v: f64| (v.fract() == 0.0
            && v >= <$t>::MIN as f64
            && v <= <$t>::MAX as f64)
            .then(|| v as $t));
    )*};
}
raw_int!(u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, u64: 8, i64: 8);
raw_type!(f32, 4, |v: f64| (!v.is_nan()).then_some(v as f32));
raw_type!(f64, 8, |v: f64| (!v.is_nan()).then_some(v));

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use hdf5_writer::{AttributeBuilder, Hdf5Builder};

    /// An HDF5 file whose groups nest `depth` levels below the root
    /// (`/g1/g2/...`), each level created by an attribute on the innermost.
    fn nested(depth: usize) -> Vec<u8> {
        let path: Vec<String> = (1..=depth).map(|k| format!("g{k}")).collect();
        let b = Hdf5Builder::new()
            .group_attribute(path.join("/"), AttributeBuilder::fixed_string("a", "b"));
        crate::encode::odim::finish(b).unwrap()
    }

    #[test]
    fn a_group_tree_deeper_than_the_bound_is_an_error_naming_the_group() {
        let ok = nested(MAX_GROUP_DEPTH);
        check_group_tree(&open(&ok, Format::Bom, 1_000).unwrap(), Format::Bom).unwrap();
        let deep = nested(MAX_GROUP_DEPTH + 1);
        let err =
            check_group_tree(&open(&deep, Format::Bom, 1_000).unwrap(), Format::Bom).unwrap_err();
        assert_eq!(err.code(), "container");
        assert!(
            err.to_string()
                .contains(&format!("/g{}/ is nested deeper than", MAX_GROUP_DEPTH + 1)),
            "{err}"
        );
    }
}
