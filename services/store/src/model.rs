//! Records the stores hold. Scan payloads are opaque bytes: the sparse
//! encoding (raincast-algorithms `sparse`) produces a header and one byte
//! string per tile, and the stores keep them without looking inside.

use crate::error::{StoreError, StoreResult};
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// An object listed by a [`crate::ScanSource`]. `key` is relative to the
/// source's root (bucket prefix or folder), always with `/` separators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceObject {
    /// Key below the source root, e.g. `bom02/2018/06/16/2_20180616_100000.prcp-cscn.nc`.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// When the object was last written, if the source knows.
    pub last_modified: Option<DateTime<Utc>>,
}

/// One tile of a sparse scan: its position in the tile grid (row 0 = north,
/// column 0 = west) and its bytes, opaque to the store. The same type as the
/// sparse encoder's tiles, so scans go in and out without conversion.
pub type Tile = raincast_algorithms::sparse::EncodedTile;

/// A scan to store: the encoded header and tiles plus what the listing needs.
#[derive(Debug, Clone, PartialEq)]
pub struct NewScan {
    /// Radar id (configuration `radars[].id`).
    pub radar: String,
    /// Scan time, UTC. Stores keep whole seconds; sub-second parts are dropped.
    pub time: DateTime<Utc>,
    /// The source key the scan was decoded from.
    pub source_key: String,
    /// Format name (`odim`, `bom`, ...).
    pub format: String,
    /// Encoded header (opaque: grid, scaling, tile size ...).
    pub header: Vec<u8>,
    /// Number of cells with rain (> 0 mm/h).
    pub rain_cells: u64,
    /// Encoded tiles that hold rain; tiles absent here are empty.
    pub tiles: Vec<Tile>,
}

impl NewScan {
    /// A stable 64-bit FNV-1a digest of the header and the tiles, as 16 hex
    /// digits. Two writers that encode the same scan the same way get the same
    /// digest; the DynamoDB store puts it in tile keys so that two different
    /// encodings of one scan can never mix.
    pub fn digest(&self) -> String {
        let mut h = Fnv64::new();
        h.write(&(self.header.len() as u64).to_le_bytes());
        h.write(&self.header);
        for t in &self.tiles {
            h.write(&t.row.to_le_bytes());
            h.write(&t.col.to_le_bytes());
            h.write(&(t.bytes.len() as u64).to_le_bytes());
            h.write(&t.bytes);
        }
        format!("{:016x}", h.finish())
    }

    /// Header plus tile bytes.
    pub fn payload_bytes(&self) -> u64 {
        self.header.len() as u64 + self.tiles.iter().map(|t| t.bytes.len() as u64).sum::<u64>()
    }

    /// Checks what every adapter requires: a radar id usable in keys, no
    /// duplicate tiles.
    pub fn validate(&self) -> StoreResult<()> {
        validate_radar_id(&self.radar)?;
        let mut seen: Vec<(u16, u16)> = self.tiles.iter().map(|t| (t.row, t.col)).collect();
        seen.sort_unstable();
        if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
            return Err(StoreError::invalid(
                "tiles",
                format!("tile ({}, {}) appears twice", w[0].0, w[0].1),
            ));
        }
        Ok(())
    }

    /// The manifest describing this scan once stored.
    pub fn manifest(&self, ingested_at: DateTime<Utc>, expires_at: DateTime<Utc>) -> ScanManifest {
        let mut tiles: Vec<TileRef> = self
            .tiles
            .iter()
            .map(|t| TileRef {
                row: t.row,
                col: t.col,
                len: t.bytes.len() as u32,
            })
            .collect();
        tiles.sort_unstable_by_key(|t| (t.row, t.col));
        ScanManifest {
            radar: self.radar.clone(),
            time: truncate_to_seconds(self.time),
            source_key: self.source_key.clone(),
            format: self.format.clone(),
            digest: self.digest(),
            header: self.header.clone(),
            rain_cells: self.rain_cells,
            tiles,
            bytes: self.payload_bytes(),
            ingested_at: truncate_to_seconds(ingested_at),
            expires_at: truncate_to_seconds(expires_at),
        }
    }
}

