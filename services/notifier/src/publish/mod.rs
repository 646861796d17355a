//! Publishers: where posts go. One trait, two adapters:
//! * [`x::XPublisher`]: X API v2 with OAuth 1.0a user context;
//! * [`outbox::OutboxPublisher`]: text, GIF and a JSON record in a folder
//!   (the default, and the dry-run mode).

pub mod outbox;
pub mod x;

use crate::events::Event;
use crate::oauth::OAuthError;
use chrono::{DateTime, Utc};
use std::future::Future;

/// X's limit for animated GIFs, bytes.
pub const MAX_GIF_BYTES: usize = 15 * 1024 * 1024;

/// One post: the event, its text and optionally its GIF.
#[derive(Debug, Clone, Copy)]
pub struct Post<'a> {
    /// The event (its key names the post in the outbox).
    pub event: &'a Event,
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
}

/// A destination for posts.
pub trait Publisher: Send + Sync {
    /// Short name recorded with each claim: `x`, `outbox`.
    fn name(&self) -> &'static str;

    /// Posts `post`. Must be safe to call again for the same event after a
    /// failure (the outbox overwrites, X refuses duplicates).
    fn publish(
        &self,
        post: &Post<'_>,
    ) -> impl Future<Output = Result<Receipt, PublishError>> + Send;
}

/// Either publisher, chosen at run time.
#[derive(Debug)]
pub enum AnyPublisher {
    /// X API v2.
    X(Box<x::XPublisher>),
    /// Outbox folder.
    Outbox(outbox::OutboxPublisher),
}

impl Publisher for AnyPublisher {
    fn name(&self) -> &'static str {
        match self {
            AnyPublisher::X(p) => p.name(),
            AnyPublisher::Outbox(p) => p.name(),
        }
    }

    async fn publish(&self, post: &Post<'_>) -> Result<Receipt, PublishError> {
        match self {
            AnyPublisher::X(p) => p.publish(post).await,
            AnyPublisher::Outbox(p) => p.publish(post).await,
        }
    }
}
