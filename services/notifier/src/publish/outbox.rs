//! Outbox publisher: each post becomes three files in a folder.
//!
//! For an event key `brussels:rain_expected:be-rmi:20250601T1200Z` the files
//! are `brussels_rain_expected_be-rmi_20250601T1200Z.{txt,gif,json}`. The
//! JSON record is written last (each file via a temporary name and a
//! rename), so a record on disk means a complete post; a post whose record
//! exists is reported as already posted and not rewritten.

use super::{Post, PublishContext, PublishError, Publisher, Receipt, MAX_GIF_BYTES};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Writes posts to a folder.
#[derive(Debug, Clone)]
pub struct OutboxPublisher {
    dir: PathBuf,
}

/// The JSON record of one outbox post.
#[derive(Debug, Clone, Serialize)]
struct OutboxRecord<'a> {
    key: &'a str,
    kind: &'a str,
    place: &'a str,
    radar: &'a str,
    scan_time: String,
    start_time: String,
    text: &'a str,
    gif: Option<String>,
    gif_bytes: usize,
    written_at: String,
}

impl OutboxPublisher {
    /// An outbox in `dir` (created on first post).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// File stem of an event key (`:` and other separators become `_`).
    pub fn stem(key: &str) -> String {
        key.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }

    /// The JSON record of an event's post: its presence means a complete post.
    fn record_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{}.json", Self::stem(key)))
    }

    async fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), PublishError> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let io = |e: std::io::Error| PublishError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        tokio::fs::write(&tmp, bytes).await.map_err(io)?;
        tokio::fs::rename(&tmp, &path).await.map_err(io)
    }
}

impl Publisher for OutboxPublisher {
    fn name(&self) -> &'static str {
        "outbox"
    }

    async fn find(
        &self,
        post: &Post<'_>,
        _since: DateTime<Utc>,
    ) -> Result<Option<Receipt>, PublishError> {
        let path = self.record_path(&post.event.key);
        match tokio::fs::try_exists(&path).await {
            Ok(true) => Ok(Some(Receipt {
                id: path.display().to_string(),
                already_posted: true,
            })),
            Ok(false) => Ok(None),
            Err(e) => Err(PublishError::Io {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
        }
    }

    async fn publish(
        &self,
        post: &Post<'_>,
        ctx: &PublishContext,
    ) -> Result<Receipt, PublishError> {
        ctx.check("outbox", std::time::Duration::ZERO)?;
        if let Some(g) = post.gif {
            if g.len() > MAX_GIF_BYTES {
                return Err(PublishError::TooLarge {
                    bytes: g.len(),
                    limit: MAX_GIF_BYTES,
                });
            }
        }
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| PublishError::Io {
                path: self.dir.display().to_string(),
                message: e.to_string(),
            })?;
        let stem = Self::stem(&post.event.key);
        let json_name = format!("{stem}.json");
        let id = self.record_path(&post.event.key).display().to_string();
        if let Some(receipt) = self.find(post, Utc::now()).await? {
            return Ok(receipt);
        }
        self.write_atomic(&format!("{stem}.txt"), post.text.as_bytes())
            .await?;
        let gif_name = match post.gif {
            Some(g) => {
                let name = format!("{stem}.gif");
                self.write_atomic(&name, g).await?;
                Some(name)
            }
            None => None,
        };
        let e = post.event;
        let record = OutboxRecord {
            key: &e.key,
            kind: e.kind.as_str(),
            place: &e.place,
            radar: &e.radar,
            scan_time: e.scan_time.to_rfc3339(),
            start_time: e.start_time.to_rfc3339(),
            text: post.text,
            gif: gif_name,
            gif_bytes: post.gif.map_or(0, <[u8]>::len),
            written_at: Utc::now().to_rfc3339(),
        };
        let json = serde_json::to_vec_pretty(&record).map_err(|err| PublishError::Io {
            path: id.clone(),
            message: err.to_string(),
        })?;
        self.write_atomic(&json_name, &json).await?;
        Ok(Receipt {
            id,
            already_posted: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{evaluate, tests::shower_outlook, PlaceState};
    use crate::place::Place;

    #[tokio::test]
    async fn writes_three_files_once() {
        let dir = std::env::temp_dir().join(format!("raincast-outbox-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let place = Place::new("Brussels", 50.85, 4.35);
        let ev = evaluate(&place, &PlaceState::default(), &shower_outlook(0)).events[0].clone();
        let out = OutboxPublisher::new(&dir);
        let gif = b"GIF89a-not-really".to_vec();
        let place = crate::Place::new("P", 50.0, 4.0);
        let post = Post {
            event: &ev,
            place: &place,
            text: "hello",
            gif: Some(&gif),
        };
        let r = out
            .publish(&post, &PublishContext::unbounded())
            .await
            .expect("publish");
        assert!(!r.already_posted);
        let stem = "brussels_rain_expected_be-rmi_20250601T1200Z";
        assert_eq!(
            std::fs::read_to_string(dir.join(format!("{stem}.txt"))).expect("txt"),
            "hello"
        );
        assert_eq!(
            std::fs::read(dir.join(format!("{stem}.gif"))).expect("gif"),
            gif
        );
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{stem}.json"))).expect("json"))
                .expect("valid json");
        assert_eq!(json["kind"], "rain_expected");
        assert_eq!(json["gif_bytes"], gif.len());
        let again = out
            .publish(&post, &PublishContext::unbounded())
            .await
            .expect("publish");
        assert!(again.already_posted);
        let found = out.find(&post, Utc::now()).await.expect("find");
        assert_eq!(found.map(|r| r.id), Some(r.id.clone()));
        let mut unposted = ev.clone();
        unposted.key = "never".into();
        let none = Post {
            event: &unposted,
            ..post
        };
        assert_eq!(out.find(&none, Utc::now()).await.expect("find"), None);
        let big = vec![0u8; MAX_GIF_BYTES + 1];
        let mut ev2 = ev.clone();
        ev2.key = "other".into();
        let err = out
            .publish(
                &Post {
                    event: &ev2,
                    place: &place,
                    text: "x",
                    gif: Some(&big),
                },
                &PublishContext::unbounded(),
            )
            .await;
        assert!(matches!(err, Err(PublishError::TooLarge { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
