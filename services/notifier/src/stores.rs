//! [`RecordStore`] on the real backends.
//!
//! * **DynamoDB** ([`DynamoRecords`]): items in the state table of a
//!   [`raincast_store::DynamoStore`], partition `pk = "notifier"`, sort key
//!   `sk` = the record key, attributes `v` (JSON text), `ver` (number) and
//!   `ttl` (epoch seconds, refreshed on every write; records of a quiet place
//!   disappear after [`RECORD_RETENTION_DAYS`]). Writes are conditional
//!   (`attribute_not_exists(pk)` for new records, `ver = :expected` for
//!   updates), reads are strongly consistent, listing is one `Query` with
//!   `begins_with(sk, prefix)` on the one partition.
//! * **Embedded** ([`RedbRecords`]): a redb file of its own (redb allows one
//!   open handle per file, and the scans' file belongs to the
//!   [`raincast_store::EmbeddedStore`]); one table `notifier_records`,
//!   key → `(version, JSON)`, compare-and-set inside a write transaction.

use crate::claims::{RecordStore, StoreError, Versioned};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use chrono::Utc;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How long notifier records live in DynamoDB after their last write.
pub const RECORD_RETENTION_DAYS: i64 = 30;
/// Partition key of every notifier record in the state table.
pub const DYNAMO_PARTITION: &str = "notifier";

const RECORDS: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("notifier_records");

fn backend(key: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        key: key.to_string(),
        message: e.to_string(),
    }
}

/// Notifier records in the DynamoDB state table.
#[derive(Debug, Clone)]
pub struct DynamoRecords {
    client: Client,
    table: String,
}

impl DynamoRecords {
    /// Records in the state table of `store`.
    pub fn new(store: &raincast_store::DynamoStore) -> Self {
        Self {
            client: store.client().clone(),
            table: store.table_names().1.to_string(),
        }
    }

    fn item_to_versioned(
        key: &str,
        item: &std::collections::HashMap<String, AttributeValue>,
    ) -> Result<Versioned, StoreError> {
        let corrupt = |m: &str| StoreError::Corrupt {
            key: key.to_string(),
            message: m.to_string(),
        };
        let value = item
            .get("v")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| corrupt("attribute v missing"))?
            .clone();
        let version = item
            .get("ver")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| corrupt("attribute ver missing"))?;
        Ok(Versioned { value, version })
    }

    fn live(item: &std::collections::HashMap<String, AttributeValue>) -> bool {
        // TTL deletes lazily: drop expired items on read.
        item.get("ttl")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok())
            .is_none_or(|t| t > Utc::now().timestamp())
    }
}

