//! Publishers: where posts go. One trait, four adapters:
//! * [`x::XPublisher`]: X API v2 with OAuth 1.0a user context;
//! * [`mastodon::MastodonPublisher`]: a Mastodon account (bearer token);
//! * [`webhook::WebhookPublisher`]: queues webhook deliveries of subscriptions;
//! * [`outbox::OutboxPublisher`]: text, GIF and a JSON record in a folder
//!   (the default, and the dry-run mode).

pub(crate) mod http;
pub mod mastodon;
pub mod outbox;
pub mod webhook;
pub mod x;

use crate::events::Event;
use crate::oauth::OAuthError;
use chrono::{DateTime, Utc};
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// X's limit for animated GIFs, bytes.
pub const MAX_GIF_BYTES: usize = 15 * 1024 * 1024;

/// One post: the event, its place, its text and optionally its GIF.
#[derive(Debug, Clone, Copy)]
pub struct Post<'a> {
    /// The event (its key names the post in the outbox).
    pub event: &'a Event,
    /// The place (a webhook subscription's, for webhooks).
    pub place: &'a crate::Place,
    /// Text, at most 280 weighted characters.
    pub text: &'a str,
    /// Animated GIF bytes.
    pub gif: Option<&'a [u8]>,
}

/// What a publisher returns for a post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Id of the post: tweet id, or the outbox record's path.
    pub id: String,
    /// True when the destination already had this post (X refused a
    /// duplicate; the outbox record existed). Nothing new was posted.
    pub already_posted: bool,
}

/// Why a post failed. Every failure leaves the event pending for a later
/// run, until it expires.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PublishError {
    /// Connection refused, reset, timed out, or the response was cut.
    #[error("network error during {stage}: {message}")]
    Network {
        stage: &'static str,
        message: String,
    },
    /// An HTTP error status that retrying did not fix.
    #[error("HTTP {status} from {stage}: {body}")]
    Http {
        stage: &'static str,
        status: u16,
        body: String,
    },
    /// Rate limited, and the reset is further away than the publisher waits.
    #[error("rate limited during {stage} until {reset_at:?}")]
    RateLimited {
        stage: &'static str,
        reset_at: Option<DateTime<Utc>>,
    },
    /// X could not process the media.
    #[error("media processing failed: {message}")]
    MediaFailed { message: String },
    /// X did not finish processing the media in time.
    #[error("media processing still {state} after {waited_s} s")]
    MediaTimeout { state: String, waited_s: u64 },
    /// A response that does not have the documented shape.
    #[error("unexpected response from {stage}: {message}")]
    BadResponse {
        stage: &'static str,
        message: String,
    },
    /// The GIF is over X's limit.
    #[error("GIF of {bytes} bytes is over the {limit} byte limit")]
    TooLarge { bytes: usize, limit: usize },
    /// Writing the outbox failed.
    #[error("outbox I/O error at {path}: {message}")]
    Io { path: String, message: String },
    /// The request could not be signed.
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    /// The next step would not end before the claim's lease does: given up
    /// so that no other instance can take the claim over mid-post.
    #[error("{stage} would outlast the claim's lease ({needed_s} s needed)")]
    LeaseTooShort { stage: &'static str, needed_s: u64 },
    /// The process is shutting down: given up before the next step.
    #[error("shutting down before {stage}")]
    ShuttingDown { stage: &'static str },
    /// The state store failed (webhook deliveries are queued there).
    #[error("state store during {stage}: {message}")]
    Store {
        stage: &'static str,
        message: String,
    },
    /// A webhook event whose place is no known subscription.
    #[error("no webhook subscription for place {place:?}")]
    NoSubscription { place: String },
}

/// Stage name of the request that creates a post: the only one after which
/// a failure may still have left a post behind.
pub const CREATE_STAGE: &str = "create post";

impl PublishError {
    /// True when the post may exist despite the error (the connection broke,
    /// or the server failed, while creating it): whoever retries asks the
    /// publisher first ([`Publisher::find`]).
    pub fn maybe_posted(&self) -> bool {
        match self {
            PublishError::Network { stage, .. } | PublishError::BadResponse { stage, .. } => {
                *stage == CREATE_STAGE
            }
            PublishError::Http { stage, status, .. } => *stage == CREATE_STAGE && *status >= 500,
            _ => false,
        }
    }
}

/// Bounds of one publish: the end of the claim's lease (nothing may be sent,
/// nor waited for, past it) and the shutdown signal (waits end at once, and
/// nothing new starts, when it turns true).
#[derive(Debug, Clone, Default)]
pub struct PublishContext {
    deadline: Option<Instant>,
    shutdown: Option<watch::Receiver<bool>>,
}

impl PublishContext {
    /// No deadline, no shutdown (tests, one-off tools).
    pub fn unbounded() -> Self {
        Self::default()
    }

    /// Publishing must be over by `deadline` and stop on `shutdown`.
    pub fn new(deadline: Option<Instant>, shutdown: Option<watch::Receiver<bool>>) -> Self {
        Self { deadline, shutdown }
    }

    /// The deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn shutting_down(&self) -> bool {
        self.shutdown.as_ref().is_some_and(|s| *s.borrow())
    }

    /// Errors unless a step taking up to `need` can start now: no shutdown
    /// asked and `need` ends before the deadline.
    pub fn check(&self, stage: &'static str, need: Duration) -> Result<(), PublishError> {
        if self.shutting_down() {
            return Err(PublishError::ShuttingDown { stage });
        }
        match self.deadline {
            Some(d) if Instant::now() + need > d => Err(PublishError::LeaseTooShort {
                stage,
                needed_s: need.as_secs(),
            }),
            _ => Ok(()),
        }
    }

    /// Waits `wait` before a step taking up to `then`; gives up at once when
    /// both do not fit before the deadline, and as soon as shutdown is asked.
    pub async fn wait(
        &self,
        stage: &'static str,
        wait: Duration,
        then: Duration,
    ) -> Result<(), PublishError> {
        self.check(stage, wait + then)?;
        let Some(mut rx) = self.shutdown.clone() else {
            tokio::time::sleep(wait).await;
            return Ok(());
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => Ok(()),
            _ = rx.wait_for(|stop| *stop) => Err(PublishError::ShuttingDown { stage }),
        }
    }
}

