//! Raincast notifier: finds rain that is about to reach (or has reached) a
//! place, writes a short text with an animated GIF, and posts it to X or to an
//! outbox folder, each event exactly once across restarts and instances.
//!
//! Pipeline, each step testable on its own:
//! 1. [`outlook`]: fields (mm/h on a grid) → per-place [`outlook::Outlook`];
//! 2. [`events`]: outlook + stored state → events with deterministic keys (pure);
//! 3. [`claims`]: conditional writes in the shared state store so that one
//!    instance owns each event, and each is posted exactly once;
//! 4. [`text`]: the post text;
//! 5. [`publish`]: X (API v2, OAuth 1.0a), Mastodon, outbox and webhook
//!    publishers behind one trait; [`webhook`] delivers the webhooks of
//!    subscriptions (Standard Webhooks, retries, [`ssrf`] checks).

pub mod claims;
pub mod events;
pub mod frames;
pub mod gif;
pub mod notify;
pub mod oauth;
pub mod outlook;
pub use raincast_config::place;
pub mod publish;
pub mod service;
pub mod ssrf;
pub mod text;
pub mod webhook;

pub use events::{evaluate, Event, EventKind, PlaceState};
pub use notify::{GifSource, Job, Notifier, Report, ReportStatus};
pub use outlook::Outlook;
pub use place::{Place, Thresholds};
