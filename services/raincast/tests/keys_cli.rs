//! `raincast keys create|list|revoke` on the embedded store and on
//! DynamoDB (dynalite): the key is printed once, alone on the last line,
//! and only its hash is stored or logged.

#![allow(clippy::unwrap_used)]

mod common;

use raincast_store::keys;
use raincast_store::StateStore;
use raincast_testkit::{aws_env, Server, TempDir};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_raincast");

fn run(cmd: &mut Command, args: &[&str]) -> Output {
    let out = cmd
        .args(args)
        .env("RAINCAST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "raincast {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Creates, lists and revokes a key with `cmd()`; checks that the key
/// shows only on create's last stdout line; returns the key.
fn create_list_revoke(cmd: impl Fn() -> Command) -> String {
    let out = run(&mut cmd(), &["keys", "create", "--name", "weather app"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let key = stdout.lines().last().unwrap().trim().to_string();
    assert!(key.starts_with(keys::KEY_PREFIX), "{stdout}");
    assert_eq!(stdout.matches(&key).count(), 1, "printed once: {stdout}");
    assert!(!stderr.contains(&key), "the key reached the log: {stderr}");
    let id = keys::key_id(&key);
    assert!(
        stderr.contains(&id),
        "the log names the key by its id: {stderr}"
    );

    let out = run(&mut cmd(), &["keys", "list"]);
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(!listed.contains(&key) && !String::from_utf8_lossy(&out.stderr).contains(&key));
    let rows: Vec<serde_json::Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], id.as_str());
    assert_eq!(rows[0]["name"], "weather app");
    assert!(rows[0]["revoked_at"].is_null());

    run(&mut cmd(), &["keys", "revoke", &id]);
    let out = run(&mut cmd(), &["keys", "list"]);
    let row: serde_json::Value =
        serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    assert!(row["revoked_at"].is_string(), "{row}");

    let out = cmd()
        .args(["keys", "create", "--name", ""])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("key name"));
    key
}

/// Every stored record holds the hash, never the key.
async fn only_hashes_stored(state: &dyn StateStore, key: &str) {
    let records = state.list_records(keys::PREFIX).await.unwrap();
    assert_eq!(records.len(), 1);
    for (at, r) in records {
        assert!(at.ends_with(&keys::hash_key(key)));
        assert!(!at.contains(key) && !r.value.contains(key));
    }
}

#[tokio::test]
async fn keys_on_the_embedded_store() {
    let dir = TempDir::new("raincast-keys-cli");
    let store = dir.path().join("store");
    let cmd = || {
        let mut c = Command::new(BIN);
        c.arg("--log-json")
            .env_remove("RAINCAST_STORE")
            .env_remove("RAINCAST_SOURCE");
        c.current_dir(dir.path());
        c
    };
    let with_store = || {
        let mut c = cmd();
        c.env("RAINCAST_STORE", &store);
        c
    };
    // Listing a store that does not exist (a mistyped --store) is an error
    // naming it, and creates nothing.
    let out = with_store()
        .args(["keys", "list"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no store at"),
        "{err}"
    );
    assert!(!store.exists(), "a store was created by a listing");
    let key = create_list_revoke(with_store);
    let s = raincast_store::EmbeddedStore::open(
        store.join(raincast_config::EMBEDDED_FILE),
        chrono::Duration::days(1),
    )
    .await
    .unwrap();
    only_hashes_stored(&s, &key).await;
}

#[tokio::test]
async fn keys_on_dynamodb() {
    let Some(dynalite) = Server::dynalite() else {
        return;
    };
    let store = common::new_tables(&dynalite.endpoint(), "keys-").await;
    let endpoint = dynalite.endpoint();
    let cmd = || {
        let mut c = Command::new(BIN);
        for (k, v) in aws_env(None, None) {
            c.env(k, v);
        }
        c.env("AWS_ENDPOINT_URL_DYNAMODB", &endpoint)
            .env("RAINCAST_STORE", "dynamodb://keys-")
            .env_remove("RAINCAST_SOURCE")
            .env_remove("AWS_PROFILE");
        c
    };
    let key = create_list_revoke(cmd);
    only_hashes_stored(&store, &key).await;
}
