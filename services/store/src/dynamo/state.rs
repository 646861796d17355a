//! [`StateStore`] on the state table: checkpoints, leases, decode attempts,
//! quarantine and versioned records; checkpoints, leases and records are
//! guarded by conditional writes.

use super::item::{
    epoch, get_n, get_s, lease_from_item, n, radar_pk, record_from_item, s, RECORDS_PK,
};
use super::limits::{check_item, Item};
use super::tables::is_conditional_failure;
use super::{DynamoStore, BACKEND, TTL_ATTRIBUTE};
use crate::aws::sdk_error;
use crate::error::{StoreError, StoreResult};
use crate::model::{
    parse_time_key, record_conflict, time_key, truncate_to_seconds, Checkpoint, LeaseOutcome,
    LeaseRecord, QuarantineRecord, VersionedRecord, LEASE_SKEW_MARGIN,
};
use crate::StateStore;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Duration, SecondsFormat, Utc};

#[async_trait]
impl StateStore for DynamoStore {
    async fn get_checkpoint(&self, radar: &str) -> StoreResult<Option<Checkpoint>> {
        let Some(it) = self
            .get_item(&self.state, &radar_pk(radar), "checkpoint")
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(Checkpoint {
            radar: radar.to_string(),
            last_time: parse_time_key(get_s(&it, "t")?)?,
            last_key: get_s(&it, "k")?.to_string(),
            updated_at: epoch(get_n(&it, "up")?)?,
        }))
    }

    async fn put_checkpoint(&self, cp: &Checkpoint) -> StoreResult<bool> {
        let tk = time_key(truncate_to_seconds(cp.last_time));
        let req = self
            .client
            .put_item()
            .table_name(&self.state)
            .item("pk", s(radar_pk(&cp.radar)))
            .item("sk", s("checkpoint"))
            .item("t", s(&tk))
            .item("k", s(&cp.last_key))
            .item("up", n(cp.updated_at.timestamp()))
            .condition_expression("attribute_not_exists(pk) OR #t < :t OR (#t = :t AND #k <= :k)")
            .expression_attribute_names("#t", "t")
            .expression_attribute_names("#k", "k")
            .expression_attribute_values(":t", s(&tk))
            .expression_attribute_values(":k", s(&cp.last_key));
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(sdk_error(BACKEND, "PutItem", e)),
        }
    }

    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<LeaseOutcome> {
        let pk = format!("lease#{name}");
        let until = now + ttl;
        let put = self
            .client
            .put_item()
            .table_name(&self.state)
            .item("pk", s(&pk))
            .item("sk", s("lease"))
            .item("owner", s(owner))
            .item("until", n(until.timestamp_millis()))
            .item("released", AttributeValue::Bool(false))
            .condition_expression("attribute_not_exists(pk) OR #o = :me OR #r = :t OR #u <= :now")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#r", "released")
            .expression_attribute_names("#u", "until")
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            // Another owner's lease is over once `until + margin <= now`.
            .expression_attribute_values(":now", n((now - LEASE_SKEW_MARGIN).timestamp_millis()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match put {
            Ok(resp) => {
                let old = resp
                    .attributes()
                    .filter(|a| !a.is_empty())
                    .map(lease_from_item)
                    .transpose()?;
                let predecessor = LeaseRecord::predecessor_for(old.as_ref(), owner, now).map_err(
                    |(holder, _)| StoreError::Conflict {
                        what: format!("lease {name}"),
                        reason: format!("server accepted the put but {holder} held it"),
                    },
                )?;
                Ok(LeaseOutcome::Acquired { until, predecessor })
            }
            Err(e) if is_conditional_failure(&e) => {
                let current = self.get_item(&self.state, &pk, "lease").await?;
                match current.as_ref().map(lease_from_item).transpose()? {
                    Some(l) => Ok(LeaseOutcome::Held {
                        owner: l.owner,
                        until: l.until,
                    }),
                    // Released and deleted in between: try once more later.
                    None => Ok(LeaseOutcome::Held {
                        owner: "unknown".into(),
                        until: now,
                    }),
                }
            }
            Err(e) => Err(sdk_error(BACKEND, "PutItem", e)),
        }
    }

    async fn renew_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.update_held_lease(name, owner, now + ttl, false).await
    }

    async fn release_lease(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.update_held_lease(name, owner, now, true).await
    }

    async fn begin_attempt(
        &self,
        radar: &str,
        key: &str,
        owner: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<u32> {
        // ADD is atomic: the old count comes back with the write.
        let out = self
            .client
            .update_item()
            .table_name(&self.state)
            .key("pk", s(radar_pk(radar)))
            .key("sk", s(format!("a#{key}")))
            .update_expression("ADD #n :one SET #o = :o, #at = :at, #ttl = :ttl")
            .expression_attribute_names("#n", "n")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#at", "at")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":o", s(owner))
            .expression_attribute_values(":at", n(now.timestamp()))
            .expression_attribute_values(":ttl", n(self.ttl_from(now)))
            .return_values(ReturnValue::UpdatedOld)
            .send()
            .await
            .map_err(|e| sdk_error(BACKEND, "UpdateItem", e))?;
        let earlier = match out.attributes() {
            Some(old) if old.contains_key("n") => get_n(old, "n")?,
            _ => 0,
        };
        Ok(u32::try_from(earlier.max(0)).unwrap_or(u32::MAX))
    }

    async fn end_attempt(&self, radar: &str, key: &str) -> StoreResult<()> {
        self.client
            .delete_item()
            .table_name(&self.state)
            .key("pk", s(radar_pk(radar)))
            .key("sk", s(format!("a#{key}")))
            .send()
            .await
            .map_err(|e| sdk_error(BACKEND, "DeleteItem", e))?;
        Ok(())
    }

    async fn quarantine(&self, rec: &QuarantineRecord) -> StoreResult<()> {
        let mut it = Item::new();
        it.insert("pk".into(), s(radar_pk(&rec.radar)));
        it.insert("sk".into(), s(format!("q#{}", rec.key)));
        it.insert("key".into(), s(&rec.key));
        it.insert("code".into(), s(&rec.reason_code));
        it.insert("reason".into(), s(&rec.reason));
        if let Some(t) = rec.time {
            it.insert("t".into(), s(time_key(t)));
        }
        it.insert("at".into(), n(rec.recorded_at.timestamp()));
        if let Some(size) = rec.size {
            it.insert("sz".into(), AttributeValue::N(size.to_string()));
        }
        if let Some(m) = rec.modified {
            // Full precision: it is compared with the listed time.
            it.insert(
                "mod".into(),
                s(m.to_rfc3339_opts(SecondsFormat::Nanos, true)),
            );
        }
        it.insert(TTL_ATTRIBUTE.into(), n(self.ttl_from(rec.recorded_at)));
        check_item("quarantine record", &it)?;
        self.client
            .put_item()
            .table_name(&self.state)
            .set_item(Some(it))
            .send()
            .await
            .map_err(|e| sdk_error(BACKEND, "PutItem", e))?;
        Ok(())
    }

    async fn list_quarantined(&self, radar: &str) -> StoreResult<Vec<QuarantineRecord>> {
        let items = self
            .query_prefix(&self.state, &radar_pk(radar), "q#")
            .await?;
        let now = Utc::now().timestamp();
        let mut out = Vec::with_capacity(items.len());
        for it in &items {
            if let Some(q) = quarantine_from_item(radar, it, now)? {
                out.push(q);
            }
        }
        Ok(out)
    }

    async fn get_quarantined(
        &self,
        radar: &str,
        key: &str,
    ) -> StoreResult<Option<QuarantineRecord>> {
        match self
            .get_item(&self.state, &radar_pk(radar), &format!("q#{key}"))
            .await?
        {
            Some(it) => quarantine_from_item(radar, &it, Utc::now().timestamp()),
            None => Ok(None),
        }
    }

    async fn get_record(&self, key: &str) -> StoreResult<Option<VersionedRecord>> {
        match self.get_item(&self.state, RECORDS_PK, key).await? {
            Some(it) => record_from_item(&it, Utc::now()),
            None => Ok(None),
        }
    }

    async fn put_record(&self, key: &str, value: &str, expected: Option<u64>) -> StoreResult<u64> {
        let version = expected.unwrap_or(0) + 1;
        let now = Utc::now();
        let req = self
            .client
            .put_item()
            .table_name(&self.state)
            .item("pk", s(RECORDS_PK))
            .item("sk", s(key))
            .item("v", s(value))
            .item("ver", n(version as i64))
            .item(TTL_ATTRIBUTE, n(self.ttl_from(now)));
        // An item past its TTL counts as absent, like on read.
        let req = match expected {
            None => req
                .condition_expression("attribute_not_exists(pk) OR #x <= :now")
                .expression_attribute_names("#x", TTL_ATTRIBUTE)
                .expression_attribute_values(":now", n(now.timestamp())),
            Some(v) => req
                .condition_expression("#ver = :expected AND #x > :now")
                .expression_attribute_names("#ver", "ver")
                .expression_attribute_names("#x", TTL_ATTRIBUTE)
                .expression_attribute_values(":expected", n(v as i64))
                .expression_attribute_values(":now", n(now.timestamp())),
        };
        match req.send().await {
            Ok(_) => Ok(version),
            Err(e) if is_conditional_failure(&e) => Err(record_conflict(key, expected)),
            Err(e) => Err(sdk_error(BACKEND, "PutItem", e)),
        }
    }

    async fn list_records(&self, prefix: &str) -> StoreResult<Vec<(String, VersionedRecord)>> {
        let now = Utc::now();
        let mut out = Vec::new();
        for it in self.query_prefix(&self.state, RECORDS_PK, prefix).await? {
            if let Some(r) = record_from_item(&it, now)? {
                out.push((get_s(&it, "sk")?.to_string(), r));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

impl DynamoStore {
    /// Sets the expiry of lease `name` to `until`, and with `release` marks
    /// it released, if `owner` holds it and has not released it; false
    /// when it does not (lost to another owner, or released).
    async fn update_held_lease(
        &self,
        name: &str,
        owner: &str,
        until: DateTime<Utc>,
        release: bool,
    ) -> StoreResult<bool> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.state)
            .key("pk", s(format!("lease#{name}")))
            .key("sk", s("lease"))
            .condition_expression("#o = :me AND #r = :f")
            .expression_attribute_names("#u", "until")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#r", "released")
            .expression_attribute_values(":u", n(until.timestamp_millis()))
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":f", AttributeValue::Bool(false));
        // DynamoDB refuses values that the expressions do not use.
        req = if release {
            req.update_expression("SET #u = :u, #r = :t")
                .expression_attribute_values(":t", AttributeValue::Bool(true))
        } else {
            req.update_expression("SET #u = :u")
        };
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(sdk_error(BACKEND, "UpdateItem", e)),
        }
    }
}

/// A quarantine item as its record; `None` once past its TTL (`now`, epoch
/// seconds), as DynamoDB may still return it until its sweep.
fn quarantine_from_item(radar: &str, it: &Item, now: i64) -> StoreResult<Option<QuarantineRecord>> {
    if get_n(it, TTL_ATTRIBUTE).is_ok_and(|t| t <= now) {
        return Ok(None);
    }
    Ok(Some(QuarantineRecord {
        radar: radar.to_string(),
        key: get_s(it, "key")?.to_string(),
        reason_code: get_s(it, "code")?.to_string(),
        reason: get_s(it, "reason")?.to_string(),
        time: it
            .get("t")
            .and_then(|v| v.as_s().ok())
            .map(|t| parse_time_key(t))
            .transpose()?,
        recorded_at: epoch(get_n(it, "at")?)?,
        size: it
            .get("sz")
            .and_then(|v| v.as_n().ok())
            .map(|v| {
                v.parse()
                    .map_err(|_| StoreError::corrupt("quarantine record", format!("sz = {v:?}")))
            })
            .transpose()?,
        modified: it
            .get("mod")
            .and_then(|v| v.as_s().ok())
            .map(|t| parse_time_key(t))
            .transpose()?,
    }))
}