/// Where a tile is and how long its bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TileRef {
    pub row: u16,
    pub col: u16,
    pub len: u32,
}

/// The record that makes a scan visible: written last, after every tile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanManifest {
    pub radar: String,
    /// Scan time (UTC, whole seconds).
    pub time: DateTime<Utc>,
    pub source_key: String,
    pub format: String,
    /// [`NewScan::digest`] of the stored content.
    pub digest: String,
    /// Encoded header (opaque).
    #[serde(skip)]
    pub header: Vec<u8>,
    pub rain_cells: u64,
    /// Every stored tile, sorted by (row, col).
    pub tiles: Vec<TileRef>,
    /// Header plus tile bytes.
    pub bytes: u64,
    pub ingested_at: DateTime<Utc>,
    /// After this instant the scan is treated as gone (retention / TTL).
    pub expires_at: DateTime<Utc>,
}

impl ScanManifest {
    /// True once the retention period has run out. Readers filter these
    /// out because DynamoDB deletes expired items lazily (up to days later).
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at <= now
    }

    /// Compact binary form used by the embedded store: `u32` LE length of the
    /// JSON metadata, the JSON, then the header bytes.
    pub fn to_bytes(&self) -> StoreResult<Vec<u8>> {
        let meta =
            serde_json::to_vec(self).map_err(|e| StoreError::corrupt("manifest", e.to_string()))?;
        let mut out = Vec::with_capacity(4 + meta.len() + self.header.len());
        out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(&self.header);
        Ok(out)
    }

    /// Inverse of [`ScanManifest::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> StoreResult<Self> {
        let len_bytes: [u8; 4] = bytes
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| StoreError::corrupt("manifest", "shorter than 4 bytes"))?;
        let len = u32::from_le_bytes(len_bytes) as usize;
        let meta = bytes
            .get(4..4 + len)
            .ok_or_else(|| StoreError::corrupt("manifest", "metadata truncated"))?;
        let mut m: ScanManifest = serde_json::from_slice(meta)
            .map_err(|e| StoreError::corrupt("manifest", e.to_string()))?;
        m.header = bytes[4 + len..].to_vec();
        Ok(m)
    }
}

/// What a scan listing shows of a scan: its manifest without the header,
/// digest, source and tile index, so that adapters can list without reading
/// those (see [`crate::ScanStore::list_entries`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanEntry {
    /// Scan time (UTC, whole seconds).
    pub time: DateTime<Utc>,
    pub rain_cells: u64,
    /// Header plus tile bytes.
    pub bytes: u64,
    /// Stored tiles.
    pub tiles: usize,
    pub ingested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl From<&ScanManifest> for ScanEntry {
    fn from(m: &ScanManifest) -> Self {
        Self {
            time: m.time,
            rain_cells: m.rain_cells,
            bytes: m.bytes,
            tiles: m.tiles.len(),
            ingested_at: m.ingested_at,
            expires_at: m.expires_at,
        }
    }
}

/// A stored scan read back whole.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredScan {
    pub manifest: ScanManifest,
    /// Tiles in manifest order.
    pub tiles: Vec<Tile>,
}

/// What [`crate::ScanStore::put_scan`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The scan is now stored and visible.
    Stored,
    /// A scan for this radar and time was already stored: nothing changed.
    AlreadyStored,
}

/// How far the ingest of one radar has got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub radar: String,
    /// Time of the newest source object processed (stored, skipped or quarantined).
    pub last_time: DateTime<Utc>,
    /// Its key.
    pub last_key: String,
    pub updated_at: DateTime<Utc>,
}

