//! NOAA NEXRAD Level II (Archive II) volumes: one reflectivity sweep, gridded.
//!
//! # What is read
//! * The **Archive II volume**: a 24-byte volume header (`AR2V00xx.` or, in
//!   legacy files, `ARCHIVE2.`; date, time, ICAO) and then either
//!   * LDM records, each a 4-byte size and usually a **bzip2 stream** of
//!     messages (every file in the public archive since 2008), or
//!   * legacy uncompressed 2 432-byte frames of **message 1** (pre-2008).
//! * The whole file may itself be **bzip2**- or **gzip**-compressed (older
//!   archive objects end in `.bz2`/`.gz`); it is unwrapped first.
//! * Radials come from **message 31** (digital radar data, generic format:
//!   the `REF` moment block, 8- or 16-bit words with the block's own scale
//!   and offset) or legacy **message 1** (surveillance reflectivity, 8-bit,
//!   `dBZ = (raw − 66) / 2`). Raw 0 ("below threshold") is undetect
//!   (`-inf` dBZ), raw 1 ("range folded") is no data (NaN).
//!
//! # Which sweep
//! [`ElevationChoice::Lowest`] (default): the lowest elevation cut with
//! reflectivity. When the volume carries its coverage pattern (message 5,
//! every message-31 volume), the cut is picked from it and decoding **stops
//! as soon as that sweep is complete**: the records after it are never
//! decompressed, which is what keeps a full modern volume within the time
//! budget (the lowest cut is in the first few of ~100 records). Without
//! message 5 (legacy volumes) every sweep is read and the lowest mean
//! elevation wins; cuts within 0.2° of each other count as one angle and
//! the first is kept (a split cut's surveillance scan comes before its
//! Doppler scan). [`ElevationChoice::Number`] and
//! [`ElevationChoice::NearestAngle`] pick another cut. A partial sweep (a
//! volume cut short at a record boundary, such as the 120-radial test
//! excerpt) is gridded as far as it goes; azimuths it does not cover are no
//! data. Consequently corruption in records *after* the selected sweep is
//! not detected: the record framing of the whole file is still checked.
//!
//! # Where the radar is
//! In order: the message-31 volume data block (latitude, longitude, site
//! height + tower height); the ICAO of the volume header; the ICAO leading
//! the file name (`KATX20130717_195021_V06`); [`NexradOptions::site`]. The
//! last three are looked up in `nexrad-model`'s static site registry.
//! Legacy message-1 volumes carry no location at all, and some legacy
//! headers no ICAO either (the KLOT 2003 test volume): those need the site
//! from the name or the options (`raincast prep --site KLOT`). The registry
//! lists operational sites only; a legacy volume of a retired one (KLIX,
//! moved to KHDC in 2023) is placed by [`NexradOptions::location`], tried
//! last (`raincast prep --site-location LAT,LON`, a radar's `location` in
//! the service).
//!
//! # Messages that are skipped
//! A pre-ORDA RDA (volumes before 2006) numbered the segments of its clutter
//! maps (messages 13 and 15) as one run across two messages (KLIX
//! 2005-08-28: segments 1–14 "of 14", then 15–62 "of 62"); `nexrad-decode`
//! rightly calls that out of sequence. Such a message is skipped when it is
//! not radar data (messages 1 and 31); out-of-sequence radar data still
//! fails the volume.
//!
//! # Time
//! The volume header's date and time (the volume start, also in the object
//! key); the selected sweep's first radial when the header has none.
//!
//! # Output
//! [`decode`] grids the sweep with [`crate::polar`] (default: 1 km cells out
//! to 250 km, 5 dBZ minimum, isolated gates removed) into a
//! [`Quantity::Reflectivity`] scan (dBZ; `-inf` undetect, NaN no data) with
//! `zr_hint` = NEXRAD's convective Z = 300·R^1.4. Services that decode one
//! radar repeatedly call [`decode_with`] with a [`PolarGridder`] they keep,
//! so the polar → grid mapping is computed once per site and geometry.
//!
//! # Crates, and why
//! Message decoding is `nexrad-decode` 1.0 (ICD 2620002, messages 1, 5 and
//! 31 among others; forbids unsafe code, denies `unwrap`/`expect`, fuzzed
//! upstream), the volume header and LDM record framing come from
//! `nexrad-data` 1.0 with default features off (no AWS client, no reqwest,
//! no tokio: Raincast has its own S3 layer), and the site registry from
//! `nexrad-model` (no features). Decompression is done here rather than by
//! `nexrad-data`: its `Record::decompress` and gzip unwrapping read to the
//! end with no size limit (a few KB of crafted bzip2 can expand to GBs), it
//! does not unwrap whole-file bzip2, and its `File::scan` converts every
//! moment of every sweep (~100 MB for a modern volume) when one sweep of one
//! moment is needed. `bzip2` 0.6 uses the pure-Rust `libbz2-rs-sys` backend
//! (no C library). Every output is size-limited ([`MAX_VOLUME_BYTES`],
//! [`MAX_RECORD_BYTES`]).

use crate::decode::hex_head;
use crate::polar::{PolarGridder, PolarOptions, RadarSite, Sweep};
use crate::scan::{
    check_cells, DecodeError, Format, Quantity, RadarScan, DEFAULT_MAX_CELLS, MAX_CELLS, ZR,
};
use chrono::{DateTime, Datelike, Utc};
use ndarray::Array2;
use nexrad_data::volume::{File as VolumeFile, Header};
use nexrad_decode::messages::{
    digital_radar_data, digital_radar_data_legacy, MessageContents, MessageType,
};
use serde::{Deserialize, Serialize};
use std::io::Read;

const FORMAT: Format = Format::Nexrad;

/// Largest decompressed size of a whole-file gzip/bzip2 volume (a legacy
/// message-1 volume is ~6–20 MB, a gzip-wrapped modern one ~10–40 MB).
pub const MAX_VOLUME_BYTES: u64 = 128 * 1024 * 1024;
/// Largest decompressed size of one LDM record (a record holds ~120
/// radials of every moment, ~1–2 MB).
pub const MAX_RECORD_BYTES: u64 = 16 * 1024 * 1024;
/// Largest number of radials accepted in one sweep (a super-resolution cut
/// has 720).
pub const MAX_RADIALS_PER_SWEEP: usize = 4_000;
/// Elevation angles closer than this (degrees) count as the same cut.
const SAME_ANGLE_DEG: f32 = 0.2;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const BZIP2_MAGIC: &[u8] = b"BZh";

/// Which elevation cut of the volume to grid.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ElevationChoice {
    /// The lowest cut with reflectivity (see the module docs).
    #[default]
    Lowest,
    /// The cut with this elevation number (1 = first of the volume).
    Number(u8),
    /// The cut whose elevation angle (degrees) is nearest.
    NearestAngle(f32),
}

/// Options of the NEXRAD reader (the gridding has its own,
/// [`PolarOptions`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NexradOptions {
    /// The cut to grid. Default: the lowest.
    pub elevation: ElevationChoice,
    /// ICAO of the radar, used only when the volume itself says nothing
    /// about its location (legacy message-1 volumes without an ICAO in the
    /// header or the file name).
    pub site: Option<String>,
    /// Where the radar stands, used last of all: when neither the volume
    /// nor the site registry knows (a legacy volume of a retired site, such
    /// as KLIX before its move to KHDC in 2023: `nexrad-model`'s registry
    /// lists operational sites only). The service passes the radar's
    /// configured `location` here.
    #[serde(default)]
    pub location: Option<SiteLocation>,
    /// Largest sweep accepted, in radials × gates; `None` =
    /// [`DEFAULT_MAX_CELLS`]. A sweep growing past it is rejected with
    /// [`DecodeError::TooLarge`] before its polar array is built.
    #[serde(default)]
    pub max_cells: Option<u64>,
}

/// A radar position given by the caller ([`NexradOptions::location`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SiteLocation {
    /// WGS84 latitude, degrees north, −90 to 90.
    pub lat_deg: f64,
    /// WGS84 longitude, degrees east, −180 to 180.
    pub lon_deg: f64,
    /// Antenna height above mean sea level, metres (only used for beam
    /// heights; 0 when unknown costs well under 1 % of ground range).
    pub height_m: f64,
}

