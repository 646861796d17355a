//! DynamoDB's hard limits, enforced in code before anything is sent.
//!
//! * An item is at most 400 KB ([`MAX_ITEM_BYTES`] = 409,600 bytes), counting
//!   attribute names and values ([`item_size`]).
//! * A BatchWriteItem carries at most 25 requests ([`MAX_BATCH_ITEMS`]).
//! * Items a batch could not write come back as `UnprocessedItems` and are
//!   sent again with exponential backoff ([`write_with_retries`]).
//!
//! Emulators differ from DynamoDB (moto accepts 26-item batches and rejects
//! valid items between 405 KB and 409.6 KB), so the code does not rely on the
//! server to say no: tiles are cut into parts of at most
//! [`MAX_TILE_PART_BYTES`], well below every server's limit.

use crate::error::{StoreError, StoreResult};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

/// DynamoDB's maximum item size: 400 KB, names plus values.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// DynamoDB's maximum number of requests in one BatchWriteItem.
pub const MAX_BATCH_ITEMS: usize = 25;
/// Largest slice of one tile stored in one item. With the key attributes
/// (under 200 bytes) an item stays below 381 KB, clear of moto's early
/// rejections above 405 KB.
pub const MAX_TILE_PART_BYTES: usize = 380_000;
// A tile part plus its keys stays clear of moto's early rejections (405 KB).
const _: () = assert!(MAX_TILE_PART_BYTES + 1024 < 405_000);

/// Attempts at writing the unprocessed rest of one batch before giving up.
pub const MAX_UNPROCESSED_ATTEMPTS: u32 = 8;

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// The size DynamoDB charges for an item, following its documented rules:
/// attribute names and strings by UTF-8 length, binaries by length, numbers
/// by about one byte per two significant digits plus one (counted
/// generously here), booleans and nulls one byte, lists and maps three bytes
/// plus one per element plus their contents.
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(v) => v.iter().map(|s| s.len()).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(v) => 3 + v.iter().map(|e| 1 + value_size(e)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, e)| 1 + k.len() + value_size(e))
                .sum::<usize>()
        }
        // Unknown future variants: assume the worst a scalar can cost.
        _ => 400,
    }
}

/// Conservative size of a number: one byte per two digits, plus one, at most 21.
fn number_size(n: &str) -> usize {
    let digits = n.bytes().filter(|b| b.is_ascii_digit()).count();
    (digits.div_ceil(2) + 1).min(21)
}

/// Rejects an item DynamoDB would refuse for its size.
pub fn check_item(what: &str, item: &Item) -> StoreResult<()> {
    let size = item_size(item);
    if size > MAX_ITEM_BYTES {
        return Err(StoreError::TooLarge {
            what: what.to_string(),
            size,
            limit: MAX_ITEM_BYTES,
        });
    }
    Ok(())
}