/// A source object that failed to decode (or could not be read); it is not
/// tried again while it is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineRecord {
    pub radar: String,
    pub key: String,
    /// Short reason code (`DecodeError::code()`, `too_large`, ...).
    pub reason_code: String,
    /// Human-readable reason.
    pub reason: String,
    /// Time parsed from the key, if any.
    pub time: Option<DateTime<Utc>>,
    pub recorded_at: DateTime<Utc>,
    /// The file's size and modification time when it was quarantined, as
    /// listed, so that ingest can tell a file that changed since (see
    /// `raincast-ingest`'s pass). `None` in records written before they
    /// were kept.
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub modified: Option<DateTime<Utc>>,
}

/// Who held a lease before the caller got it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeasePredecessor {
    /// Nobody had ever held it.
    None,
    /// The caller itself (a re-acquire extends it).
    Same,
    /// Another owner released it cleanly: a hand-over.
    Released { owner: String },
    /// Another owner's lease ran out without a release (it crashed or hung):
    /// a takeover.
    Expired {
        owner: String,
        expired_at: DateTime<Utc>,
    },
}

/// Result of [`crate::StateStore::acquire_lease`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// The caller holds the lease until `until`.
    Acquired {
        until: DateTime<Utc>,
        predecessor: LeasePredecessor,
    },
    /// Another owner holds it.
    Held { owner: String, until: DateTime<Utc> },
}

/// A record of [`crate::StateStore::get_record`]: opaque text (JSON by
/// convention) and the version every write increments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedRecord {
    pub value: String,
    /// 1 for a new record.
    pub version: u64,
}

/// The [`crate::error::StoreError::Conflict`] of a lost compare-and-set on a record.
pub(crate) fn record_conflict(key: &str, expected: Option<u64>) -> StoreError {
    StoreError::Conflict {
        what: format!("record {key:?}"),
        reason: match expected {
            None => "already exists".into(),
            Some(v) => format!("not at version {v}"),
        },
    }
}

/// The largest difference between an instance's clock and UTC that leases
/// and claims assume. chrony with the Amazon Time Sync Service keeps EC2
/// clocks far closer (docs/OPERATIONS.md, "Clocks").
pub const MAX_CLOCK_SKEW: chrono::Duration = chrono::Duration::milliseconds(1000);

/// How long past its end a lease (or a notifier claim's lease) of another
/// owner stays untouched: the holder's clock and ours may each be
/// [`MAX_CLOCK_SKEW`] off, so ours may run up to twice that ahead of it.
/// Only a lease that ran out without a release waits; a released one is
/// free at once.
pub const LEASE_SKEW_MARGIN: chrono::Duration = chrono::Duration::milliseconds(2000);

/// Whether a lease that its holder set to end at `until` has run out at
/// `now` by this instance's clock, [`LEASE_SKEW_MARGIN`] included.
pub fn lease_expired(until: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    until + LEASE_SKEW_MARGIN <= now
}

/// A lease as stored by every adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LeaseRecord {
    pub owner: String,
    pub until: DateTime<Utc>,
    pub released: bool,
}

impl LeaseRecord {
    /// Whether `owner` may take this lease at `now`, and from whom.
    /// `Err((holder, until))` when another owner holds it.
    pub fn predecessor_for(
        current: Option<&LeaseRecord>,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<LeasePredecessor, (String, DateTime<Utc>)> {
        match current {
            None => Ok(LeasePredecessor::None),
            Some(l) if l.owner == owner => Ok(LeasePredecessor::Same),
            Some(l) if l.released => Ok(LeasePredecessor::Released {
                owner: l.owner.clone(),
            }),
            Some(l) if lease_expired(l.until, now) => Ok(LeasePredecessor::Expired {
                owner: l.owner.clone(),
                expired_at: l.until,
            }),
            Some(l) => Err((l.owner.clone(), l.until)),
        }
    }
}

/// Whether `new` may replace the stored checkpoint `old` (never backwards).
pub(crate) fn checkpoint_advances(old: Option<&Checkpoint>, new: &Checkpoint) -> bool {
    match old {
        None => true,
        Some(o) => (new.last_time, new.last_key.as_str()) >= (o.last_time, o.last_key.as_str()),
    }
}

/// Lease and radar ids end up inside keys: keep them simple.
pub fn validate_radar_id(id: &str) -> StoreResult<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(StoreError::invalid(
            "radar id",
            format!("{id:?}: use 1-64 characters from A-Z a-z 0-9 - _ ."),
        ))
    }
}