/// A destination for posts.
pub trait Publisher: Send + Sync {
    /// Short name recorded with each claim: `x`, `outbox`.
    fn name(&self) -> &'static str;

    /// Posts `post` within the bounds of `ctx`: no request starts, and no
    /// wait lasts, past its deadline or after shutdown.
    fn publish(
        &self,
        post: &Post<'_>,
        ctx: &PublishContext,
    ) -> impl Future<Output = Result<Receipt, PublishError>> + Send;

    /// The post of an earlier attempt (started at `since`) if the
    /// destination has it: X searches the account's recent posts, the outbox
    /// looks for the record file.
    fn find(
        &self,
        post: &Post<'_>,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<Receipt>, PublishError>> + Send;
}

/// Any publisher, chosen at run time.
#[derive(Debug)]
pub enum AnyPublisher {
    /// X API v2.
    X(Box<x::XPublisher>),
    /// Mastodon.
    Mastodon(Box<mastodon::MastodonPublisher>),
    /// Outbox folder.
    Outbox(outbox::OutboxPublisher),
}

impl Publisher for AnyPublisher {
    fn name(&self) -> &'static str {
        match self {
            AnyPublisher::X(p) => p.name(),
            AnyPublisher::Mastodon(p) => p.name(),
            AnyPublisher::Outbox(p) => p.name(),
        }
    }

    async fn publish(
        &self,
        post: &Post<'_>,
        ctx: &PublishContext,
    ) -> Result<Receipt, PublishError> {
        match self {
            AnyPublisher::X(p) => p.publish(post, ctx).await,
            AnyPublisher::Mastodon(p) => p.publish(post, ctx).await,
            AnyPublisher::Outbox(p) => p.publish(post, ctx).await,
        }
    }

    async fn find(
        &self,
        post: &Post<'_>,
        since: DateTime<Utc>,
    ) -> Result<Option<Receipt>, PublishError> {
        match self {
            AnyPublisher::X(p) => p.find(post, since).await,
            AnyPublisher::Mastodon(p) => p.find(post, since).await,
            AnyPublisher::Outbox(p) => p.find(post, since).await,
        }
    }
}