impl SiteLocation {
    /// The location as a site named `id`, or an error naming the field
    /// that is out of range.
    fn site(&self, id: &str) -> Result<RadarSite, DecodeError> {
        let check = |field: &str, v: f64, lo: f64, hi: f64| {
            if v.is_finite() && (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(bad(
                    format!("site location {field}"),
                    v,
                    format!("must be a number from {lo} to {hi}"),
                ))
            }
        };
        check("latitude", self.lat_deg, -90.0, 90.0)?;
        check("longitude", self.lon_deg, -180.0, 180.0)?;
        check("height", self.height_m, -500.0, 9000.0)?;
        Ok(RadarSite {
            id: id.to_string(),
            lat_deg: self.lat_deg,
            lon_deg: self.lon_deg,
            height_m: self.height_m,
        })
    }
}

/// Where the site location came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteSource {
    /// The message-31 volume data block.
    VolumeDataBlock,
    /// The volume header's ICAO, through the site registry.
    HeaderIcao,
    /// The ICAO leading the file name, through the site registry.
    FileName,
    /// [`NexradOptions::site`], through the site registry.
    Options,
    /// [`NexradOptions::location`].
    Location,
}

/// One sweep read from a volume, before gridding.
#[derive(Debug, Clone)]
pub struct VolumeSweep {
    /// The selected sweep (dBZ, polar).
    pub sweep: Sweep,
    /// Volume start time (UTC).
    pub volume_time: DateTime<Utc>,
    /// Volume coverage pattern number, when the volume names one.
    pub vcp: Option<u16>,
    /// Where the site location came from.
    pub site_source: SiteSource,
    /// LDM records decompressed / present (legacy volumes: 1 / 1).
    pub records_read: usize,
    /// LDM records in the file.
    pub records_total: usize,
}

/// True when `bytes` look like an Archive II volume: the volume header
/// magic, possibly inside gzip, or any bzip2 stream (Raincast reads no
/// other bzip2 format; [`decode`] checks the content).
pub fn looks_like(bytes: &[u8], _file_name: Option<&str>) -> bool {
    if is_volume_header(bytes) || bytes.starts_with(BZIP2_MAGIC) {
        return true;
    }
    if bytes.starts_with(GZIP_MAGIC) {
        let mut head = Vec::with_capacity(8);
        let mut dec = flate2::read::MultiGzDecoder::new(bytes).take(8);
        return dec.read_to_end(&mut head).is_ok() && is_volume_header(&head);
    }
    false
}

fn is_volume_header(bytes: &[u8]) -> bool {
    bytes.starts_with(b"AR2V") || bytes.starts_with(b"ARCHIVE2")
}

/// Decodes a volume and grids its lowest reflectivity sweep with the
/// default geometry (1 km cells to 250 km). See [`decode_with`] to choose
/// the sweep and the grid, and to reuse the mapping across volumes.
pub fn decode(bytes: &[u8], file_name: Option<&str>) -> Result<RadarScan, DecodeError> {
    let mut gridder = PolarGridder::new(PolarOptions::default());
    decode_with(bytes, file_name, &NexradOptions::default(), &mut gridder)
}

/// Decodes a volume and grids the selected sweep with `gridder` (which keeps
/// the polar → grid mappings between calls).
pub fn decode_with(
    bytes: &[u8],
    file_name: Option<&str>,
    options: &NexradOptions,
    gridder: &mut PolarGridder,
) -> Result<RadarScan, DecodeError> {
    let volume = read_sweep(bytes, file_name, options)?;
    let gridded = gridder
        .grid(&volume.sweep)
        .map_err(|e| super::polar_error(FORMAT, None, e))?;
    Ok(RadarScan {
        format: FORMAT,
        source: format!("NEXRAD {}", volume.sweep.site.id),
        time: volume.volume_time,
        quantity: Quantity::Reflectivity,
        grid: gridded.grid,
        values: gridded.dbz,
        zr_hint: Some(ZR::NEXRAD_CONVECTIVE),
    })
}

