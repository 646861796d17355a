//! An SQS queue (or an SQS-compatible server) as a [`MessageQueue`].
//!
//! Receiving is a long poll (`ReceiveMessage` with `WaitTimeSeconds`, up to
//! 10 messages) that asks for each message's `ApproximateReceiveCount`;
//! deleting and extending use the receipt handle of that receipt.

use crate::aws::sdk_error;
use crate::error::{StoreError, StoreResult};
use crate::{MessageQueue, QueueMessage};
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use aws_sdk_sqs::Client;
use std::time::Duration;

const BACKEND: &str = "sqs";

/// Most messages one `ReceiveMessage` returns.
pub const MAX_BATCH: u32 = 10;
/// Longest long poll SQS allows.
pub const MAX_WAIT: Duration = Duration::from_secs(20);
/// Longest visibility timeout SQS allows (12 hours).
pub const MAX_VISIBILITY: Duration = Duration::from_secs(43_200);

/// One SQS queue, by URL.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    /// The queue at `url` (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`,
    /// or a compatible server's URL).
    pub fn new(sdk: &SdkConfig, url: &str) -> StoreResult<Self> {
        let parsed = url.trim();
        let path = parsed
            .strip_prefix("https://")
            .or_else(|| parsed.strip_prefix("http://"))
            .and_then(|rest| rest.split_once('/'))
            .map(|(host, path)| (host, path.trim_matches('/')));
        if !path.is_some_and(|(host, path)| !host.is_empty() && !path.is_empty()) {
            return Err(StoreError::invalid(
                "queue",
                format!("{url:?}: expected a queue URL such as https://sqs.REGION.amazonaws.com/ACCOUNT/NAME"),
            ));
        }
        Ok(Self {
            client: Client::new(sdk),
            url: parsed.to_string(),
        })
    }

    /// The underlying client (tests use it to create queues).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The queue URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Asks SQS whether the queue exists (`GetQueueAttributes`, which the
    /// documented policy allows): [`StoreError::NotFound`] when it does not
    /// (a wrong URL, or a queue in another region or account), another
    /// error when SQS cannot answer now.
    pub async fn check(&self) -> StoreResult<()> {
        use aws_sdk_sqs::error::ProvideErrorMetadata;
        let result = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                let missing = e.as_service_error().is_some_and(|se| {
                    se.is_queue_does_not_exist()
                        || matches!(
                            se.code(),
                            Some("AWS.SimpleQueueService.NonExistentQueue" | "QueueDoesNotExist")
                        )
                });
                if missing {
                    Err(StoreError::NotFound {
                        backend: BACKEND,
                        what: format!("queue {}", self.url),
                    })
                } else {
                    Err(sdk_error(BACKEND, "GetQueueAttributes", e))
                }
            }
        }
    }
}

/// Whole seconds for SQS, rounded up and capped at `max`.
fn seconds(d: Duration, max: Duration) -> i32 {
    let d = d.min(max);
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(s).unwrap_or(i32::MAX)
}

#[async_trait]
impl MessageQueue for SqsQueue {
    async fn receive(
        &self,
        max: u32,
        wait: Duration,
        visibility: Duration,
    ) -> StoreResult<Vec<QueueMessage>> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH) as i32)
            .wait_time_seconds(seconds(wait, MAX_WAIT))
            .visibility_timeout(seconds(visibility, MAX_VISIBILITY))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| sdk_error(BACKEND, "receive", e))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let receive_count = m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                Some(QueueMessage {
                    id: m.message_id.unwrap_or_default(),
                    receipt: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                    receive_count,
                })
            })
            .collect())
    }

    async fn delete(&self, receipt: &str) -> StoreResult<()> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| sdk_error(BACKEND, "delete", e))?;
        Ok(())
    }

    async fn extend(&self, receipt: &str, visibility: Duration) -> StoreResult<()> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(seconds(visibility, MAX_VISIBILITY))
            .send()
            .await
            .map_err(|e| sdk_error(BACKEND, "change visibility", e))?;
        Ok(())
    }

    async fn send(&self, body: &str) -> StoreResult<()> {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| sdk_error(BACKEND, "send", e))?;
        Ok(())
    }

    fn describe(&self) -> String {
        self.url.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_up_and_cap() {
        assert_eq!(seconds(Duration::from_millis(1500), MAX_WAIT), 2);
        assert_eq!(seconds(Duration::from_secs(3), MAX_WAIT), 3);
        assert_eq!(seconds(Duration::from_secs(60), MAX_WAIT), 20);
        assert_eq!(seconds(Duration::ZERO, MAX_WAIT), 0);
    }
}
