//! Decoder module (work in progress in this commit).

use crate::scan::{DecodeError, Format, RadarScan};

/// True when the bytes look like this format.
pub fn looks_like(_bytes: &[u8], _file_name: Option<&str>) -> bool {
    false
}

/// Decodes one file.
pub fn decode(_bytes: &[u8], _file_name: Option<&str>) -> Result<RadarScan, DecodeError> {
    Err(DecodeError::Unsupported {
        format: Format::Odim,
        what: "not implemented yet".into(),
    })
}