fn bad(field: impl Into<String>, value: impl ToString, reason: impl Into<String>) -> DecodeError {
    DecodeError::BadValue {
        format: FORMAT,
        field: field.into(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Reads the selected reflectivity sweep of a volume (no gridding).
pub fn read_sweep(
    bytes: &[u8],
    file_name: Option<&str>,
    options: &NexradOptions,
) -> Result<VolumeSweep, DecodeError> {
    let data = unwrap_container(bytes)?;
    if data.len() < Header::SIZE {
        return Err(DecodeError::Truncated {
            format: FORMAT,
            what: "Archive II volume header",
            needed: Header::SIZE,
            available: data.len(),
        });
    }
    if !is_volume_header(&data) {
        return Err(DecodeError::BadMagic {
            format: FORMAT,
            expected: "an Archive II volume header (AR2V00xx. or ARCHIVE2.)",
            found: hex_head(&data),
        });
    }
    let file = VolumeFile::new(data);
    let header = file.header().ok_or(DecodeError::Truncated {
        format: FORMAT,
        what: "Archive II volume header",
        needed: Header::SIZE,
        available: file.data().len(),
    })?;
    let records = file.records().map_err(data_error)?;
    let records_total = records.len();
    let max_cells = options
        .max_cells
        .unwrap_or(DEFAULT_MAX_CELLS)
        .min(MAX_CELLS);
    let mut collector = Collector::new(options.elevation, max_cells);
    let mut records_read = 0;
    for (index, record) in records.iter().enumerate() {
        let decompressed;
        let messages: &[u8] = if record.compressed() {
            let stream = record.data().get(4..).unwrap_or_default();
            decompressed = read_limited(
                bzip2::read::BzDecoder::new(stream),
                MAX_RECORD_BYTES,
                "bzip2 LDM record",
            )
            .map_err(|e| e.in_record(index))?;
            &decompressed
        } else {
            record.data()
        };
        records_read += 1;
        visit_messages(messages, index, |contents| {
            collector.visit(contents)?;
            Ok(collector.done)
        })?;
        if collector.done {
            break;
        }
    }
    collector.finish(&header, file_name, options, records_read, records_total)
}

/// The size of a fixed message frame (every message type but 31): a 12-byte
/// channel terminal manager header, the 16-byte message header and its
/// payload, padded.
const FRAME_BYTES: usize = 2432;

/// Decodes the messages of one record in order and hands each to `visit`,
/// until `visit` says it is done (`Ok(true)`) or the record ends.
///
/// A pre-ORDA RDA (legacy volumes, before 2006) numbered the segments of its
/// clutter maps (messages 13 and 15) as one run across what their headers
/// declare as two messages: 14 segments, then segments 15 to 62 "of 62" (seen
/// in KLIX 2005-08-28, Katrina). `nexrad-decode` refuses such a run as out of
/// sequence. Those maps are nothing the rain field needs, so a segmented
/// message other than the radar data (messages 1 and 31) whose segments are
/// out of sequence is skipped: from the frame that broke the sequence when it
/// is not the message's first (it may start the next message), else one
/// frame on. Out-of-sequence radar data, and every other error, still fails
/// the volume.
fn visit_messages(
    messages: &[u8],
    record: usize,
    mut visit: impl FnMut(&MessageContents<'_>) -> Result<bool, DecodeError>,
) -> Result<(), DecodeError> {
    let mut start = 0;
    'resume: while start < messages.len() {
        let rest = &messages[start..];
        let mut iter = nexrad_decode::iter_messages(rest);
        while let Some(message) = iter.next() {
            match message {
                Ok(message) => {
                    if visit(message.contents())? {
                        return Ok(());
                    }
                }
                Err(nexrad_decode::Error::SegmentOutOfSequence {
                    message_type,
                    offset,
                    ..
                }) if !matches!(
                    message_type,
                    MessageType::DigitalRadarData | MessageType::DigitalRadarDataLegacy
                ) =>
                {
                    let failed_at = iter.offset();
                    start += if offset > failed_at {
                        offset
                    } else {
                        offset.saturating_add(FRAME_BYTES)
                    };
                    continue 'resume;
                }
                Err(e) => return Err(message_error(e, record, messages.len())),
            }
        }
        break;
    }
    Ok(())
}

/// A decompression failure, before it is placed in a record.
struct Unwrap {
    layer: &'static str,
    error: DecodeError,
}

impl Unwrap {
    fn in_record(self, index: usize) -> DecodeError {
        match self.error {
            DecodeError::Container { reason, .. } => DecodeError::Container {
                format: FORMAT,
                layer: self.layer,
                reason: format!("record {index}: {reason}"),
            },
            DecodeError::AbsurdSize { value, limit, .. } => DecodeError::AbsurdSize {
                format: FORMAT,
                field: format!("decompressed size of LDM record {index}"),
                value,
                limit,
            },
            other => other,
        }
    }
}

/// Reads at most `limit` bytes from a decompressor; more is an error.
fn read_limited(reader: impl Read, limit: u64, layer: &'static str) -> Result<Vec<u8>, Unwrap> {
    let mut out = Vec::new();
    reader
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| Unwrap {
            layer,
            error: DecodeError::Container {
                format: FORMAT,
                layer,
                reason: if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    "compressed stream ends before its end marker (truncated)".into()
                } else {
                    e.to_string()
                },
            },
        })?;
    if out.len() as u64 > limit {
        return Err(Unwrap {
            layer,
            error: DecodeError::AbsurdSize {
                format: FORMAT,
                field: format!("{layer} decompressed size"),
                value: out.len() as u64,
                limit,
            },
        });
    }
    Ok(out)
}

/// The volume bytes with any whole-file gzip or bzip2 wrapping removed.
fn unwrap_container(bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let unwrapped = if bytes.starts_with(GZIP_MAGIC) {
        read_limited(
            flate2::read::MultiGzDecoder::new(bytes),
            MAX_VOLUME_BYTES,
            "gzip volume",
        )
    } else if bytes.starts_with(BZIP2_MAGIC) {
        read_limited(
            bzip2::read::MultiBzDecoder::new(bytes),
            MAX_VOLUME_BYTES,
            "bzip2 volume",
        )
    } else {
        return Ok(bytes.to_vec());
    };
    unwrapped.map_err(|u| u.error)
}

fn data_error(e: nexrad_data::Error) -> DecodeError {
    match e {
        nexrad_data::Error::TruncatedRecord {
            expected, actual, ..
        } => DecodeError::Truncated {
            format: FORMAT,
            what: "LDM record",
            // nexrad-data counts from the end of the volume header.
            needed: expected.saturating_add(Header::SIZE),
            available: actual.saturating_add(Header::SIZE),
        },
        nexrad_data::Error::InvalidRecordSize { size, offset, .. } => bad(
            format!(
                "LDM record size at byte {}",
                offset.saturating_add(Header::SIZE)
            ),
            size,
            "a record cannot be empty",
        ),
        other => DecodeError::Container {
            format: FORMAT,
            layer: "Archive II records",
            reason: other.to_string(),
        },
    }
}

fn message_error(e: nexrad_decode::Error, record: usize, record_len: usize) -> DecodeError {
    match e {
        nexrad_decode::Error::UnexpectedEof { offset, .. } => DecodeError::Truncated {
            format: FORMAT,
            what: "NEXRAD message",
            // At least one more byte than the record holds.
            needed: record_len.max(offset).saturating_add(1),
            available: record_len,
        },
        other => DecodeError::Container {
            format: FORMAT,
            layer: "NEXRAD messages",
            reason: format!("record {record}: {other}"),
        },
    }
}

/// The reflectivity gates of one radial.
struct Gates {
    first_gate_m: f64,
    gate_m: f64,
    dbz: Vec<f32>,
}

/// What the collector needs of a radial, from message 1 or 31.
struct RadialIn {
    elevation_number: u8,
    elevation_deg: f32,
    azimuth_deg: f32,
    /// ICD radial status: 2 = end of elevation, 4 = end of volume.
    status: u16,
    time: Option<DateTime<Utc>>,
    gates: Option<Gates>,
}

/// Decodes raw gate words: 0 below threshold (undetect), 1 range folded
/// (no data), else `(raw − offset) / scale` dBZ.
fn gate_dbz(raw: u16, scale: f32, offset: f32) -> f32 {
    match raw {
        0 => f32::NEG_INFINITY,
        1 => f32::NAN,
        _ => (f32::from(raw) - offset) / scale,
    }
}

fn radial_31(m: &digital_radar_data::Message<'_>) -> Result<RadialIn, DecodeError> {
    let h = m.header();
    let gates = match m.reflectivity_data_block() {
        None => None,
        Some(block) => {
            let block = block.inner();
            let bh = block.header();
            let count = usize::from(bh.data_moment_gate_count());
            let (scale, offset) = (bh.scale(), bh.offset());
            if !(scale.is_finite() && scale != 0.0 && offset.is_finite()) {
                return Err(bad(
                    "REF scale/offset",
                    format!("{scale}/{offset}"),
                    "must be finite with a non-zero scale",
                ));
            }
            let encoded = block.encoded_values();
            let dbz: Vec<f32> = match bh.data_word_size_raw() {
                8 => encoded
                    .get(..count)
                    .ok_or_else(|| short_block(count, encoded.len()))?
                    .iter()
                    .map(|&raw| gate_dbz(u16::from(raw), scale, offset))
                    .collect(),
                16 => encoded
                    .get(..count * 2)
                    .ok_or_else(|| short_block(count * 2, encoded.len()))?
                    .chunks_exact(2)
                    .map(|w| gate_dbz(u16::from_be_bytes([w[0], w[1]]), scale, offset))
                    .collect(),
                other => return Err(bad("REF data word size", other, "must be 8 or 16 bits")),
            };
            (count > 0).then(|| Gates {
                first_gate_m: f64::from(bh.data_moment_range_raw()),
                gate_m: f64::from(bh.data_moment_range_sample_interval_raw()),
                dbz,
            })
        }
    };
    Ok(RadialIn {
        elevation_number: h.elevation_number(),
        elevation_deg: h.elevation_angle_degrees(),
        azimuth_deg: h.azimuth_angle_degrees(),
        status: u16::from(h.radial_status_raw()),
        time: h.date_time(),
        gates,
    })
}

fn short_block(needed: usize, available: usize) -> DecodeError {
    DecodeError::Truncated {
        format: FORMAT,
        what: "REF moment block",
        needed,
        available,
    }
}

/// Message-1 reflectivity: 8 bits, `dBZ = (raw − 66) / 2`.
const LEGACY_SCALE: f32 = 2.0;
const LEGACY_OFFSET: f32 = 66.0;

fn radial_1(m: &digital_radar_data_legacy::Message<'_>) -> RadialIn {
    let count = usize::from(m.surveillance_gate_count());
    let gates = m.reflectivity_gates().and_then(|raw| {
        let raw = &raw[..count.min(raw.len())];
        (!raw.is_empty()).then(|| Gates {
            first_gate_m: f64::from(m.surveillance_first_gate_range_meters()),
            gate_m: f64::from(m.surveillance_gate_interval_meters()),
            dbz: raw
                .iter()
                .map(|&r| gate_dbz(u16::from(r), LEGACY_SCALE, LEGACY_OFFSET))
                .collect(),
        })
    });
    RadialIn {
        elevation_number: m.elevation_number(),
        elevation_deg: m.elevation_angle_degrees(),
        azimuth_deg: m.azimuth_angle_degrees(),
        status: m.radial_status_raw(),
        time: m.date_time(),
        gates,
    }
}

/// Radials of one elevation number, as they arrive.
struct SweepAcc {
    elevation_number: u8,
    /// The most gates of any radial so far.
    max_gates: usize,
    elevation_sum: f64,
    first_gate_m: f64,
    gate_m: f64,
    azimuth_deg: Vec<f32>,
    rows: Vec<Vec<f32>>,
    time: Option<DateTime<Utc>>,
}

impl SweepAcc {
    fn new(elevation_number: u8) -> Self {
        Self {
            elevation_number,
            max_gates: 0,
            elevation_sum: 0.0,
            first_gate_m: 0.0,
            gate_m: 0.0,
            azimuth_deg: Vec::new(),
            rows: Vec::new(),
            time: None,
        }
    }

    fn mean_elevation(&self) -> f32 {
        (self.elevation_sum / self.rows.len().max(1) as f64) as f32
    }

    /// Adds one radial; the sweep's polar array (radials × the most gates)
    /// may not exceed `max_cells`.
    fn push(&mut self, radial: RadialIn, gates: Gates, max_cells: u64) -> Result<(), DecodeError> {
        let max_gates = self.max_gates.max(gates.dbz.len());
        check_cells(
            FORMAT,
            &format!("radials x gates of elevation {}", self.elevation_number),
            self.rows.len() as u64 + 1,
            max_gates as u64,
            max_cells,
        )?;
        self.max_gates = max_gates;
        if self.rows.is_empty() {
            self.first_gate_m = gates.first_gate_m;
            self.gate_m = gates.gate_m;
        } else if (gates.first_gate_m - self.first_gate_m).abs() > 0.5
            || (gates.gate_m - self.gate_m).abs() > 0.5
        {
            return Err(bad(
                format!("REF gate geometry in elevation {}", self.elevation_number),
                format!(
                    "{} m + n × {} m (sweep: {} m + n × {} m)",
                    gates.first_gate_m, gates.gate_m, self.first_gate_m, self.gate_m
                ),
                "all radials of a sweep must share the first gate range and spacing",
            ));
        }
        if self.rows.len() >= MAX_RADIALS_PER_SWEEP {
            return Err(DecodeError::AbsurdSize {
                format: FORMAT,
                field: format!("radials in elevation {}", self.elevation_number),
                value: self.rows.len() as u64 + 1,
                limit: MAX_RADIALS_PER_SWEEP as u64,
            });
        }
        if !radial.azimuth_deg.is_finite() || !radial.elevation_deg.is_finite() {
            return Err(bad(
                "radial azimuth/elevation",
                format!("{}/{}", radial.azimuth_deg, radial.elevation_deg),
                "must be finite",
            ));
        }
        self.time = self.time.or(radial.time);
        self.elevation_sum += f64::from(radial.elevation_deg);
        self.azimuth_deg.push(radial.azimuth_deg.rem_euclid(360.0));
        self.rows.push(gates.dbz);
        Ok(())
    }

    #[allow(clippy::type_complexity)] // a one-use destructuring of the accumulator
    fn into_parts(
        self,
    ) -> (
        u8,
        f32,
        f64,
        f64,
        Vec<f32>,
        Array2<f32>,
        Option<DateTime<Utc>>,
    ) {
        let elevation = self.mean_elevation();
        let gates = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut dbz = Array2::from_elem((self.rows.len(), gates), f32::NAN);
        for (mut out, row) in dbz.rows_mut().into_iter().zip(&self.rows) {
            for (o, v) in out.iter_mut().zip(row) {
                *o = *v;
            }
        }
        (
            self.elevation_number,
            elevation,
            self.first_gate_m,
            self.gate_m,
            self.azimuth_deg,
            dbz,
            self.time,
        )
    }
}

/// Walks the messages, keeping the selected sweep.
struct Collector {
    choice: ElevationChoice,
    max_cells: u64,
    /// The elevation number to keep, once known.
    target: Option<u8>,
    seen_radial: bool,
    vcp: Option<u16>,
    site: Option<RadarSite>,
    current: Option<SweepAcc>,
    best: Option<SweepAcc>,
    done: bool,
}

impl Collector {
    fn new(choice: ElevationChoice, max_cells: u64) -> Self {
        Self {
            choice,
            max_cells,
            target: match choice {
                ElevationChoice::Number(n) => Some(n),
                _ => None,
            },
            seen_radial: false,
            vcp: None,
            site: None,
            current: None,
            best: None,
            done: false,
        }
    }

    fn visit(&mut self, contents: &MessageContents<'_>) -> Result<(), DecodeError> {
        match contents {
            MessageContents::RdaVolumeCoveragePattern(vcp) => {
                let angles: Vec<f32> = vcp
                    .elevations()
                    .iter()
                    .map(|e| e.elevation_angle_degrees())
                    .collect();
                let number = vcp.header().vcp_number_raw();
                if number != 0 {
                    self.vcp.get_or_insert(number);
                }
                if self.target.is_none() && !self.seen_radial {
                    self.target = pick_cut(&angles, self.choice);
                }
            }
            MessageContents::DigitalRadarData(m) => {
                if self.site.is_none() {
                    self.site = site_31(m);
                }
                if let Some(v) = m.volume_data_block() {
                    let number = v.inner().vcp_number_raw();
                    if number != 0 {
                        self.vcp.get_or_insert(number);
                    }
                }
                self.radial(radial_31(m)?)?;
            }
            MessageContents::DigitalRadarDataLegacy(m) => {
                let number = m.vcp_number_raw();
                if number != 0 {
                    self.vcp.get_or_insert(number);
                }
                self.radial(radial_1(m))?;
            }
            _ => {}
        }
        Ok(())
    }

    fn radial(&mut self, radial: RadialIn) -> Result<(), DecodeError> {
        self.seen_radial = true;
        if self
            .current
            .as_ref()
            .is_some_and(|c| c.elevation_number != radial.elevation_number)
        {
            self.close_current();
        }
        if self.done || self.target.is_some_and(|t| t != radial.elevation_number) {
            return Ok(());
        }
        let end_of_sweep = matches!(radial.status, 2 | 4);
        let elevation_number = radial.elevation_number;
        let mut radial = radial;
        if let Some(gates) = radial.gates.take() {
            self.current
                .get_or_insert_with(|| SweepAcc::new(elevation_number))
                .push(radial, gates, self.max_cells)?;
        }
        if end_of_sweep && self.current.is_some() {
            self.close_current();
        }
        Ok(())
    }

    /// Ends the sweep being collected: it becomes the result when it is the
    /// target, or replaces the best one so far when it scores better.
    fn close_current(&mut self) {
        let Some(current) = self.current.take() else {
            return;
        };
        if current.rows.is_empty() {
            return;
        }
        if self.target == Some(current.elevation_number) {
            self.best = Some(current);
            self.done = true;
            return;
        }
        let better = match &self.best {
            None => true,
            Some(best) => {
                let (c, b) = (current.mean_elevation(), best.mean_elevation());
                match self.choice {
                    ElevationChoice::Lowest => c < b - SAME_ANGLE_DEG,
                    ElevationChoice::NearestAngle(x) => {
                        (c - x).abs() < (b - x).abs() - SAME_ANGLE_DEG
                    }
                    ElevationChoice::Number(_) => false,
                }
            }
        };
        if better {
            self.best = Some(current);
        }
    }

    fn finish(
        mut self,
        header: &Header,
        file_name: Option<&str>,
        options: &NexradOptions,
        records_read: usize,
        records_total: usize,
    ) -> Result<VolumeSweep, DecodeError> {
        self.close_current();
        let Some(best) = self.best.take() else {
            return Err(DecodeError::Missing {
                format: FORMAT,
                path: match options.elevation {
                    ElevationChoice::Number(n) => {
                        format!("reflectivity radials in elevation {n}")
                    }
                    _ => "reflectivity radials (message 1 or 31 with REF)".into(),
                },
            });
        };
        let header_icao = header.icao_of_radar().filter(|id| is_icao(id));
        let file_icao = file_name.and_then(icao_of_file_name);
        let (site, site_source) = match self.site.take() {
            Some(site) => (site, SiteSource::VolumeDataBlock),
            None => registry_site(header_icao, SiteSource::HeaderIcao)
                .or_else(|| registry_site(file_icao, SiteSource::FileName))
                .or_else(|| registry_site(options.site.as_deref(), SiteSource::Options))
                .map(Ok)
                .or_else(|| {
                    // Named as the volume or the caller names it.
                    let id = header_icao
                        .or(file_icao)
                        .or(options.site.as_deref())
                        .unwrap_or("unknown");
                    options
                        .location
                        .map(|l| l.site(id).map(|s| (s, SiteSource::Location)))
                })
                .transpose()?
                .ok_or_else(|| match options.site.as_deref() {
                    Some(id) => bad(
                        "site",
                        id,
                        "not in the NEXRAD site registry (operational sites only); \
                         give the radar's location instead (prep: --site-location \
                         LAT,LON; the service: the radar's location)",
                    ),
                    None => DecodeError::Missing {
                        format: FORMAT,
                        path: "radar location: the volume has no message 31 and no ICAO of \
                               an operational site in its header or file name; give the site's \
                               ICAO (prep: --site KLOT) or its location (prep: \
                               --site-location LAT,LON; the service: the radar's \
                               location)"
                            .into(),
                    },
                })?,
        };
        let (elevation_number, elevation_deg, first_gate_m, gate_m, azimuth_deg, dbz, time) =
            best.into_parts();
        // Legacy headers may leave the date at 0 (1969-12-31): ignore it then.
        let header_time = header.date_time().filter(|t| t.year() >= 1988);
        let volume_time = header_time.or(time).ok_or_else(|| DecodeError::Missing {
            format: FORMAT,
            path: "volume time (header date and radial times)".into(),
        })?;
        let sweep = Sweep {
            site,
            elevation_number,
            elevation_deg,
            time: time.unwrap_or(volume_time),
            first_gate_m,
            gate_m,
            azimuth_deg,
            dbz,
        };
        Ok(VolumeSweep {
            sweep,
            volume_time,
            vcp: self.vcp,
            site_source,
            records_read,
            records_total,
        })
    }
}

/// The elevation number (1-based) of the cut `choice` selects from the
/// coverage pattern's angles; `None` without angles.
fn pick_cut(angles: &[f32], choice: ElevationChoice) -> Option<u8> {
    let key = |a: f32| match choice {
        ElevationChoice::Lowest => a,
        ElevationChoice::NearestAngle(x) => (a - x).abs(),
        ElevationChoice::Number(_) => 0.0,
    };
    let finite = angles.iter().copied().filter(|a| a.is_finite());
    let best = finite.map(key).fold(f32::INFINITY, f32::min);
    if !best.is_finite() {
        return None;
    }
    let index = angles
        .iter()
        .position(|&a| a.is_finite() && key(a) <= best + SAME_ANGLE_DEG)?;
    u8::try_from(index + 1).ok()
}

fn site_31(m: &digital_radar_data::Message<'_>) -> Option<RadarSite> {
    let v = m.volume_data_block()?;
    let v = v.inner();
    let (lat, lon) = (
        f64::from(v.latitude_degrees()),
        f64::from(v.longitude_degrees()),
    );
    let plausible = lat.is_finite()
        && lon.is_finite()
        && (-90.0..=90.0).contains(&lat)
        && (-180.0..=180.0).contains(&lon)
        && (lat.abs() > 1e-3 || lon.abs() > 1e-3);
    if !plausible {
        return None;
    }
    let id = m
        .header()
        .radar_identifier()
        .filter(|id| is_icao(id))
        .unwrap_or("????")
        .to_string();
    Some(RadarSite {
        id,
        lat_deg: lat,
        lon_deg: lon,
        height_m: f64::from(v.site_height_meters()) + f64::from(v.tower_height_meters()),
    })
}

fn is_icao(id: &str) -> bool {
    id.len() == 4 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The ICAO leading an archive file name such as
/// `KATX20130717_195021_V06` (a key path is fine: its last part is used).
pub fn icao_of_file_name(name: &str) -> Option<&str> {
    let base = name.rsplit(['/', '\\']).next()?;
    let b = base.as_bytes();
    let ok = b.len() >= 12
        && b[..4].iter().all(u8::is_ascii_uppercase)
        && b[4..12].iter().all(u8::is_ascii_digit);
    ok.then(|| &base[..4])
}

fn registry_site(id: Option<&str>, source: SiteSource) -> Option<(RadarSite, SiteSource)> {
    let id = id?.trim().to_ascii_uppercase();
    let entry = nexrad_model::meta::registry::site_by_id(&id)?;
    Some((
        RadarSite {
            id: entry.id.to_string(),
            lat_deg: entry.latitude,
            lon_deg: entry.longitude,
            height_m: f64::from(entry.site_elevation_meters),
        },
        source,
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::polar::{filter_gates, slant_range_m, GridSpec};
    use std::io::Write;

    fn sample(needle: &str) -> Option<Vec<u8>> {
        let files = crate::decode::shared_data_files("nexrad", needle)?;
        let Some(path) = files.first() else {
            crate::decode::missing_shared_data(&format!(
                "no ../shared/data/nexrad file matching {needle}"
            ));
            return None;
        };
        std::fs::read(path).ok()
    }

    fn klot() -> NexradOptions {
        NexradOptions {
            site: Some("KLOT".into()),
            ..NexradOptions::default()
        }
    }

    fn bzip2(data: &[u8]) -> Vec<u8> {
        let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        enc.write_all(data).expect("compress");
        enc.finish().expect("compress")
    }

    fn bunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        bzip2::read::MultiBzDecoder::new(data)
            .read_to_end(&mut out)
            .expect("bunzip");
        out
    }

    // ---- synthetic Archive II volumes --------------------------------

    /// One synthetic message-31 radial: a VOL block (site) and a REF block.
    struct Radial31 {
        elevation_number: u8,
        elevation_deg: f32,
        azimuth_deg: f32,
        status: u8,
        /// Raw REF gate words.
        gates: Vec<u16>,
        word_bits: u8,
    }

    const SITE_LAT: f32 = 40.25;
    const SITE_LON: f32 = -100.5;
    /// 2013-07-17 (days since 1970-01-01, plus one) and 19:50:24 UTC.
    const DAY: u16 = 15_904;
    const MS: u32 = 71_424_000;

    fn message_31(r: &Radial31) -> Vec<u8> {
        let mut body = Vec::new();
        // Data header (32 bytes) and two block pointers.
        body.extend_from_slice(b"KTST");
        body.extend_from_slice(&MS.to_be_bytes());
        body.extend_from_slice(&DAY.to_be_bytes());
        body.extend_from_slice(&1u16.to_be_bytes()); // azimuth number
        body.extend_from_slice(&r.azimuth_deg.to_be_bytes());
        body.extend_from_slice(&[0, 0]); // compression, spare
        body.extend_from_slice(&0u16.to_be_bytes()); // radial length (unused)
        body.push(2); // azimuth spacing code: 1°
        body.push(r.status);
        body.push(r.elevation_number);
        body.push(1); // cut sector
        body.extend_from_slice(&r.elevation_deg.to_be_bytes());
        body.extend_from_slice(&[0, 0]); // spot blanking, azimuth indexing
        body.extend_from_slice(&2u16.to_be_bytes()); // data blocks
        body.extend_from_slice(&40u32.to_be_bytes()); // VOL pointer
        body.extend_from_slice(&92u32.to_be_bytes()); // REF pointer
        assert_eq!(body.len(), 40);
        // VOL block (52 bytes).
        body.extend_from_slice(b"RVOL");
        body.extend_from_slice(&52u16.to_be_bytes());
        body.extend_from_slice(&[2, 0]); // version
        body.extend_from_slice(&SITE_LAT.to_be_bytes());
        body.extend_from_slice(&SITE_LON.to_be_bytes());
        body.extend_from_slice(&300i16.to_be_bytes()); // site height
        body.extend_from_slice(&20u16.to_be_bytes()); // tower height
        body.extend_from_slice(&[0; 20]); // calibration, powers, ZDR, PHI
        body.extend_from_slice(&212u16.to_be_bytes()); // VCP
        body.extend_from_slice(&[0; 10]); // processing status, ZDR bias, spare
        assert_eq!(body.len(), 92);
        // REF block.
        body.extend_from_slice(b"DREF");
        body.extend_from_slice(&0u32.to_be_bytes());
        body.extend_from_slice(&(r.gates.len() as u16).to_be_bytes());
        body.extend_from_slice(&2125u16.to_be_bytes()); // first gate (m)
        body.extend_from_slice(&250u16.to_be_bytes()); // gate spacing (m)
        body.extend_from_slice(&[0; 4]); // tover, SNR threshold
        body.push(0); // control flags
        body.push(r.word_bits);
        let (scale, offset) = if r.word_bits == 16 {
            (20.0f32, 660.0f32)
        } else {
            (2.0, 66.0)
        };
        body.extend_from_slice(&scale.to_be_bytes());
        body.extend_from_slice(&offset.to_be_bytes());
        for &g in &r.gates {
            if r.word_bits == 16 {
                body.extend_from_slice(&g.to_be_bytes());
            } else {
                body.push(g as u8);
            }
        }
        if body.len() % 2 == 1 {
            body.push(0);
        }
        let mut msg = vec![0u8; 12];
        msg.extend_from_slice(&(((16 + body.len()) / 2) as u16).to_be_bytes());
        msg.push(8); // ORDA channel
        msg.push(31); // message type
        msg.extend_from_slice(&1u16.to_be_bytes()); // sequence
        msg.extend_from_slice(&DAY.to_be_bytes());
        msg.extend_from_slice(&MS.to_be_bytes());
        msg.extend_from_slice(&[0, 1, 0, 1]); // segment count / number
        msg.extend_from_slice(&body);
        msg
    }

    /// An Archive II file: volume header and one bzip2 LDM record per entry.
    fn archive(records: &[Vec<u8>]) -> Vec<u8> {
        let mut out = b"AR2V0006.001".to_vec();
        out.extend_from_slice(&u32::from(DAY).to_be_bytes());
        out.extend_from_slice(&MS.to_be_bytes());
        out.extend_from_slice(b"KTST");
        for messages in records {
            let compressed = bzip2(messages);
            out.extend_from_slice(&(compressed.len() as i32).to_be_bytes());
            out.extend_from_slice(&compressed);
        }
        out
    }

    /// A full 360-radial sweep at 0.5° (status 2 on the last radial) with
    /// one echo: `dbz` over azimuths 89–92° and gates `gate ± 3`.
    fn echo_sweep(word_bits: u8, gate: usize, dbz: f32) -> Vec<u8> {
        let mut messages = Vec::new();
        for i in 0..360 {
            let az = i as f32 + 0.5;
            let mut gates = vec![0u16; 800]; // below threshold
            if (89.0..92.0).contains(&az) {
                let raw = if word_bits == 16 {
                    dbz * 20.0 + 660.0
                } else {
                    dbz * 2.0 + 66.0
                };
                for g in gates.iter_mut().skip(gate - 3).take(7) {
                    *g = raw as u16;
                }
            }
            gates[799] = 1; // range folded: no data
            messages.extend(message_31(&Radial31 {
                elevation_number: 1,
                elevation_deg: 0.5,
                azimuth_deg: az,
                status: if i == 359 { 2 } else { 1 },
                gates,
                word_bits,
            }));
        }
        messages
    }

    fn higher_sweep() -> Vec<u8> {
        (0..10)
            .flat_map(|i| {
                message_31(&Radial31 {
                    elevation_number: 2,
                    elevation_deg: 1.5,
                    azimuth_deg: i as f32,
                    status: 1,
                    gates: vec![100; 100],
                    word_bits: 8,
                })
            })
            .collect()
    }

    #[test]
    fn synthetic_message_31_echo_lands_in_the_right_cell() {
        // Gate 391: slant 2125 + 391 × 250 = 99 875 m, i.e. ~99.86 km ground range.
        for bits in [8u8, 16] {
            let bytes = archive(&[echo_sweep(bits, 391, 42.5), higher_sweep()]);
            assert!(looks_like(&bytes, None));
            let v = read_sweep(&bytes, None, &NexradOptions::default()).expect("volume");
            assert_eq!(v.site_source, SiteSource::VolumeDataBlock);
            assert_eq!(v.vcp, Some(212));
            assert_eq!(v.sweep.site.id, "KTST");
            assert_eq!(v.sweep.site.height_m, 320.0);
            assert_eq!(v.sweep.dbz.dim(), (360, 800));
            assert_eq!(v.sweep.dbz[[90, 391]], 42.5);
            assert_eq!(v.sweep.dbz[[0, 0]], f32::NEG_INFINITY);
            assert!(v.sweep.dbz[[0, 799]].is_nan(), "range folded");
            assert_eq!(v.volume_time.to_rfc3339(), "2013-07-17T19:50:24+00:00");
            let scan = decode(&bytes, None).expect("scan");
            assert_eq!(scan.format, Format::Nexrad);
            assert_eq!(scan.quantity, Quantity::Reflectivity);
            assert_eq!(scan.zr_hint, Some(ZR::NEXRAD_CONVECTIVE));
            assert_eq!(scan.grid.shape(), (500, 500));
            let (lon, lat) = scan.grid.rowcol_to_lonlat(250.0, 250.0).expect("centre");
            assert!((lon - f64::from(SITE_LON)).abs() < 1e-6);
            assert!((lat - f64::from(SITE_LAT)).abs() < 1e-6);
            // Due east at 99.86 km ground range: column 250 + 99.86 = 349; the
            // centre line (row 249 | 250) lies inside the 89–92° echo.
            assert_eq!(scan.values[[250, 349]], 42.5, "{bits}-bit");
            assert_eq!(scan.values[[249, 349]], 42.5, "{bits}-bit");
            // The radials reach 88.75°–92.25° (±0.75 × 1° spacing), i.e. y from
            // +2.2 km to −3.9 km (rows 247–253); gates 388–394 reach
            // 98.9–100.7 km (columns 348–350, one more for nearest-gate rounding).
            let echo: Vec<(usize, usize)> = scan
                .values
                .indexed_iter()
                .filter(|(_, v)| v.is_finite())
                .map(|(i, _)| i)
                .collect();
            assert!(
                echo.iter()
                    .all(|&(r, c)| (247..=253).contains(&r) && (348..=351).contains(&c)),
                "{echo:?}"
            );
            assert!(echo.len() >= 10, "{echo:?}");
            // Beyond the last gate (2.1 + 800 × 0.25 = 202 km) and the range: no data.
            assert!(scan.values[[250, 470]].is_nan());
            assert!(scan.values[[0, 0]].is_nan());
            assert_eq!(scan.values[[250, 400]], f32::NEG_INFINITY, "150 km east");
        }
    }

    #[test]
    fn stops_after_the_selected_sweep() {
        // A third record that is not bzip2 at all: never read when elevation
        // 1 is asked for and ends with an end-of-elevation radial.
        let mut bytes = archive(&[echo_sweep(8, 391, 30.0), higher_sweep()]);
        bytes.extend_from_slice(&6i32.to_be_bytes());
        bytes.extend_from_slice(b"BZh9xx");
        let first = NexradOptions {
            elevation: ElevationChoice::Number(1),
            ..NexradOptions::default()
        };
        let v = read_sweep(&bytes, None, &first).expect("stops early");
        assert_eq!((v.records_read, v.records_total), (1, 3));
        // Without a coverage pattern message the lowest cut needs every record.
        let err = read_sweep(&bytes, None, &NexradOptions::default()).unwrap_err();
        assert_eq!(err.code(), "container", "{err}");
        assert!(err.to_string().contains("record 2"), "{err}");
        // The higher cut, by number and by angle.
        let bytes = archive(&[echo_sweep(8, 391, 30.0), higher_sweep()]);
        for elevation in [
            ElevationChoice::Number(2),
            ElevationChoice::NearestAngle(1.2),
        ] {
            let v = read_sweep(
                &bytes,
                None,
                &NexradOptions {
                    elevation,
                    ..NexradOptions::default()
                },
            )
            .expect("elevation 2");
            assert_eq!(v.sweep.elevation_number, 2);
            assert_eq!(v.sweep.dbz.dim(), (10, 100));
        }
        let err = read_sweep(
            &bytes,
            None,
            &NexradOptions {
                elevation: ElevationChoice::Number(7),
                ..NexradOptions::default()
            },
        )
        .unwrap_err();
        assert_eq!(err.code(), "missing");
        // A sweep above max_cells (radials x gates) is refused while it is
        // read, before its polar array is built.
        let err = read_sweep(
            &bytes,
            None,
            &NexradOptions {
                max_cells: Some(500),
                ..NexradOptions::default()
            },
        )
        .unwrap_err();
        assert!(
            matches!(err, DecodeError::TooLarge { limit: 500, .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("radials x gates of elevation"),
            "{err}"
        );
    }

    #[test]
    fn whole_file_compression_and_detection() {
        let plain = archive(&[echo_sweep(8, 200, 25.0)]);
        let reference = read_sweep(&plain, None, &NexradOptions::default()).expect("plain");
        let bz = bzip2(&plain);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).expect("gzip");
        let gz = gz.finish().expect("gzip");
        for wrapped in [&bz, &gz] {
            assert!(looks_like(wrapped, None));
            assert_eq!(crate::decode::detect(wrapped, None), Some(Format::Nexrad));
            let v = read_sweep(wrapped, None, &NexradOptions::default()).expect("wrapped");
            let same = v
                .sweep
                .dbz
                .iter()
                .zip(&reference.sweep.dbz)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same && v.sweep.dbz.dim() == reference.sweep.dbz.dim());
        }
        assert_eq!(crate::decode::detect(&plain, None), Some(Format::Nexrad));
        assert!(!looks_like(b"P5\n", None));
        let mut pgm = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        pgm.write_all(b"P5\n# obstime 201609281200\n")
            .expect("gzip");
        assert!(!looks_like(&pgm.finish().expect("gzip"), None));
    }

    #[test]
    fn site_from_header_name_and_options() {
        assert_eq!(icao_of_file_name("KATX20130717_195021_V06"), Some("KATX"));
        assert_eq!(
            icao_of_file_name("2013/07/17/KATX/KATX20130717_195021_V06.gz"),
            Some("KATX")
        );
        assert_eq!(icao_of_file_name("example_nexrad_archive_msg1.bz2"), None);
        assert_eq!(icao_of_file_name("KATX"), None);
        let sweep = |site: &str| {
            let mut bytes = b"ARCHIVE2.001".to_vec();
            bytes.extend_from_slice(&u32::from(DAY).to_be_bytes());
            bytes.extend_from_slice(&MS.to_be_bytes());
            bytes.extend_from_slice(site.as_bytes());
            bytes
        };
        // A legacy volume needs its site from somewhere: take the sample's
        // message-1 frames under different headers.
        let Some(b) = sample("msg1") else { return };
        let legacy = bunzip(&b);
        let frames = &legacy[24..];
        let with_header = |h: Vec<u8>| [h, frames.to_vec()].concat();
        let v = read_sweep(&with_header(sweep("KATX")), None, &NexradOptions::default())
            .expect("header ICAO");
        assert_eq!(
            (v.site_source, v.sweep.site.id.as_str()),
            (SiteSource::HeaderIcao, "KATX")
        );
        let v = read_sweep(
            &with_header(sweep("\0\0\0\0")),
            Some("KLOT20030101_000921"),
            &NexradOptions::default(),
        )
        .expect("name");
        assert_eq!(
            (v.site_source, v.sweep.site.id.as_str()),
            (SiteSource::FileName, "KLOT")
        );
        let err = read_sweep(
            &with_header(sweep("\0\0\0\0")),
            None,
            &NexradOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err.code(), "missing");
        assert!(err.to_string().contains("--site"), "{err}");
        let err = read_sweep(
            &with_header(sweep("\0\0\0\0")),
            None,
            &NexradOptions {
                site: Some("QQQQ".into()),
                ..NexradOptions::default()
            },
        )
        .unwrap_err();
        assert_eq!(err.code(), "bad_value");
        // A retired site (KLIX, in no operational registry) is placed by the
        // location given; a listed one still comes from the registry.
        let at = |lat_deg: f64| NexradOptions {
            location: Some(SiteLocation {
                lat_deg,
                lon_deg: -89.8256,
                height_m: 7.0,
            }),
            ..NexradOptions::default()
        };
        let v = read_sweep(&with_header(sweep("KLIX")), None, &at(30.3367)).expect("location");
        assert_eq!(
            (v.site_source, v.sweep.site.id.as_str()),
            (SiteSource::Location, "KLIX")
        );
        assert_eq!(
            (
                v.sweep.site.lat_deg,
                v.sweep.site.lon_deg,
                v.sweep.site.height_m
            ),
            (30.3367, -89.8256, 7.0)
        );
        let unknown = NexradOptions {
            site: Some("QQQQ".into()),
            ..at(30.3367)
        };
        let v = read_sweep(&with_header(sweep("\0\0\0\0")), None, &unknown).expect("named");
        assert_eq!(
            (v.site_source, v.sweep.site.id.as_str()),
            (SiteSource::Location, "QQQQ")
        );
        let v = read_sweep(&with_header(sweep("KATX")), None, &at(30.3367)).expect("registry");
        assert_eq!(v.site_source, SiteSource::HeaderIcao);
        let err = read_sweep(&with_header(sweep("KLIX")), None, &at(91.0)).unwrap_err();
        assert_eq!(err.code(), "bad_value");
        assert!(err.to_string().contains("site location latitude"), "{err}");
        let err =
            read_sweep(&with_header(sweep("KLIX")), None, &NexradOptions::default()).unwrap_err();
        assert!(err.to_string().contains("--site-location"), "{err}");
    }

    /// A fixed-frame (2 432-byte) message of `kind` carrying segment
    /// `number` of `count`, on a legacy RDA channel, payload all zero.
    fn fixed_frame(kind: u8, count: u16, number: u16) -> Vec<u8> {
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&1210u16.to_be_bytes()); // (16 + 2 404) / 2
        frame.push(0); // legacy single channel
        frame.push(kind);
        frame.extend_from_slice(&1u16.to_be_bytes()); // sequence
        frame.extend_from_slice(&DAY.to_be_bytes());
        frame.extend_from_slice(&MS.to_be_bytes());
        frame.extend_from_slice(&count.to_be_bytes());
        frame.extend_from_slice(&number.to_be_bytes());
        frame.resize(FRAME_BYTES, 0);
        frame
    }

    #[test]
    fn clutter_map_segments_out_of_sequence_are_skipped() {
        // As a pre-ORDA RDA wrote them (KLIX 2005): a clutter filter map
        // (15) declared as 2 segments and continued as segments 3 and 4 "of
        // 4", then a bypass map (13) the same way, then the radar data.
        let mut record = Vec::new();
        for kind in [15u8, 13] {
            for (count, number) in [(2, 1), (2, 2), (4, 3), (4, 4)] {
                record.extend(fixed_frame(kind, count, number));
            }
        }
        record.extend(echo_sweep(8, 391, 42.5));
        let bytes = archive(&[record, higher_sweep()]);
        let v = read_sweep(&bytes, None, &NexradOptions::default()).expect("volume");
        assert_eq!(v.sweep.dbz.dim(), (360, 800));
        assert_eq!(v.sweep.dbz[[90, 391]], 42.5);
        // A message breaking the sequence is read from its own start: the
        // radar data right after a cut-short map (a variable-length message
        // 31, whose radials a frame-sized skip would tear apart).
        let mut record = fixed_frame(15, 3, 1);
        record.extend(echo_sweep(8, 391, 42.5));
        let v =
            read_sweep(&archive(&[record]), None, &NexradOptions::default()).expect("cut short");
        assert_eq!(v.sweep.dbz.dim(), (360, 800));
        assert_eq!(v.sweep.dbz[[90, 391]], 42.5);
        // Radar data out of sequence is not skipped: the volume fails.
        let mut record = fixed_frame(1, 2, 2);
        record.extend(echo_sweep(8, 391, 42.5));
        let err = read_sweep(&archive(&[record]), None, &NexradOptions::default()).unwrap_err();
        assert_eq!(err.code(), "container", "{err}");
        assert!(err.to_string().contains("message type 1"), "{err}");
    }

    // ---- the real samples --------------------------------------------

    #[test]
    fn decodes_the_message_31_excerpt() {
        let Some(b) = sample("msg31") else { return };
        let v = read_sweep(&b, None, &NexradOptions::default()).expect("msg31");
        assert_eq!(v.site_source, SiteSource::VolumeDataBlock);
        assert_eq!(v.sweep.site.id, "KATX");
        // Camano Island, WA (NCEI: 48.19461 N, 122.49563 W).
        assert!((v.sweep.site.lat_deg - 48.1946).abs() < 1e-3);
        assert!((v.sweep.site.lon_deg + 122.4956).abs() < 1e-3);
        assert_eq!(v.vcp, Some(11));
        assert_eq!(v.volume_time.to_rfc3339(), "2013-07-17T19:50:24+00:00");
        assert_eq!((v.records_read, v.records_total), (2, 2));
        let s = &v.sweep;
        assert_eq!(s.elevation_number, 1);
        assert!((s.elevation_deg - 0.5).abs() < 0.1, "{}", s.elevation_deg);
        assert_eq!(s.dbz.dim(), (120, 1832));
        assert_eq!((s.first_gate_m, s.gate_m), (2125.0, 250.0));
        assert!((s.azimuth_spacing_deg() - 0.5).abs() < 0.01);
        let scan = decode(&b, Some("example_nexrad_archive_msg31_compressed.ar2v")).expect("scan");
        let (lon, lat) = scan.grid.rowcol_to_lonlat(250.0, 250.0).expect("centre");
        assert!((lon - s.site.lon_deg).abs() < 1e-6 && (lat - s.site.lat_deg).abs() < 1e-6);
        // 120 radials of 0.5° cover 60° of the circle: about a sixth of the
        // disc has data, the rest is no data.
        let inside = scan.values.iter().filter(|v| !v.is_nan()).count() as f64;
        let disc = std::f64::consts::PI * 250.0 * 250.0;
        assert!(
            (inside / disc - 60.0 / 360.0).abs() < 0.02,
            "{}",
            inside / disc
        );
    }

    #[test]
    fn decodes_and_grids_the_legacy_message_1_volume() {
        let Some(b) = sample("msg1") else { return };
        let err = read_sweep(&b, None, &NexradOptions::default()).unwrap_err();
        assert_eq!(
            err.code(),
            "missing",
            "the volume carries no location: {err}"
        );
        let v = read_sweep(&b, None, &klot()).expect("msg1");
        assert_eq!(v.site_source, SiteSource::Options);
        assert_eq!(v.vcp, Some(32));
        assert_eq!(v.volume_time.to_rfc3339(), "2003-01-01T00:09:21.307+00:00");
        let s = &v.sweep;
        assert_eq!(s.elevation_number, 1);
        assert!((s.elevation_deg - 0.5).abs() < 0.05);
        assert_eq!(s.dbz.dim(), (367, 460));
        assert_eq!((s.first_gate_m, s.gate_m), (0.0, 1000.0));
        // Other cuts: elevation 2 is the Doppler half of the split cut (no REF).
        let pick = |elevation| {
            read_sweep(
                &b,
                None,
                &NexradOptions {
                    elevation,
                    ..klot()
                },
            )
        };
        assert_eq!(
            pick(ElevationChoice::Number(2)).unwrap_err().code(),
            "missing"
        );
        let third = pick(ElevationChoice::Number(3)).expect("elevation 3");
        assert!((third.sweep.elevation_deg - 1.5).abs() < 0.05);
        let near = pick(ElevationChoice::NearestAngle(2.4)).expect("nearest 2.4°");
        assert_eq!(near.sweep.elevation_number, 5);

        let mut gridder = PolarGridder::new(PolarOptions::default());
        let scan = decode_with(&b, None, &klot(), &mut gridder).expect("scan");
        assert_eq!(scan.source, "NEXRAD KLOT");
        let (lon, lat) = scan.grid.rowcol_to_lonlat(250.0, 250.0).expect("centre");
        assert!((lon - -88.0847).abs() < 1e-6 && (lat - 41.6044).abs() < 1e-6);
        // Cross-check cells by hand against the decoded radials: cell centre
        // → ground range and azimuth → slant range (4/3 Earth) → gate, and
        // the radial nearest in azimuth.
        let mut filtered = s.dbz.clone();
        filter_gates(&mut filtered, &s.azimuth_deg, 5.0, true);
        let ka = 4.0 / 3.0 * 6_371_000.0;
        let elev = (f64::from(s.elevation_deg) * 10.0).round() / 10.0;
        let mut checked = 0;
        for ((row, col), &value) in scan.values.indexed_iter() {
            let x = (col as f64 + 0.5 - 250.0) * 1000.0;
            let y = (250.0 - row as f64 - 0.5) * 1000.0;
            let ground = x.hypot(y);
            if ground > 250_000.0 {
                assert!(value.is_nan(), "beyond range at {row} {col}");
                continue;
            }
            let phi = ground / ka;
            let slant = ka * phi.sin() / (elev.to_radians() + phi).cos();
            let gate = ((slant - s.first_gate_m) / s.gate_m).round();
            if gate < 0.0 {
                assert!(value.is_nan(), "inside the first gate at {row} {col}");
                continue;
            }
            assert!(!value.is_nan(), "no data inside the range at {row} {col}");
            if !value.is_finite() || (row * 500 + col) % 7 != 0 {
                continue;
            }
            let az = x.atan2(y).to_degrees().rem_euclid(360.0) as f32;
            let mut by_distance: Vec<(f32, usize)> = s
                .azimuth_deg
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let d = (a - az).rem_euclid(360.0);
                    (d.min(360.0 - d), i)
                })
                .collect();
            by_distance.sort_by(|a, b| a.0.total_cmp(&b.0));
            // The mapping bins azimuths to 0.1°: either of the two nearest radials.
            let candidates: Vec<f32> = by_distance[..2]
                .iter()
                .map(|&(_, i)| filtered[[i, gate as usize]])
                .collect();
            assert!(
                candidates.contains(&value),
                "{row} {col}: {value} vs {candidates:?}"
            );
            checked += 1;
        }
        assert!(checked > 100, "only {checked} echo cells checked");
        // The strongest echo gate within 250 km lands in a cell holding an
        // echo of its neighbourhood.
        let ((r, g), &max) = filtered
            .indexed_iter()
            .filter(|((_, g), v)| *g < 245 && v.is_finite())
            .max_by(|a, b| a.1.total_cmp(b.1))
            .expect("an echo");
        let ground = crate::polar::ground_range_m(s.first_gate_m + g as f64 * s.gate_m, elev);
        let az = f64::from(s.azimuth_deg[r]).to_radians();
        let (row, col) = scan.grid.xy_to_rowcol(ground * az.sin(), ground * az.cos());
        let cell = scan.values[[row as usize, col as usize]];
        assert!(
            cell.is_finite() && cell >= max - 15.0,
            "gate {max} dBZ, cell {cell}"
        );
        assert!((slant_range_m(ground, elev) - (g as f64 * s.gate_m)).abs() < 1.0);
        // The same volume again reuses the mapping.
        decode_with(&b, None, &klot(), &mut gridder).expect("again");
        assert_eq!(gridder.mapping_builds(), 1);
        // A coarser, larger grid.
        let mut wide = PolarGridder::new(PolarOptions {
            grid: GridSpec {
                max_range_m: 400_000.0,
                cell_m: 2_000.0,
            },
            ..PolarOptions::default()
        });
        let scan = decode_with(&b, None, &klot(), &mut wide).expect("wide");
        assert_eq!(scan.grid.shape(), (400, 400));
    }

    // ---- bad input ---------------------------------------------------

    fn assert_typed(result: Result<RadarScan, DecodeError>) -> Option<&'static str> {
        result.err().map(|e| e.code())
    }

    #[test]
    fn truncated_volumes_give_typed_errors() {
        if let Some(b) = sample("msg31") {
            // LDM framing is checked over the whole file: every cut fails.
            for end in (0..b.len())
                .step_by(211)
                .chain([1, 23, 24, 25, 28, b.len() - 1])
            {
                let code = assert_typed(decode(&b[..end], None));
                assert!(
                    matches!(code, Some("truncated" | "missing" | "bad_magic")),
                    "cut at {end}: {code:?}"
                );
            }
        }
        if let Some(b) = sample("msg1") {
            // Whole-file bzip2: the stream ends early.
            for end in (0..b.len()).step_by(1_009).chain([3, 4, 10, b.len() - 1]) {
                let code = assert_typed(decode_with(
                    &b[..end],
                    None,
                    &klot(),
                    &mut PolarGridder::default(),
                ));
                assert!(code.is_some(), "cut at {end}");
            }
            // Unwrapped legacy frames: cuts inside a frame fail, cuts between
            // frames leave a shorter (still valid) volume.
            let plain = bunzip(&b);
            for end in (24..plain.len()).step_by(48_611) {
                let r = read_sweep(&plain[..end], None, &klot());
                let boundary = (end - 24) % 2432 == 0;
                assert!(boundary || r.is_err(), "cut at {end}");
            }
        }
    }

    /// xorshift64*: deterministic pseudo-random numbers for mutations.
    fn rng(seed: &mut u64) -> u64 {
        *seed ^= *seed >> 12;
        *seed ^= *seed << 25;
        *seed ^= *seed >> 27;
        seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    #[test]
    fn corrupted_volumes_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        // Message 31: corrupt the decompressed records, recompress.
        let synthetic = [echo_sweep(8, 300, 35.0), higher_sweep()];
        for _ in 0..40 {
            let mut records = synthetic.to_vec();
            for _ in 0..1 + rng(&mut seed) % 8 {
                let rec = (rng(&mut seed) % 2) as usize;
                let at = (rng(&mut seed) % records[rec].len() as u64) as usize;
                records[rec][at] = rng(&mut seed) as u8;
            }
            let _ = decode(&archive(&records), None);
        }
        // Legacy frames: corrupt the plain (unwrapped) volume.
        if let Some(b) = sample("msg1") {
            let plain = bunzip(&b);
            let mut gridder = PolarGridder::default();
            for _ in 0..25 {
                let mut bytes = plain.clone();
                for _ in 0..1 + rng(&mut seed) % 16 {
                    // Hit the first frames (header fields) more often than the rest.
                    let span = if rng(&mut seed).is_multiple_of(2) {
                        50_000
                    } else {
                        bytes.len() as u64
                    };
                    let at = (rng(&mut seed) % span) as usize;
                    bytes[at] = rng(&mut seed) as u8;
                }
                let _ = decode_with(&bytes, None, &klot(), &mut gridder);
            }
        }
        // Garbage after a valid header, and absurd record sizes.
        let mut bytes = archive(&[]);
        bytes.extend_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(decode(&bytes, None).unwrap_err().code(), "truncated");
        let mut bytes = archive(&[]);
        bytes.extend_from_slice(&0i32.to_be_bytes());
        bytes.extend_from_slice(&[1; 10]);
        assert!(decode(&bytes, None).is_err());
        assert_eq!(decode(b"AR2V0006.", None).unwrap_err().code(), "truncated");
        assert_eq!(decode(&[b'x'; 100], None).unwrap_err().code(), "bad_magic");
        assert_eq!(decode(b"BZh91AY&SY", None).unwrap_err().code(), "container");
    }

    #[test]
    fn decompression_is_size_limited() {
        let zeros = bzip2(&vec![0u8; 100_000]);
        let err = read_limited(
            bzip2::read::BzDecoder::new(&zeros[..]),
            1_000,
            "bzip2 volume",
        )
        .map_err(|u| u.error)
        .unwrap_err();
        assert_eq!(err.code(), "absurd_size");
        let ok = read_limited(
            bzip2::read::BzDecoder::new(&zeros[..]),
            100_000,
            "bzip2 volume",
        );
        assert_eq!(ok.map(|v| v.len()).ok(), Some(100_000));
    }
}
