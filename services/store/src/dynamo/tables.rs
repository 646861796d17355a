//! The two tables: their names and schema, creation with TTL at connect,
//! and the item reads and writes that scans and state share.

use super::item::s;
use super::limits::{check_item, write_with_retries, Item};
use super::{DynamoStore, BACKEND};
use crate::aws::sdk_error;
use crate::error::{StoreError, StoreResult};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, LocalSecondaryIndex, Projection,
    ProjectionType, PutRequest, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
    WriteRequest,
};
use chrono::{DateTime, Utc};

/// The local secondary index that holds manifests only.
pub const MANIFEST_INDEX: &str = "by_time";

/// The TTL attribute of every table.
pub const TTL_ATTRIBUTE: &str = "ttl";

/// True when a conditional write was refused because its condition failed
/// (the expected outcome of a lost race, not an error).
pub(super) fn is_conditional_failure<E: aws_sdk_dynamodb::error::ProvideErrorMetadata, R>(
    e: &aws_sdk_dynamodb::error::SdkError<E, R>,
) -> bool {
    e.as_service_error()
        .and_then(|se| se.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

impl DynamoStore {
    /// The table names (scans, state).
    pub fn table_names(&self) -> (&str, &str) {
        (&self.scans, &self.state)
    }

    async fn table_status(&self, table: &str) -> StoreResult<Option<TableStatus>> {
        match self.client.describe_table().table_name(table).send().await {
            Ok(resp) => Ok(resp.table().and_then(|t| t.table_status().cloned())),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(sdk_error(BACKEND, "DescribeTable", e)),
        }
    }

    pub(super) async fn table_exists(&self, table: &str) -> StoreResult<bool> {
        Ok(self.table_status(table).await?.is_some())
    }

    pub(super) async fn ensure_table(&self, table: &str, with_index: bool) -> StoreResult<()> {
        if self.table_status(table).await?.is_none() {
            self.create_table(table, with_index).await?;
        }
        // Wait until ACTIVE (servers keep new tables CREATING for a while).
        let mut waited = std::time::Duration::ZERO;
        loop {
            match self.table_status(table).await? {
                Some(TableStatus::Active) => break,
                _ if waited > std::time::Duration::from_secs(120) => {
                    return Err(StoreError::Unavailable {
                        backend: BACKEND,
                        op: "CreateTable",
                        reason: format!("table {table} not active after 120 s"),
                    })
                }
                _ => {
                    let step = std::time::Duration::from_millis(200);
                    tokio::time::sleep(step).await;
                    waited += step;
                }
            }
        }
        let ttl = self
            .client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(TTL_ATTRIBUTE)
                    .build()
                    .map_err(|e| StoreError::invalid("ttl", e.to_string()))?,
            )
            .send()
            .await;
        if let Err(e) = ttl {
            // Already enabled, or a server without TTL support (dynalite):
            // readers filter expired items anyway.
            tracing::debug!(table, error = %crate::aws::error_chain(&e), "TTL not enabled");
        }
        Ok(())
    }

    async fn create_table(&self, table: &str, with_index: bool) -> StoreResult<()> {
        let key = |name: &str, kt: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kt)
                .build()
                .map_err(|e| StoreError::invalid("key schema", e.to_string()))
        };
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| StoreError::invalid("attribute definition", e.to_string()))
        };
        let mut req = self
            .client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk")?)
            .attribute_definitions(attr("sk")?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?);
        if with_index {
            req = req
                .attribute_definitions(attr("mt")?)
                .local_secondary_indexes(
                    LocalSecondaryIndex::builder()
                        .index_name(MANIFEST_INDEX)
                        .key_schema(key("pk", KeyType::Hash)?)
                        .key_schema(key("mt", KeyType::Range)?)
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::All)
                                .build(),
                        )
                        .build()
                        .map_err(|e| StoreError::invalid("index", e.to_string()))?,
                );
        }
        match req.send().await {
            Ok(_) => {
                tracing::info!(table, "created DynamoDB table");
                Ok(())
            }
            // Another instance created it first.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_in_use_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(sdk_error(BACKEND, "CreateTable", e)),
        }
    }

    pub(super) async fn get_item(
        &self,
        table: &str,
        pk: &str,
        sk: &str,
    ) -> StoreResult<Option<Item>> {
        let resp = self
            .client
            .get_item()
            .table_name(table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(BACKEND, "GetItem", e))?;
        Ok(resp.item().cloned())
    }

    /// Every item of partition `pk` whose sort key starts with `prefix`.
    pub(super) async fn query_prefix(
        &self,
        table: &str,
        pk: &str,
        prefix: &str,
    ) -> StoreResult<Vec<Item>> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let resp = self
                .client
                .query()
                .table_name(table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":p", s(prefix))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error(BACKEND, "Query", e))?;
            out.extend(resp.items().iter().cloned());
            match resp.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Writes items with BatchWriteItem: at most 25 per call, unprocessed
    /// items retried with backoff. Public so that the limit tests can drive
    /// it against a real server.
    pub async fn batch_put(&self, table: &str, items: Vec<Item>) -> StoreResult<u32> {
        for it in &items {
            check_item("item", it)?;
        }
        let mut requests = Vec::with_capacity(items.len());
        for it in items {
            let put = PutRequest::builder()
                .set_item(Some(it))
                .build()
                .map_err(|e| StoreError::invalid("put request", e.to_string()))?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        let client = self.client.clone();
        let table = table.to_string();
        write_with_retries(requests, move |batch| {
            let client = client.clone();
            let table = table.clone();
            async move {
                let resp = client
                    .batch_write_item()
                    .request_items(&table, batch)
                    .send()
                    .await
                    .map_err(|e| sdk_error(BACKEND, "BatchWriteItem", e))?;
                Ok(resp
                    .unprocessed_items()
                    .and_then(|m| m.get(&table))
                    .cloned()
                    .unwrap_or_default())
            }
        })
        .await
    }

    pub(super) fn ttl_from(&self, now: DateTime<Utc>) -> i64 {
        (now + self.retention).timestamp()
    }
}
