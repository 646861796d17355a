//! The item codec: records as DynamoDB attribute values and back, and the
//! key layout of both tables (see the module documentation of
//! `dynamo`). Pure functions: nothing here talks to a server.

use super::limits::{check_item, tile_parts, Item};
use super::TTL_ATTRIBUTE;
use crate::error::{StoreError, StoreResult};
use crate::model::{
    parse_time_key, time_key, truncate_to_seconds, LeaseRecord, NewScan, ScanEntry, ScanManifest,
    TileRef, VersionedRecord,
};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, TimeZone, Utc};

/// Tile count of a manifest item (what a listing shows instead of the index).
const TILE_COUNT: &str = "nt";
/// The attributes a scan listing reads (see [`entry_from_item`]); the names
/// go through `#` placeholders because `BY` and `TTL` are reserved words.
pub(crate) const ENTRY_ATTRIBUTES: [&str; 6] = ["mt", "rc", "by", TILE_COUNT, "ing", TTL_ATTRIBUTE];

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn get_s<'a>(item: &'a Item, name: &str) -> StoreResult<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(StoreError::corrupt(
            "dynamodb item",
            format!("string attribute {name} missing"),
        )),
    }
}

pub(super) fn get_n(item: &Item, name: &str) -> StoreResult<i64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| StoreError::corrupt("dynamodb item", format!("number {name} = {v:?}"))),
        _ => Err(StoreError::corrupt(
            "dynamodb item",
            format!("number attribute {name} missing"),
        )),
    }
}

pub(super) fn get_b<'a>(item: &'a Item, name: &str) -> StoreResult<&'a [u8]> {
    match item.get(name) {
        Some(AttributeValue::B(v)) => Ok(v.as_ref()),
        _ => Err(StoreError::corrupt(
            "dynamodb item",
            format!("binary attribute {name} missing"),
        )),
    }
}

fn get_bool(item: &Item, name: &str) -> bool {
    matches!(item.get(name), Some(AttributeValue::Bool(true)))
}

pub(super) fn epoch(t: i64) -> StoreResult<DateTime<Utc>> {
    Utc.timestamp_opt(t, 0)
        .single()
        .ok_or_else(|| StoreError::corrupt("dynamodb item", format!("epoch {t}")))
}

fn epoch_ms(t: i64) -> StoreResult<DateTime<Utc>> {
    Utc.timestamp_millis_opt(t)
        .single()
        .ok_or_else(|| StoreError::corrupt("dynamodb item", format!("epoch ms {t}")))
}

/// Tile index in the manifest: 8 bytes per tile (row u16, col u16, len u32, LE).
fn encode_tile_index(tiles: &[TileRef]) -> Vec<u8> {
    let mut out = Vec::with_capacity(tiles.len() * 8);
    for t in tiles {
        out.extend_from_slice(&t.row.to_le_bytes());
        out.extend_from_slice(&t.col.to_le_bytes());
        out.extend_from_slice(&t.len.to_le_bytes());
    }
    out
}

