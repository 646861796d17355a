//! Webhook publisher: "posting" an event of a subscription's place queues
//! its delivery ([`crate::webhook::enqueue`]); [`crate::webhook::Deliverer`]
//! then sends it, with retries. The claim of the (subscription, event)
//! pair (the event key starts with the subscription id) makes the queueing
//! happen once across instances, and the delivery record, created if
//! absent, makes it idempotent.

use super::{Post, PublishContext, PublishError, Publisher, Receipt};
use crate::webhook::{self, WebhookSettings};
use chrono::{DateTime, Utc};
use raincast_store::subscriptions::Subscription;
use raincast_store::StateStore;
use std::collections::HashMap;
use std::sync::Arc;

/// Queues webhook deliveries for the subscriptions it knows.
#[derive(Clone)]
pub struct WebhookPublisher {
    store: Arc<dyn StateStore>,
    /// By subscription id.
    subscriptions: HashMap<String, Subscription>,
    settings: WebhookSettings,
}

impl std::fmt::Debug for WebhookPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookPublisher")
            .field("subscriptions", &self.subscriptions.len())
            .finish()
    }
}

fn store_error(stage: &'static str, e: raincast_store::StoreError) -> PublishError {
    PublishError::Store {
        stage,
        message: e.to_string(),
    }
}

impl WebhookPublisher {
    /// A publisher for `subscriptions`, queueing into `store`.
    pub fn new(
        store: Arc<dyn StateStore>,
        subscriptions: impl IntoIterator<Item = Subscription>,
        settings: WebhookSettings,
    ) -> Self {
        Self {
            store,
            subscriptions: subscriptions
                .into_iter()
                .map(|s| (s.id.clone(), s))
                .collect(),
            settings,
        }
    }

    fn subscription(&self, post: &Post<'_>) -> Result<&Subscription, PublishError> {
        post.place
            .id
            .as_ref()
            .and_then(|id| self.subscriptions.get(id))
            .ok_or_else(|| PublishError::NoSubscription {
                place: post.place.name.clone(),
            })
    }
}

impl Publisher for WebhookPublisher {
    fn name(&self) -> &'static str {
        "webhook"
    }

    async fn publish(
        &self,
        post: &Post<'_>,
        ctx: &PublishContext,
    ) -> Result<Receipt, PublishError> {
        ctx.check("queue webhook", std::time::Duration::from_secs(5))?;
        let sub = self.subscription(post)?;
        let (d, created) = webhook::enqueue(
            self.store.as_ref(),
            sub,
            post.event,
            post.text,
            &self.settings,
            Utc::now(),
        )
        .await
        .map_err(|e| store_error("queue webhook", e))?;
        Ok(Receipt {
            id: d.webhook_id,
            already_posted: !created,
        })
    }

    async fn find(
        &self,
        post: &Post<'_>,
        _since: DateTime<Utc>,
    ) -> Result<Option<Receipt>, PublishError> {
        let sub = self.subscription(post)?;
        let found = webhook::get(self.store.as_ref(), &sub.id, &post.event.key)
            .await
            .map_err(|e| store_error("find webhook", e))?;
        Ok(found.map(|d| Receipt {
            id: d.webhook_id,
            already_posted: true,
        }))
    }
}