impl RecordStore for DynamoRecords {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let resp = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(DYNAMO_PARTITION.into()))
            .key("sk", AttributeValue::S(key.into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend(key, aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
        match resp.item() {
            Some(item) if Self::live(item) => Ok(Some(Self::item_to_versioned(key, item)?)),
            _ => Ok(None),
        }
    }

    async fn put(&self, key: &str, value: &str, expected: Option<u64>) -> Result<u64, StoreError> {
        let version = expected.unwrap_or(0) + 1;
        let ttl = Utc::now().timestamp() + RECORD_RETENTION_DAYS * 86_400;
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(DYNAMO_PARTITION.into()))
            .item("sk", AttributeValue::S(key.into()))
            .item("v", AttributeValue::S(value.into()))
            .item("ver", AttributeValue::N(version.to_string()))
            .item("ttl", AttributeValue::N(ttl.to_string()));
        req = match expected {
            None => req.condition_expression("attribute_not_exists(pk)"),
            Some(v) => req
                .condition_expression("#ver = :expected")
                .expression_attribute_names("#ver", "ver")
                .expression_attribute_values(":expected", AttributeValue::N(v.to_string())),
        };
        match req.send().await {
            Ok(_) => Ok(version),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::Conflict {
                    key: key.to_string(),
                })
            }
            Err(e) => Err(backend(
                key,
                aws_sdk_dynamodb::error::DisplayErrorContext(e),
            )),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let resp = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
                .expression_attribute_values(":pk", AttributeValue::S(DYNAMO_PARTITION.into()))
                .expression_attribute_values(":p", AttributeValue::S(prefix.into()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| backend(prefix, aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
            for item in resp.items() {
                if !Self::live(item) {
                    continue;
                }
                let key = item
                    .get("sk")
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default();
                let v = Self::item_to_versioned(&key, item)?;
                out.push((key, v));
            }
            match resp.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// Notifier records in a redb file of their own.
#[derive(Clone)]
pub struct RedbRecords {
    db: Arc<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for RedbRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbRecords")
            .field("path", &self.path)
            .finish()
    }
}

impl RedbRecords {
    /// Opens or creates the file (and its folder).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let key = path.display().to_string();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| backend(&key, e))?;
        }
        let db = Database::create(&path).map_err(|e| backend(&key, e))?;
        let txn = db.begin_write().map_err(|e| backend(&key, e))?;
        txn.open_table(RECORDS).map_err(|e| backend(&key, e))?;
        txn.commit().map_err(|e| backend(&key, e))?;
        Ok(Self {
            db: Arc::new(db),
            path,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn run<T: Send + 'static>(
        &self,
        key: &str,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| backend(key, e))?
    }
}

impl RecordStore for RedbRecords {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let k = key.to_string();
        self.run(key, move |db| {
            let txn = db.begin_read().map_err(|e| backend(&k, e))?;
            let table = txn.open_table(RECORDS).map_err(|e| backend(&k, e))?;
            let got = table.get(k.as_str()).map_err(|e| backend(&k, e))?;
            Ok(got.map(|g| {
                let (version, bytes) = g.value();
                Versioned {
                    value: String::from_utf8_lossy(bytes).into_owned(),
                    version,
                }
            }))
        })
        .await
    }

    async fn put(&self, key: &str, value: &str, expected: Option<u64>) -> Result<u64, StoreError> {
        let (k, v) = (key.to_string(), value.to_string());
        self.run(key, move |db| {
            let txn = db.begin_write().map_err(|e| backend(&k, e))?;
            let version = {
                let mut table = txn.open_table(RECORDS).map_err(|e| backend(&k, e))?;
                let current = table
                    .get(k.as_str())
                    .map_err(|e| backend(&k, e))?
                    .map(|g| g.value().0);
                if current != expected {
                    return Err(StoreError::Conflict { key: k.clone() });
                }
                let version = current.unwrap_or(0) + 1;
                table
                    .insert(k.as_str(), (version, v.as_bytes()))
                    .map_err(|e| backend(&k, e))?;
                version
            };
            txn.commit().map_err(|e| backend(&k, e))?;
            Ok(version)
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, StoreError> {
        let p = prefix.to_string();
        self.run(prefix, move |db| {
            let txn = db.begin_read().map_err(|e| backend(&p, e))?;
            let table = txn.open_table(RECORDS).map_err(|e| backend(&p, e))?;
            let mut out = Vec::new();
            for entry in table.range(p.as_str()..).map_err(|e| backend(&p, e))? {
                let (k, v) = entry.map_err(|e| backend(&p, e))?;
                let key = k.value().to_string();
                if !key.starts_with(&p) {
                    break;
                }
                let (version, bytes) = v.value();
                out.push((
                    key,
                    Versioned {
                        value: String::from_utf8_lossy(bytes).into_owned(),
                        version,
                    },
                ));
            }
            Ok(out)
        })
        .await
    }
}

/// The conformance suite every [`RecordStore`] passes.
#[cfg(test)]
pub(crate) async fn record_store_suite<S: RecordStore>(s: &S, ns: &str) {
    let k = |n: &str| format!("{ns}{n}");
    assert_eq!(s.get(&k("a")).await.expect("get"), None);
    assert_eq!(s.put(&k("a"), "{\"n\":1}", None).await, Ok(1));
    assert!(matches!(
        s.put(&k("a"), "{}", None).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        s.put(&k("a"), "{}", Some(5)).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        s.put(&k("new"), "{}", Some(1)).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(s.put(&k("a"), "{\"n\":2}", Some(1)).await, Ok(2));
    let got = s.get(&k("a")).await.expect("get").expect("present");
    assert_eq!((got.value.as_str(), got.version), ("{\"n\":2}", 2));
    for n in ["b/2", "b/1", "b/10", "c"] {
        s.put(&k(n), n, None).await.expect("put");
    }
    let listed: Vec<String> = s
        .list(&k("b/"))
        .await
        .expect("list")
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert_eq!(listed, vec![k("b/1"), k("b/10"), k("b/2")]);
    assert!(s.list(&k("zzz")).await.expect("list").is_empty());
    // Concurrent creates: exactly one wins.
    let race = k("race");
    let (r1, r2) = tokio::join!(s.put(&race, "1", None), s.put(&race, "2", None));
    assert_eq!(usize::from(r1.is_ok()) + usize::from(r2.is_ok()), 1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::{MemoryStore, OverlayStore};
    use raincast_testkit::{Server, TempDir};

    #[tokio::test]
    async fn memory_and_overlay_conform() {
        record_store_suite(&MemoryStore::new(), "m/").await;
        let base = MemoryStore::new();
        base.put("o/a", "{}", None).await.expect("seed");
        let o = OverlayStore::new(base);
        // The overlay sees "o/a" at version 1 already; use another namespace.
        record_store_suite(&o, "p/").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redb_conforms_and_persists() {
        let dir = TempDir::new("notifier-redb");
        let path = dir.path().join("sub/notifier.redb");
        {
            let s = RedbRecords::open(&path).expect("open");
            record_store_suite(&s, "r/").await;
        }
        let s = RedbRecords::open(&path).expect("reopen");
        assert_eq!(s.get("r/a").await.expect("get").map(|v| v.version), Some(2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dynamodb_conforms_on_dynalite() {
        let Some(server) = Server::dynalite() else {
            return;
        };
        let sdk = raincast_store::aws::sdk_config_for_endpoint(&server.endpoint(), 3).await;
        let store = raincast_store::DynamoStore::connect(
            &sdk,
            &raincast_store::DynamoOptions {
                table_prefix: "notifier-".into(),
                create_tables: true,
                retention: chrono::Duration::days(7),
            },
        )
        .await
        .expect("connect");
        let s = DynamoRecords::new(&store);
        record_store_suite(&s, "d/").await;
        // Listing pages through more than one response page.
        let big = "x".repeat(9_000);
        for i in 0..130 {
            s.put(&format!("page/{i:03}"), &big, None)
                .await
                .expect("put");
        }
        assert_eq!(s.list("page/").await.expect("list").len(), 130);
    }
}