fn decode_tile_index(b: &[u8]) -> StoreResult<Vec<TileRef>> {
    if !b.len().is_multiple_of(8) {
        return Err(StoreError::corrupt(
            "manifest",
            "tile index length not a multiple of 8",
        ));
    }
    Ok(b.chunks_exact(8)
        .map(|c| TileRef {
            row: u16::from_le_bytes([c[0], c[1]]),
            col: u16::from_le_bytes([c[2], c[3]]),
            len: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

/// The sort-key prefix of every tile part of one stored scan.
pub(super) fn tiles_prefix(time: DateTime<Utc>, digest: &str) -> String {
    format!("{}#{digest}#", time_key(time))
}

fn tile_sk(time: DateTime<Utc>, digest: &str, row: u16, col: u16, part: usize) -> String {
    format!("{}{row:05}.{col:05}#{part:02}", tiles_prefix(time, digest))
}

/// Parses `...#{row}.{col}#{part}` at the end of a tile sort key.
pub(super) fn parse_tile_sk(sk: &str) -> StoreResult<(u16, u16, usize)> {
    let bad = || StoreError::corrupt("tile key", sk.to_string());
    let mut it = sk.rsplit('#');
    let part = it.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    let (r, c) = it.next().ok_or_else(bad)?.split_once('.').ok_or_else(bad)?;
    Ok((
        r.parse().map_err(|_| bad())?,
        c.parse().map_err(|_| bad())?,
        part,
    ))
}

pub(super) fn manifest_item(m: &ScanManifest) -> Item {
    let tk = time_key(m.time);
    let mut it = Item::new();
    it.insert("pk".into(), s(&m.radar));
    it.insert("sk".into(), s(&tk));
    it.insert("mt".into(), s(&tk));
    it.insert("src".into(), s(&m.source_key));
    it.insert("fmt".into(), s(&m.format));
    it.insert("dg".into(), s(&m.digest));
    it.insert("hdr".into(), AttributeValue::B(Blob::new(m.header.clone())));
    it.insert("rc".into(), n(m.rain_cells as i64));
    it.insert(
        "tl".into(),
        AttributeValue::B(Blob::new(encode_tile_index(&m.tiles))),
    );
    it.insert("by".into(), n(m.bytes as i64));
    it.insert(TILE_COUNT.into(), n(m.tiles.len() as i64));
    it.insert("ing".into(), n(m.ingested_at.timestamp()));
    it.insert(TTL_ATTRIBUTE.into(), n(m.expires_at.timestamp()));
    it
}

pub(super) fn manifest_from_item(it: &Item) -> StoreResult<ScanManifest> {
    Ok(ScanManifest {
        radar: get_s(it, "pk")?.to_string(),
        time: parse_time_key(get_s(it, "mt")?)?,
        source_key: get_s(it, "src")?.to_string(),
        format: get_s(it, "fmt")?.to_string(),
        digest: get_s(it, "dg")?.to_string(),
        header: get_b(it, "hdr")?.to_vec(),
        rain_cells: get_n(it, "rc")?.max(0) as u64,
        tiles: decode_tile_index(get_b(it, "tl")?)?,
        bytes: get_n(it, "by")?.max(0) as u64,
        ingested_at: epoch(get_n(it, "ing")?)?,
        expires_at: epoch(get_n(it, TTL_ATTRIBUTE)?)?,
    })
}

/// A listing entry from a manifest item read with [`ENTRY_ATTRIBUTES`];
/// `None` for a manifest written before items carried their tile count.
pub(super) fn entry_from_item(it: &Item) -> StoreResult<Option<ScanEntry>> {
    if !it.contains_key(TILE_COUNT) {
        return Ok(None);
    }
    Ok(Some(ScanEntry {
        time: parse_time_key(get_s(it, "mt")?)?,
        rain_cells: get_n(it, "rc")?.max(0) as u64,
        bytes: get_n(it, "by")?.max(0) as u64,
        tiles: get_n(it, TILE_COUNT)?.max(0) as usize,
        ingested_at: epoch(get_n(it, "ing")?)?,
        expires_at: epoch(get_n(it, TTL_ATTRIBUTE)?)?,
    }))
}

/// Every item (one per tile part) that stores the tiles of `scan`.
pub(crate) fn tile_items(
    scan: &NewScan,
    digest: &str,
    expires_at: DateTime<Utc>,
) -> StoreResult<Vec<Item>> {
    let time = truncate_to_seconds(scan.time);
    let mut out = Vec::new();
    for tile in &scan.tiles {
        let parts = tile_parts(&tile.bytes);
        for (i, part) in parts.iter().enumerate() {
            let mut it = Item::new();
            it.insert("pk".into(), s(&scan.radar));
            it.insert("sk".into(), s(tile_sk(time, digest, tile.row, tile.col, i)));
            it.insert("b".into(), AttributeValue::B(Blob::new(part.to_vec())));
            it.insert("np".into(), n(parts.len() as i64));
            it.insert(TTL_ATTRIBUTE.into(), n(expires_at.timestamp()));
            check_item(&format!("tile ({}, {}) part {i}", tile.row, tile.col), &it)?;
            out.push(it);
        }
    }
    Ok(out)
}

/// Partition key of a radar's checkpoint, quarantine and attempt items.
pub(super) fn radar_pk(radar: &str) -> String {
    format!("radar#{radar}")
}

pub(super) fn lease_from_item(it: &Item) -> StoreResult<LeaseRecord> {
    Ok(LeaseRecord {
        owner: get_s(it, "owner")?.to_string(),
        until: epoch_ms(get_n(it, "until")?)?,
        released: get_bool(it, "released"),
    })
}

/// Partition of every versioned record in the state table (one partition,
/// so that a prefix listing is one `Query`).
pub(super) const RECORDS_PK: &str = "records";

/// A record item, or `None` once its TTL has passed (DynamoDB deletes lazily).
pub(super) fn record_from_item(
    it: &Item,
    now: DateTime<Utc>,
) -> StoreResult<Option<VersionedRecord>> {
    if get_n(it, TTL_ATTRIBUTE).is_ok_and(|t| t <= now.timestamp()) {
        return Ok(None);
    }
    Ok(Some(VersionedRecord {
        value: get_s(it, "v")?.to_string(),
        version: u64::try_from(get_n(it, "ver")?)
            .map_err(|_| StoreError::corrupt("record", "negative version"))?,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::dynamo::limits;
    use crate::model::Tile;
    use chrono::Duration;

    #[test]
    fn tile_keys_round_trip_and_sort() {
        let t = Utc.with_ymd_and_hms(2018, 6, 16, 10, 0, 0).unwrap();
        let a = tile_sk(t, "00ff", 3, 12, 0);
        assert_eq!(a, "2018-06-16T10:00:00Z#00ff#00003.00012#00");
        assert_eq!(parse_tile_sk(&a).unwrap(), (3, 12, 0));
        assert!(tile_sk(t, "00ff", 3, 12, 1) > a);
        assert!(tile_sk(t, "00ff", 3, 13, 0) > tile_sk(t, "00ff", 3, 12, 9));
        // The manifest key sorts before the tiles of its scan and after the
        // previous scan's.
        assert!(time_key(t) < a);
        assert!(parse_tile_sk("nonsense").is_err());
    }

    #[test]
    fn tile_index_round_trips() {
        let tiles = vec![
            TileRef {
                row: 1,
                col: 2,
                len: 300,
            },
            TileRef {
                row: 65535,
                col: 0,
                len: 0,
            },
        ];
        assert_eq!(
            decode_tile_index(&encode_tile_index(&tiles)).unwrap(),
            tiles
        );
        assert!(decode_tile_index(&[1, 2, 3]).is_err());
    }

    #[test]
    fn manifest_items_round_trip() {
        let scan = NewScan {
            radar: "bom02".into(),
            time: Utc.with_ymd_and_hms(2018, 6, 16, 10, 0, 0).unwrap(),
            source_key: "k".into(),
            format: "bom".into(),
            header: vec![1, 2],
            rain_cells: 3,
            tiles: vec![Tile {
                row: 0,
                col: 1,
                bytes: vec![5; 4],
            }],
        };
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let m = scan.manifest(now, now + Duration::days(7));
        assert_eq!(manifest_from_item(&manifest_item(&m)).unwrap(), m);
        // A listing reads only the entry's attributes.
        let mut projected = manifest_item(&m);
        projected.retain(|k, _| ENTRY_ATTRIBUTES.contains(&k.as_str()));
        assert_eq!(
            entry_from_item(&projected).unwrap(),
            Some(ScanEntry::from(&m))
        );
        projected.remove(TILE_COUNT);
        assert_eq!(entry_from_item(&projected).unwrap(), None);
    }

    #[test]
    fn big_tiles_become_several_items_under_the_limit() {
        let scan = NewScan {
            radar: "opera".into(),
            time: Utc.with_ymd_and_hms(2018, 8, 24, 18, 0, 0).unwrap(),
            source_key: "k".into(),
            format: "odim".into(),
            header: vec![],
            rain_cells: 1,
            tiles: vec![
                Tile {
                    row: 0,
                    col: 0,
                    bytes: vec![1; limits::MAX_TILE_PART_BYTES * 2 + 1],
                },
                Tile {
                    row: 0,
                    col: 1,
                    bytes: vec![2; 10],
                },
            ],
        };
        let items = tile_items(&scan, "d", Utc::now()).unwrap();
        assert_eq!(items.len(), 4);
        assert!(items
            .iter()
            .all(|i| limits::item_size(i) < limits::MAX_ITEM_BYTES));
    }
}
