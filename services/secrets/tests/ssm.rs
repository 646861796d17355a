//! The SSM provider against moto's SSM: SecureString parameters under the
//! prefix are read decrypted, others are not, a rotated value is picked up
//! by the refresh loop without a restart, and a failed refresh keeps the
//! values read before.

#![allow(clippy::unwrap_used)]

use aws_sdk_ssm::types::ParameterType;
use raincast_config::notifier::x_secrets;
use raincast_config::secrets::{Secrets, SecretsSection};
use raincast_secrets::{load, run, SsmSecrets};
use raincast_store::aws::sdk_config_for_endpoint;
use raincast_testkit::{Server, TcpProxy};
use std::collections::HashMap;
use std::time::{Duration, Instant};

async fn put(client: &aws_sdk_ssm::Client, name: &str, value: &str) {
    client
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .unwrap();
}

/// Polls `f` every 50 ms until it holds; panics after `deadline`.
async fn eventually(deadline: Duration, what: &str, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < deadline,
            "{what}: not within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn section(prefix: &str, refresh: Duration) -> SecretsSection {
    SecretsSection {
        ssm_prefix: Some(prefix.to_string()),
        refresh,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_the_prefix_decrypted_and_picks_up_rotation() {
    let Some(moto) = Server::moto() else { return };
    let sdk = sdk_config_for_endpoint(&moto.endpoint(), 3).await;
    let client = aws_sdk_ssm::Client::new(&sdk);
    // More than one page (GetParametersByPath returns 10 at most).
    for i in 0..12 {
        put(
            &client,
            &format!("/raincast/test/extra_{i:02}"),
            &format!("e{i}"),
        )
        .await;
    }
    put(&client, "/raincast/test/x_consumer_key", "ck-1").await;
    put(&client, "/raincast/test/x_consumer_secret", "cs-1").await;
    put(&client, "/raincast/test/x_access_token", "at-1").await;
    put(&client, "/raincast/test/x_access_secret", "as-1").await;
    // Outside the prefix, below it, or no secret name: never read.
    put(&client, "/raincast/other/x_consumer_key", "other").await;
    put(&client, "/raincast/test/deeper/x_consumer_key", "deeper").await;
    put(&client, "/raincast/test/Bad-Name", "bad").await;

    let secrets = Secrets::from_env(&HashMap::new());
    let section = section("/raincast/test/", Duration::from_millis(200));
    let ssm = load(&section, &sdk, &secrets)
        .await
        .unwrap()
        .expect("a reader");
    let x = x_secrets(&secrets)
        .unwrap()
        .expect("X credentials from SSM");
    assert_eq!(x.consumer_key.expose(), "ck-1");
    assert_eq!(x.access_secret.expose(), "as-1");
    assert_eq!(secrets.get("extra_11").unwrap().expose(), "e11");
    assert_eq!(secrets.get("bad_name"), None);
    assert!(!format!("{secrets:?} {ssm:?} {x:?}").contains("ck-1"));

    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(run(section.refresh, ssm, secrets.clone(), rx));
    put(&client, "/raincast/test/x_access_secret", "as-2").await;
    eventually(Duration::from_secs(30), "rotated x_access_secret", || {
        x_secrets(&secrets)
            .unwrap()
            .is_some_and(|x| x.access_secret.expose() == "as-2")
    })
    .await;
    // A deleted parameter goes away too.
    client
        .delete_parameter()
        .name("/raincast/test/extra_00")
        .send()
        .await
        .unwrap();
    eventually(Duration::from_secs(30), "deleted extra_00", || {
        secrets.get("extra_00").is_none()
    })
    .await;
    tx.send_replace(true);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the refresh loop ends on shutdown")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_keeps_the_values_and_the_next_refresh_recovers() {
    let Some(moto) = Server::moto() else { return };
    let direct = sdk_config_for_endpoint(&moto.endpoint(), 3).await;
    let client = aws_sdk_ssm::Client::new(&direct);
    put(&client, "/raincast/outage/x_consumer_key", "v1").await;
    let proxy = TcpProxy::start(moto.addr()).await;
    let sdk = sdk_config_for_endpoint(&proxy.endpoint(), 1).await;

    let secrets = Secrets::from_env(&HashMap::new());
    let section = section("/raincast/outage/", Duration::from_millis(100));
    let ssm = load(&section, &sdk, &secrets).await.unwrap().unwrap();
    let reader = SsmSecrets::new(&sdk, "/raincast/outage/");

    proxy.set_up(false);
    assert!(reader.refresh(&secrets).await.is_err());
    assert_eq!(secrets.get("x_consumer_key").unwrap().expose(), "v1");
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(run(section.refresh, ssm, secrets.clone(), rx));
    put(&client, "/raincast/outage/x_consumer_key", "v2").await;
    // Refreshes fail while the proxy is down: the old value stays.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(secrets.get("x_consumer_key").unwrap().expose(), "v1");
    proxy.set_up(true);
    eventually(Duration::from_secs(30), "v2 after the outage", || {
        secrets
            .get("x_consumer_key")
            .is_some_and(|v| v.expose() == "v2")
    })
    .await;
    tx.send_replace(true);
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_wins_and_no_prefix_reads_nothing() {
    let Some(moto) = Server::moto() else { return };
    let sdk = sdk_config_for_endpoint(&moto.endpoint(), 3).await;
    let client = aws_sdk_ssm::Client::new(&sdk);
    put(&client, "/raincast/env/x_consumer_key", "from-ssm").await;
    let env = HashMap::from([(
        "RAINCAST_X_CONSUMER_KEY".to_string(),
        "from-env".to_string(),
    )]);
    let secrets = Secrets::from_env(&env);
    assert!(load(&SecretsSection::default(), &sdk, &secrets)
        .await
        .unwrap()
        .is_none());
    load(
        &section("/raincast/env/", Duration::from_secs(1)),
        &sdk,
        &secrets,
    )
    .await
    .unwrap();
    assert_eq!(secrets.get("x_consumer_key").unwrap().expose(), "from-env");
    assert_eq!(secrets.shadowed_by_env(), ["x_consumer_key"]);
    // Three missing: the error names the first missing variable.
    let err = x_secrets(&secrets).unwrap_err().to_string();
    assert!(err.contains("RAINCAST_X_CONSUMER_SECRET"), "{err}");
    assert!(!err.contains("from-env"), "{err}");
}

/// A parameter that is not a SecureString (stored unencrypted) is read, and
/// named (the service warns about it at each read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parameter_that_is_not_a_secure_string_is_named() {
    let Some(moto) = Server::moto() else { return };
    let sdk = sdk_config_for_endpoint(&moto.endpoint(), 3).await;
    let client = aws_sdk_ssm::Client::new(&sdk);
    put(&client, "/raincast/plain/mastodon_token", "sealed").await;
    client
        .put_parameter()
        .name("/raincast/plain/x_access_token")
        .value("open")
        .r#type(ParameterType::String)
        .send()
        .await
        .unwrap();
    let ssm = SsmSecrets::new(&sdk, "/raincast/plain/");
    let (read, plain) = ssm.fetch_noting_plain().await.unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(plain, ["/raincast/plain/x_access_token"]);
}
