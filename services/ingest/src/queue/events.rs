//! What a queue message says: S3 event notifications, sent to the queue
//! directly or wrapped in an SNS envelope (a subscription to a topic such
//! as NOAA's new-NEXRAD-object topic), S3's test event, or anything else.
//! Pure: text in, records out.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// One object named by an S3 event record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRecord {
    /// The bucket.
    pub bucket: String,
    /// The object key, decoded (S3 events URL-encode keys, `+` for space).
    pub key: String,
    /// Size in bytes (0 when the record has none).
    pub size: u64,
    /// `ObjectCreated:Put`, `ObjectRemoved:Delete`, …
    pub event_name: String,
    /// When the event happened (the object was created).
    pub event_time: Option<DateTime<Utc>>,
}

impl ObjectRecord {
    /// True for `ObjectCreated:*` events, the only ones ingested.
    pub fn is_created(&self) -> bool {
        self.event_name.starts_with("ObjectCreated:") || self.event_name == "ObjectCreated"
    }
}

/// A message, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// S3 event records (at least one).
    Objects(Vec<ObjectRecord>),
    /// `s3:TestEvent`, sent when a bucket's notifications are configured.
    TestEvent,
    /// Not an S3 event notification; the reason says what it is.
    NotS3(String),
}

/// Classifies a message body.
pub fn parse(body: &str) -> Notification {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return Notification::NotS3("not JSON".into());
    };
    // An SNS envelope: the S3 event is the text of its `Message`.
    if v.get("Type").and_then(Value::as_str) == Some("Notification") {
        if let Some(inner) = v.get("Message").and_then(Value::as_str) {
            return match serde_json::from_str::<Value>(inner) {
                Ok(inner) => classify(&inner),
                Err(_) => {
                    Notification::NotS3("an SNS notification whose message is not JSON".into())
                }
            };
        }
    }
    if let Some(t) = v.get("Type").and_then(Value::as_str) {
        if v.get("Records").is_none() {
            return Notification::NotS3(format!("an SNS message of type {t:?}"));
        }
    }
    classify(&v)
}

fn classify(v: &Value) -> Notification {
    if v.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Notification::TestEvent;
    }
    let Some(records) = v.get("Records").and_then(Value::as_array) else {
        return Notification::NotS3("JSON without S3 event records".into());
    };
    let mut out = Vec::new();
    for r in records {
        if r.get("eventSource").and_then(Value::as_str) != Some("aws:s3") {
            continue;
        }
        let s3 = r.get("s3");
        let bucket = s3
            .and_then(|s| s.pointer("/bucket/name"))
            .and_then(Value::as_str);
        let key = s3
            .and_then(|s| s.pointer("/object/key"))
            .and_then(Value::as_str);
        let (Some(bucket), Some(key)) = (bucket, key) else {
            continue;
        };
        let Some(key) = decode_key(key) else {
            continue;
        };
        out.push(ObjectRecord {
            bucket: bucket.to_string(),
            key,
            size: s3
                .and_then(|s| s.pointer("/object/size"))
                .and_then(Value::as_u64)
                .unwrap_or(0),
            event_name: r
                .get("eventName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            event_time: r
                .get("eventTime")
                .and_then(Value::as_str)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc)),
        });
    }
    if out.is_empty() {
        return Notification::NotS3("no S3 event record with a bucket and key".into());
    }
    Notification::Objects(out)
}

/// An S3 event key decoded: `+` is a space, then percent-decoding (UTF-8).
pub fn decode_key(raw: &str) -> Option<String> {
    let plus = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8()
        .ok()
        .map(|k| k.into_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// An S3 event as S3 sends it (two records, one removal).
    const RAW: &str = r#"{"Records":[
      {"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1",
       "eventTime":"2026-12-04T05:00:01.250Z","eventName":"ObjectCreated:Put",
       "s3":{"s3SchemaVersion":"1.0","configurationId":"raw",
             "bucket":{"name":"radar-raw","arn":"arn:aws:s3:::radar-raw"},
             "object":{"key":"bom02/2018/06/16/2_20180616_100000.prcp-cscn.nc","size":123456,"eTag":"x"}}},
      {"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectRemoved:Delete",
       "s3":{"bucket":{"name":"radar-raw"},"object":{"key":"a%2Fb+c%C3%BC.h5"}}}]}"#;

    #[test]
    fn raw_s3_events_are_read_with_decoded_keys() {
        let Notification::Objects(r) = parse(RAW) else {
            panic!("{:?}", parse(RAW))
        };
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].bucket, "radar-raw");
        assert_eq!(r[0].key, "bom02/2018/06/16/2_20180616_100000.prcp-cscn.nc");
        assert_eq!(r[0].size, 123456);
        assert!(r[0].is_created());
        assert_eq!(
            r[0].event_time.unwrap().to_rfc3339(),
            "2026-12-04T05:00:01.250+00:00"
        );
        assert_eq!(r[1].key, "a/b cü.h5");
        assert!(!r[1].is_created());
    }

    #[test]
    fn sns_envelopes_are_unwrapped() {
        let envelope = serde_json::json!({
            "Type": "Notification",
            "MessageId": "1",
            "TopicArn": "arn:aws:sns:us-east-1:811054952067:NewNEXRADLevel2Object",
            "Message": RAW,
        })
        .to_string();
        assert_eq!(parse(&envelope), parse(RAW));
        let test = serde_json::json!({
            "Type": "Notification",
            "Message": r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#,
        })
        .to_string();
        assert_eq!(parse(&test), Notification::TestEvent);
        let confirm =
            serde_json::json!({"Type": "SubscriptionConfirmation", "Token": "t"}).to_string();
        assert!(
            matches!(parse(&confirm), Notification::NotS3(r) if r.contains("SubscriptionConfirmation"))
        );
    }

    #[test]
    fn test_events_and_other_messages_are_told_apart() {
        assert_eq!(
            parse(
                r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-12-04T05:00:00Z","Bucket":"radar-raw"}"#
            ),
            Notification::TestEvent
        );
        for garbage in [
            "hello",
            "",
            "{}",
            "[1,2]",
            r#"{"Records":[]}"#,
            r#"{"Records":[{"eventSource":"aws:sqs"}]}"#,
            r#"{"Records":[{"eventSource":"aws:s3","s3":{"bucket":{"name":"b"}}}]}"#,
            r#"{"Type":"Notification","Message":"not json"}"#,
        ] {
            assert!(
                matches!(parse(garbage), Notification::NotS3(_)),
                "{garbage:?}"
            );
        }
    }
}
