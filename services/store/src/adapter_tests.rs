//! Every adapter against its conformance suite: embedded ones always, S3 and
//! DynamoDB against real servers (moto, dynalite) started by the tests.

#![allow(clippy::unwrap_used)]

use crate::aws::sdk_config_for_endpoint;
use crate::conformance::{sample_scan, scan_source_suite, scan_store_suite, state_store_suite};
use crate::dynamo::limits::{item_size, Item, MAX_BATCH_ITEMS, MAX_ITEM_BYTES};
use crate::{
    DynamoOptions, DynamoStore, EmbeddedStore, LocalSource, PutOutcome, S3Source, ScanSource,
    ScanStore, StateStore, StoreError,
};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use chrono::{Duration, TimeZone, Utc};
use raincast_testkit::{Server, TempDir};

fn retention() -> Duration {
    Duration::days(7)
}

async fn dynamo_on(server: &Server, prefix: &str) -> DynamoStore {
    let sdk = sdk_config_for_endpoint(&server.endpoint(), 3).await;
    DynamoStore::connect(
        &sdk,
        &DynamoOptions {
            table_prefix: prefix.into(),
            create_tables: true,
            retention: retention(),
        },
    )
    .await
    .unwrap()
}

/// The purger runs on its own schedule, not only at start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_purger_drops_expired_scans_on_schedule() {
    let dir = TempDir::new("purger");
    // A retention long enough that the scan is surely still there when it
    // is first counted, even on a loaded machine (CI once took more than
    // 200 ms between the write and the count), short enough for a test.
    let store = EmbeddedStore::open(dir.path().join("p.redb"), Duration::seconds(3))
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = store.spawn_purger(std::time::Duration::from_millis(100), rx);
    let scan = crate::conformance::sample_scan("purge-radar", Utc::now(), 2, 100);
    assert_eq!(
        store.put_scan(&scan, Utc::now()).await.unwrap(),
        crate::PutOutcome::Stored
    );
    // Expired after 3 s; the purger (every 100 ms) deletes it.
    let started = std::time::Instant::now();
    assert_eq!(store.stored_manifests().await.unwrap(), 1);
    while store.stored_manifests().await.unwrap() > 0 {
        assert!(started.elapsed().as_secs() < 20, "the purger never ran");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tx.send(true).unwrap();
    task.await.unwrap();
}