/// Splits `items` into BatchWriteItem-sized chunks (at most 25 each), in order.
pub fn chunk_batches<T>(items: Vec<T>) -> Vec<Vec<T>> {
    let mut out = Vec::with_capacity(items.len().div_ceil(MAX_BATCH_ITEMS));
    let mut cur = Vec::with_capacity(MAX_BATCH_ITEMS.min(items.len()));
    for it in items {
        cur.push(it);
        if cur.len() == MAX_BATCH_ITEMS {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Splits tile bytes into parts of at most [`MAX_TILE_PART_BYTES`]; an empty
/// tile is one empty part.
pub fn tile_parts(bytes: &[u8]) -> Vec<&[u8]> {
    if bytes.is_empty() {
        return vec![bytes];
    }
    bytes.chunks(MAX_TILE_PART_BYTES).collect()
}

/// Delay before retry number `attempt` (1-based): 50 ms doubling, capped at
/// 5 s, with up to 50 % jitter so that competing writers spread out.
pub fn backoff(attempt: u32) -> Duration {
    let base_ms = 50u64
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(16))
        .min(5_000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let jitter = nanos % (base_ms / 2 + 1);
    Duration::from_millis(base_ms + jitter)
}

/// Writes `requests` in batches of at most 25 through `send`, which sends one
/// batch and returns the requests the server left unprocessed. Unprocessed
/// requests are sent again after [`backoff`], up to
/// [`MAX_UNPROCESSED_ATTEMPTS`] times per batch. Returns the number of
/// retries made.
pub async fn write_with_retries<T, F, Fut>(requests: Vec<T>, mut send: F) -> StoreResult<u32>
where
    F: FnMut(Vec<T>) -> Fut,
    Fut: Future<Output = StoreResult<Vec<T>>>,
{
    let mut retries = 0;
    for batch in chunk_batches(requests) {
        debug_assert!(batch.len() <= MAX_BATCH_ITEMS);
        let mut pending = batch;
        let mut attempt = 0;
        loop {
            let left = send(pending).await?;
            if left.is_empty() {
                break;
            }
            attempt += 1;
            if attempt > MAX_UNPROCESSED_ATTEMPTS {
                return Err(StoreError::Unavailable {
                    backend: "dynamodb",
                    op: "BatchWriteItem",
                    reason: format!(
                        "{} items still unprocessed after {MAX_UNPROCESSED_ATTEMPTS} retries",
                        left.len()
                    ),
                });
            }
            retries += 1;
            tracing::debug!(left = left.len(), attempt, "retrying unprocessed items");
            tokio::time::sleep(backoff(attempt)).await;
            pending = left;
        }
    }
    Ok(retries)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::primitives::Blob;

    fn item_with_blob(n: usize) -> Item {
        let mut it = Item::new();
        it.insert("pk".into(), AttributeValue::S("bom02".into()));
        it.insert("b".into(), AttributeValue::B(Blob::new(vec![0u8; n])));
        it
    }

    #[test]
    fn item_size_counts_names_and_values() {
        // "pk" + "bom02" + "b" + 10 bytes
        assert_eq!(item_size(&item_with_blob(10)), 2 + 5 + 1 + 10);
        let mut it = Item::new();
        it.insert("n".into(), AttributeValue::N("1234567".into()));
        it.insert("f".into(), AttributeValue::Bool(true));
        it.insert(
            "l".into(),
            AttributeValue::L(vec![AttributeValue::S("ab".into())]),
        );
        assert_eq!(item_size(&it), (1 + 5) + (1 + 1) + (1 + 3 + 1 + 2));
        assert_eq!(number_size(&"9".repeat(60)), 21);
    }

    #[test]
    fn items_over_400_kb_are_rejected_before_sending() {
        let overhead = 2 + 5 + 1;
        assert!(check_item("x", &item_with_blob(MAX_ITEM_BYTES - overhead)).is_ok());
        let err = check_item("tile", &item_with_blob(MAX_ITEM_BYTES - overhead + 1)).unwrap_err();
        assert!(matches!(err, StoreError::TooLarge { size, limit, .. } if size == limit + 1));
    }

    #[test]
    fn batches_hold_at_most_25_items() {
        let sizes = |n: usize| {
            chunk_batches((0..n).collect::<Vec<_>>())
                .iter()
                .map(Vec::len)
                .collect::<Vec<_>>()
        };
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(25), vec![25]);
        assert_eq!(sizes(26), vec![25, 1]);
        assert_eq!(sizes(101), vec![25, 25, 25, 25, 1]);
        // Order is kept.
        let flat: Vec<usize> = chunk_batches((0..60).collect()).concat();
        assert_eq!(flat, (0..60).collect::<Vec<_>>());
    }

    #[test]
    fn tiles_are_cut_into_parts_below_the_item_limit() {
        let big = vec![7u8; 2 * MAX_TILE_PART_BYTES + 5];
        let parts = tile_parts(&big);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2].len(), 5);
        assert!(parts.iter().all(|p| p.len() <= MAX_TILE_PART_BYTES));
        assert_eq!(parts.concat(), big);
        assert_eq!(tile_parts(&[]).len(), 1);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) >= Duration::from_millis(50) && backoff(1) <= Duration::from_millis(75));
        assert!(backoff(3) >= Duration::from_millis(200));
        assert!(backoff(40) <= Duration::from_millis(7_500));
    }

    #[tokio::test(start_paused = true)]
    async fn unprocessed_items_are_retried_until_written() {
        // A fake server that leaves the last two items of each batch
        // unprocessed the first time it sees them.
        let mut seen = std::collections::HashSet::new();
        let mut written = Vec::new();
        let mut batch_sizes = Vec::new();
        let retries = write_with_retries((0..30).collect::<Vec<u32>>(), |batch| {
            batch_sizes.push(batch.len());
            let mut left = Vec::new();
            let n = batch.len();
            for (i, x) in batch.into_iter().enumerate() {
                if i + 2 >= n && seen.insert(x) {
                    left.push(x);
                } else {
                    written.push(x);
                }
            }
            async move { Ok(left) }
        })
        .await
        .unwrap();
        written.sort_unstable();
        assert_eq!(written, (0..30).collect::<Vec<_>>());
        assert!(batch_sizes.iter().all(|&n| n <= MAX_BATCH_ITEMS));
        assert_eq!(batch_sizes, vec![25, 2, 5, 2]);
        assert_eq!(retries, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_never_accepts_gives_an_error() {
        let err = write_with_retries(vec![1, 2, 3], |b| async move { Ok(b) })
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err}");
    }
}
