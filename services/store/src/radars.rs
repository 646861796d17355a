//! The registry of radars: one versioned record per radar in the state
//! store (`radar/{id}`), written by ingest the first time a process ingests
//! the radar, so that readers (`raincast notify --once`, operators) find
//! every radar of a store without a configuration. Frames of nowcasts are
//! stored under pseudo-radars and are never registered.

use crate::{StateStore, StoreError, StoreResult};
use serde::{Deserialize, Serialize};

/// Key prefix of the radar records.
pub const PREFIX: &str = "radar/";

/// A registered radar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RadarRecord {
    /// Radar id, as in the scan store.
    pub id: String,
    /// Display name.
    pub name: String,
}

/// Registers `radar`, or updates its record when it changed. Safe to call
/// from many instances at once: the record is written with a
/// compare-and-set, and a lost race means another instance wrote it.
pub async fn register(state: &dyn StateStore, radar: &RadarRecord) -> StoreResult<()> {
    let key = format!("{PREFIX}{}", radar.id);
    let value = serde_json::to_string(radar).map_err(|e| StoreError::Corrupt {
        what: key.clone(),
        reason: e.to_string(),
    })?;
    let expected = match state.get_record(&key).await? {
        Some(r) if r.value == value => return Ok(()),
        Some(r) => Some(r.version),
        None => None,
    };
    match state.put_record(&key, &value, expected).await {
        Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Every registered radar, by id. Records that do not parse are skipped
/// with a warning.
pub async fn registered(state: &dyn StateStore) -> StoreResult<Vec<RadarRecord>> {
    let mut out = Vec::new();
    for (key, record) in state.list_records(PREFIX).await? {
        match serde_json::from_str::<RadarRecord>(&record.value) {
            Ok(r) => out.push(r),
            Err(e) => tracing::warn!(%key, error = %e, "radar record does not parse; skipped"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EmbeddedStore;

    #[tokio::test]
    async fn registers_once_updates_on_change_and_lists() {
        let dir = raincast_testkit::TempDir::new("raincast-radars");
        let store = EmbeddedStore::open(dir.path().join("s.redb"), chrono::Duration::days(1))
            .await
            .expect("store");
        assert!(registered(&store).await.expect("list").is_empty());
        let a = RadarRecord {
            id: "a".into(),
            name: "Alpha".into(),
        };
        register(&store, &a).await.expect("register");
        register(&store, &a).await.expect("again");
        assert_eq!(
            store
                .get_record("radar/a")
                .await
                .expect("get")
                .map(|r| r.version),
            Some(1),
            "an unchanged radar is not written again"
        );
        let renamed = RadarRecord {
            name: "Alpha 2".into(),
            ..a.clone()
        };
        register(&store, &renamed).await.expect("update");
        let b = RadarRecord {
            id: "b".into(),
            name: "Beta".into(),
        };
        register(&store, &b).await.expect("register b");
        assert_eq!(registered(&store).await.expect("list"), vec![renamed, b]);
    }
}