/// Quarantine records expire with the retention, as DynamoDB's TTL drops
/// them: the embedded store hides and purges them too, rather than keeping
/// every record ever written and reading them all at every ingest run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_drops_quarantine_records_past_the_retention() {
    let dir = TempDir::new("purge-quarantine");
    let store = EmbeddedStore::open(dir.path().join("q.redb"), retention())
        .await
        .unwrap();
    let now = Utc::now();
    let record = |key: &str, age: Duration| crate::QuarantineRecord {
        radar: "qp".into(),
        key: key.into(),
        reason_code: "bad_magic".into(),
        reason: "not a scan".into(),
        time: None,
        recorded_at: now - age,
        size: Some(3),
        modified: None,
    };
    let old = record("qp/old.h5", retention() + Duration::hours(1));
    let recent = record("qp/recent.h5", Duration::hours(1));
    store.quarantine(&old).await.unwrap();
    store.quarantine(&recent).await.unwrap();
    assert_eq!(
        store.list_quarantined("qp").await.unwrap(),
        vec![recent.clone()]
    );
    assert_eq!(store.stored_quarantine_records().await.unwrap(), 2);
    store.purge_expired(now).await.unwrap();
    assert_eq!(
        store.stored_quarantine_records().await.unwrap(),
        1,
        "the old record is deleted from the file"
    );
    assert_eq!(store.list_quarantined("qp").await.unwrap(), vec![recent]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_conforms() {
    let dir = TempDir::new("embedded");
    let store = EmbeddedStore::open(dir.path().join("sub/raincast.redb"), retention())
        .await
        .unwrap();
    scan_store_suite(&store, retention(), true).await;
    state_store_suite(&store, true).await;
    // Reopening the file keeps everything.
    let path = store.path().to_path_buf();
    drop(store);
    let store = EmbeddedStore::open(path, retention()).await.unwrap();
    let now = Utc::now();
    assert!(store.latest("conf-radar", now).await.unwrap().is_some());
    // TTL: purging deletes what readers already hide.
    // The suite stored 5 scans, the last one again after the others expired.
    let later = now + retention() + Duration::days(1);
    assert_eq!(store.purge_expired(later).await.unwrap(), 4);
    let left = store
        .list_scans("conf-radar", now - Duration::days(30000), later, now)
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(store.purge_expired(later).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_source_conforms() {
    let dir = TempDir::new("local-source");
    let root = dir.path().join("bucket");
    let src = LocalSource::new(&root);
    let r = root.clone();
    scan_source_suite(
        &src,
        |key, bytes| {
            let path = r.join(&key);
            async move {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, bytes).unwrap();
            }
        },
        1005,
    )
    .await;
    // Hidden files (a writer's temporary names) are never listed.
    std::fs::write(root.join("r1/2018/06/16/.partial.tmp"), b"x").unwrap();
    assert_eq!(src.list("r1/2018/06/16/", None).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_source_conforms_on_moto() {
    let Some(moto) = Server::moto() else { return };
    let sdk = sdk_config_for_endpoint(&moto.endpoint(), 3).await;
    let src = S3Source::new(&sdk, "raw-scans", "radars/", true);
    src.client()
        .create_bucket()
        .bucket("raw-scans")
        .send()
        .await
        .unwrap();
    // An object outside the source prefix must never show up.
    src.client()
        .put_object()
        .bucket("raw-scans")
        .key("elsewhere/r1/x.h5")
        .body(Vec::from(&b"x"[..]).into())
        .send()
        .await
        .unwrap();
    let client = src.client().clone();
    scan_source_suite(
        &src,
        |key, bytes| {
            let client = client.clone();
            async move {
                client
                    .put_object()
                    .bucket("raw-scans")
                    .key(format!("radars/{key}"))
                    .body(bytes.into())
                    .send()
                    .await
                    .unwrap();
            }
        },
        1005,
    )
    .await;
    assert_eq!(src.describe(), "s3://raw-scans/radars/");
    // Keys named by event notifications map to source keys, or to nothing.
    assert_eq!(
        src.relative_key("raw-scans", "radars/r1/x.h5").as_deref(),
        Some("r1/x.h5")
    );
    assert_eq!(src.relative_key("raw-scans", "elsewhere/r1/x.h5"), None);
    assert_eq!(src.relative_key("other-bucket", "radars/r1/x.h5"), None);
    assert_eq!(src.relative_key("raw-scans", "radars/"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_queue_conforms_on_moto() {
    let Some(moto) = Server::moto() else { return };
    let sdk = sdk_config_for_endpoint(&moto.endpoint(), 3).await;
    let created = aws_sdk_sqs::Client::new(&sdk)
        .create_queue()
        .queue_name("conformance")
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "60",
        )
        .send()
        .await
        .unwrap();
    let q = crate::SqsQueue::new(&sdk, created.queue_url().unwrap()).unwrap();
    crate::conformance::message_queue_suite(&q).await;
    assert!(crate::SqsQueue::new(&sdk, "not a url").is_err());
    assert!(crate::SqsQueue::new(&sdk, "https://sqs.eu-west-1.amazonaws.com/").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_store_conforms_on_moto() {
    let Some(moto) = Server::moto() else { return };
    let store = dynamo_on(&moto, "conf-").await;
    scan_store_suite(&store, retention(), false).await;
    state_store_suite(&store, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_store_conforms_on_dynalite() {
    let Some(dynalite) = Server::dynalite() else {
        return;
    };
    let store = dynamo_on(&dynalite, "conf-").await;
    scan_store_suite(&store, retention(), true).await;
    state_store_suite(&store, true).await;
    // Listing records pages through more than one response (1 MB each).
    let big = "x".repeat(9_000);
    for i in 0..130 {
        store
            .put_record(&format!("page/{i:03}"), &big, None)
            .await
            .unwrap();
    }
    let listed = store.list_records("page/").await.unwrap();
    assert_eq!(listed.len(), 130);
    assert_eq!(listed[129].0, "page/129");
}

/// A scan listing reads only what its entries hold: not the header, the
/// digest, the source or the tile index of the manifests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_listings_read_only_the_listed_attributes() {
    let Some(dynalite) = Server::dynalite() else {
        return;
    };
    let store = dynamo_on(&dynalite, "proj-").await;
    let now = Utc::now();
    let time = Utc.with_ymd_and_hms(2024, 6, 16, 10, 0, 0).unwrap();
    let scan = sample_scan("proj-radar", time, 3, 100);
    store.put_scan(&scan, now).await.unwrap();
    let range = ("0", "9");
    let items = store
        .query_index("proj-radar", range, false, 10, true, now)
        .await
        .unwrap();
    assert_eq!(items.len(), 1);
    let mut names: Vec<&str> = items[0].keys().map(String::as_str).collect();
    names.sort_unstable();
    let mut expected = crate::dynamo::item::ENTRY_ATTRIBUTES.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected);
    let entries = store
        .list_entries("proj-radar", time, time, 10, now)
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].tiles, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_tables_are_an_error_without_the_create_flag() {
    let Some(dynalite) = Server::dynalite() else {
        return;
    };
    let sdk = sdk_config_for_endpoint(&dynalite.endpoint(), 1).await;
    let err = DynamoStore::connect(&sdk, &DynamoOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("raincast-scans"), "{err}");
    // Creating twice (two instances starting together) is fine.
    let opts = DynamoOptions {
        create_tables: true,
        ..DynamoOptions::default()
    };
    let (a, b) = tokio::join!(
        DynamoStore::connect(&sdk, &opts),
        DynamoStore::connect(&sdk, &opts)
    );
    a.unwrap();
    b.unwrap();
    DynamoStore::connect(&sdk, &DynamoOptions::default())
        .await
        .unwrap();
}

fn blob_item(pk: &str, sk: &str, total: usize) -> Item {
    // Only S and B attributes: their sizes are exact, so the item is exactly
    // `total` bytes by DynamoDB's rules.
    let fixed = "pk".len() + pk.len() + "sk".len() + sk.len() + "b".len();
    let mut it = Item::new();
    it.insert("pk".into(), AttributeValue::S(pk.into()));
    it.insert("sk".into(), AttributeValue::S(sk.into()));
    it.insert(
        "b".into(),
        AttributeValue::B(Blob::new(vec![7u8; total - fixed])),
    );
    assert_eq!(item_size(&it), total);
    it
}

/// The 400 KB and 25-item limits, against dynalite, which enforces DynamoDB's
/// exact limits: the code's size count agrees with the server, oversize items
/// never reach it, and batches of any length are split.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynalite_agrees_with_the_enforced_limits() {
    let Some(dynalite) = Server::dynalite() else {
        return;
    };
    let store = dynamo_on(&dynalite, "limits-").await;
    let (scans, _) = store.table_names();
    let scans = scans.to_string();
    let client = store.client().clone();

    // Exactly 400 KB: accepted by the code and by the server.
    let max = blob_item("r", "max", MAX_ITEM_BYTES);
    store.batch_put(&scans, vec![max.clone()]).await.unwrap();
    client
        .put_item()
        .table_name(&scans)
        .set_item(Some(max))
        .send()
        .await
        .unwrap();

    // One byte more: refused by the code before sending ...
    let over = blob_item("r", "over", MAX_ITEM_BYTES + 1);
    let err = store
        .batch_put(&scans, vec![over.clone()])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::TooLarge { size, .. } if size == MAX_ITEM_BYTES + 1),
        "{err}"
    );
    // ... and by the server when sent anyway: the two counts agree.
    let raw = client
        .put_item()
        .table_name(&scans)
        .set_item(Some(over))
        .send()
        .await;
    let msg = format!("{:?}", raw.unwrap_err());
    assert!(
        msg.contains("ValidationException") && msg.contains("size"),
        "{msg}"
    );

    // 26 requests in one raw batch: refused by the server ...
    let items: Vec<Item> = (0..MAX_BATCH_ITEMS + 1)
        .map(|i| blob_item("r", &format!("b{i:03}"), 1000))
        .collect();
    let requests: Vec<WriteRequest> = items
        .iter()
        .map(|it| {
            WriteRequest::builder()
                .put_request(
                    PutRequest::builder()
                        .set_item(Some(it.clone()))
                        .build()
                        .unwrap(),
                )
                .build()
        })
        .collect();
    let raw = client
        .batch_write_item()
        .request_items(&scans, requests)
        .send()
        .await;
    let msg = format!("{:?}", raw.unwrap_err());
    assert!(
        msg.contains("ValidationException") && msg.contains("25"),
        "{msg}"
    );
    // ... while the code splits it into 25 + 1.
    store.batch_put(&scans, items).await.unwrap();
    let got = client
        .query()
        .table_name(&scans)
        .key_condition_expression("pk = :r AND begins_with(sk, :b)")
        .expression_attribute_values(":r", AttributeValue::S("r".into()))
        .expression_attribute_values(":b", AttributeValue::S("b".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(got.count(), (MAX_BATCH_ITEMS + 1) as i32);

    // A scan whose tiles need many items and batches stores and reads back.
    let scan = sample_scan(
        "limits",
        Utc.with_ymd_and_hms(2018, 6, 16, 10, 0, 0).unwrap(),
        60,
        9_000,
    );
    let mut big = scan.clone();
    big.tiles[0].bytes = vec![3; 900_000];
    let now = Utc::now();
    assert_eq!(store.put_scan(&big, now).await.unwrap(), PutOutcome::Stored);
    let back = store
        .get_scan("limits", big.time, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.tiles.len(), 60);
    assert_eq!(
        back.tiles.iter().map(|t| t.bytes.len()).sum::<usize>() as u64 + big.header.len() as u64,
        big.payload_bytes()
    );
}

/// moto accepts 26-item batches, so the split must come from the code: a
/// long scan still stores correctly there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_batches_are_split_by_the_code() {
    let Some(moto) = Server::moto() else { return };
    let store = dynamo_on(&moto, "limits-").await;
    let (scans, _) = store.table_names();
    let items: Vec<Item> = (0..3 * MAX_BATCH_ITEMS + 2)
        .map(|i| blob_item("r", &format!("b{i:03}"), 500))
        .collect();
    assert_eq!(store.batch_put(scans, items).await.unwrap(), 0);
}

/// What a crash between the tile writes and the manifest leaves behind is
/// invisible, and the next put completes the scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftover_tiles_without_manifest_are_invisible_and_harmless() {
    let Some(dynalite) = Server::dynalite() else {
        return;
    };
    let store = dynamo_on(&dynalite, "crash-").await;
    let t = Utc.with_ymd_and_hms(2018, 6, 16, 10, 0, 0).unwrap();
    let scan = sample_scan("crash", t, 40, 2_000);
    let now = Utc::now();
    store.put_tiles_only(&scan, now).await.unwrap();
    assert!(store.get_scan("crash", t, now).await.unwrap().is_none());
    assert!(store.latest("crash", now).await.unwrap().is_none());
    assert!(store
        .list_scans("crash", t, t, now)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .get_tile("crash", t, 0, 0, now)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store.put_scan(&scan, now).await.unwrap(),
        PutOutcome::Stored
    );
    let back = store.get_scan("crash", t, now).await.unwrap().unwrap();
    assert_eq!(back.tiles.len(), 40);
    assert_eq!(
        store.put_scan(&scan, now).await.unwrap(),
        PutOutcome::AlreadyStored
    );
}
