//! The API against a real DynamoDB-compatible server (dynalite) that stops
//! answering: the readiness probe must say so quickly, not hang with it.

#![allow(clippy::unwrap_used)]

mod common;

use common::{expect_problem, get, RADAR};
use raincast_api::{AppState, RadarInfo};
use raincast_nowcast::{NowcastService, NowcastSettings};
use raincast_store::aws::sdk_config_for_endpoint;
use raincast_store::{DynamoOptions, DynamoStore};
use raincast_testkit::{Server, TcpProxy};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A store that hangs (accepts connections, never answers: a frozen server,
/// a black-holed network) gets `/readyz` a 503 `store_unreachable` within
/// its store timeout (`READY_STORE_TIMEOUT`, 3 s), where the SDK alone would
/// wait 30 s per attempt and a load balancer's probe would learn nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_store_unreachable_quickly_when_the_store_hangs() {
    let Some(dynalite) = Server::dynalite() else {
        return;
    };
    let proxy = TcpProxy::start(dynalite.addr()).await;
    let sdk = sdk_config_for_endpoint(&proxy.endpoint(), 3).await;
    let store = Arc::new(
        DynamoStore::connect(
            &sdk,
            &DynamoOptions {
                table_prefix: "ready-".into(),
                create_tables: true,
                retention: chrono::Duration::days(7),
            },
        )
        .await
        .unwrap(),
    );
    let state = AppState::builder(
        store.clone(),
        NowcastService::new(store.clone(), NowcastSettings::default()),
    )
    .radars(vec![RadarInfo {
        id: RADAR.into(),
        name: "Test radar".into(),
        location: None,
    }])
    .build()
    .unwrap();
    // Answering: no scan yet, so not ready for stale data (the store is fine).
    expect_problem(get(&state, "/readyz").await, 503, "stale_data").await;
    proxy.stall();
    let asked = Instant::now();
    expect_problem(get(&state, "/readyz").await, 503, "store_unreachable").await;
    let took = asked.elapsed();
    assert!(
        took >= raincast_api::READY_STORE_TIMEOUT && took < Duration::from_secs(8),
        "{took:?}"
    );
}