/// Drops the sub-second part: stores keep scan times in whole seconds.
pub fn truncate_to_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_opt(t.timestamp(), 0).single().unwrap_or(t)
}

/// Fixed-width, lexically sortable UTC time: `2018-06-16T10:00:00Z`.
pub fn time_key(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Inverse of [`time_key`].
pub fn parse_time_key(s: &str) -> StoreResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::corrupt(format!("time {s:?}"), e.to_string()))
}

/// 64-bit FNV-1a: tiny, stable across Rust versions and platforms.
struct Fnv64(u64);

impl Fnv64 {
    fn new() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn scan() -> NewScan {
        NewScan {
            radar: "bom02".into(),
            time: Utc.with_ymd_and_hms(2018, 6, 16, 10, 0, 0).unwrap(),
            source_key: "bom02/2018/06/16/x.nc".into(),
            format: "bom".into(),
            header: vec![1, 2, 3],
            rain_cells: 7,
            tiles: vec![
                Tile {
                    row: 1,
                    col: 0,
                    bytes: vec![9; 10],
                },
                Tile {
                    row: 0,
                    col: 2,
                    bytes: vec![8; 5],
                },
            ],
        }
    }

    #[test]
    fn digest_is_stable_and_content_sensitive() {
        let a = scan();
        assert_eq!(a.digest(), scan().digest());
        assert_eq!(a.digest().len(), 16);
        let mut b = scan();
        b.tiles[0].bytes[3] = 0;
        assert_ne!(a.digest(), b.digest());
        // Known value guards against accidental changes of the hash.
        assert_eq!(Fnv64::new().finish(), 0xcbf2_9ce4_8422_2325);
        let mut h = Fnv64::new();
        h.write(b"a");
        assert_eq!(h.finish(), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn manifest_round_trips_and_sorts_tiles() {
        let s = scan();
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let m = s.manifest(now, now + chrono::Duration::days(7));
        assert_eq!(
            m.tiles[0],
            TileRef {
                row: 0,
                col: 2,
                len: 5
            }
        );
        assert_eq!(m.bytes, 3 + 10 + 5);
        let back = ScanManifest::from_bytes(&m.to_bytes().unwrap()).unwrap();
        assert_eq!(back, m);
        assert!(ScanManifest::from_bytes(&[1, 0]).is_err());
        assert!(ScanManifest::from_bytes(&[200, 0, 0, 0, b'{']).is_err());
        assert!(!m.is_expired(now));
        assert!(m.is_expired(now + chrono::Duration::days(7)));
    }

    #[test]
    fn validation_rejects_bad_ids_and_duplicate_tiles() {
        let mut s = scan();
        assert!(s.validate().is_ok());
        s.tiles.push(Tile {
            row: 1,
            col: 0,
            bytes: vec![],
        });
        assert!(s.validate().is_err());
        for bad in ["", "a/b", "x#y", &"r".repeat(65)] {
            assert!(validate_radar_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn time_keys_sort_and_parse() {
        let t = Utc.with_ymd_and_hms(2018, 6, 16, 10, 6, 0).unwrap();
        assert_eq!(time_key(t), "2018-06-16T10:06:00Z");
        assert_eq!(parse_time_key(&time_key(t)).unwrap(), t);
        assert!(time_key(t) < time_key(t + chrono::Duration::seconds(1)));
        assert!(parse_time_key("nope").is_err());
    }
}
