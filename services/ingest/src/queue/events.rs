//! What a queue message says: S3 event notifications, sent to the queue
//! directly or wrapped in an SNS envelope (a subscription to a topic such
//! as NOAA's new-NEXRAD-object topic), S3 events routed by an EventBridge
//! rule, S3's test event, or anything else. Pure: text in, records out.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// One object named by an S3 event record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRecord {
    /// The bucket.
    pub bucket: String,
    /// The object key, decoded (S3 event notifications URL-encode keys,
    /// `+` for space; EventBridge events carry them as they are).
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
    if v.get("source").and_then(Value::as_str) == Some("aws.s3") {
        return eventbridge(v);
    }
    let Some(records) = v.get("Records").and_then(Value::as_array) else {
        return Notification::NotS3("JSON without S3 event records".into());
    };
    let mut out = Vec::new();
    for r in records {
        if r.get("eventSource").and_then(Value::as_str) != Some("aws:s3") {
            continue;
        }
        let Some((bucket, key, size)) = bucket_key_size(r.get("s3")) else {
            continue;
        };
        let Some(key) = decode_key(key) else {
            continue;
        };
        out.push(ObjectRecord {
            bucket: bucket.to_string(),
            key,
            size,
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

/// `bucket.name`, `object.key` and `object.size` (0 when absent) of an S3
/// event record's `s3` or an EventBridge event's `detail`.
fn bucket_key_size(v: Option<&Value>) -> Option<(&str, &str, u64)> {
    let v = v?;
    let bucket = v.pointer("/bucket/name").and_then(Value::as_str)?;
    let key = v.pointer("/object/key").and_then(Value::as_str)?;
    let size = v
        .pointer("/object/size")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Some((bucket, key, size))
}

/// An S3 event as EventBridge delivers it (a rule with the queue as its
/// target): one object in `detail`, its key not URL-encoded, the kind in
/// `detail-type` ("Object Created", "Object Deleted", …; the event name
/// becomes `ObjectCreated`, `ObjectDeleted`, …).
fn eventbridge(v: &Value) -> Notification {
    let kind = v
        .get("detail-type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some((bucket, key, size)) = bucket_key_size(v.get("detail")) else {
        return Notification::NotS3(format!(
            "an EventBridge S3 event ({kind:?}) without a bucket and key"
        ));
    };
    if key.is_empty() {
        return Notification::NotS3("an EventBridge S3 event with an empty key".into());
    }
    Notification::Objects(vec![ObjectRecord {
        bucket: bucket.to_string(),
        key: key.to_string(),
        size,
        event_name: kind.replace(' ', ""),
        event_time: v
            .get("time")
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc)),
    }])
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
    fn eventbridge_s3_events_are_read_with_their_keys_as_they_are() {
        // The shape of S3's "Object Created" event on EventBridge; the key
        // keeps its `:` and `+` (EventBridge does not URL-encode keys).
        let body = r#"{"version":"0","id":"17793124-05d4-b198-2fde-7ededc63b103",
            "detail-type":"Object Created","source":"aws.s3","account":"111122223333",
            "time":"2026-12-05T04:00:07Z","region":"eu-central-1",
            "resources":["arn:aws:s3:::radar-raw"],
            "detail":{"version":"0","bucket":{"name":"radar-raw"},
              "object":{"key":"mch/2026/12/05/AQC+T04:00.gif","size":48213,
                "etag":"b1946ac92492d2347c6235b4d2611184","sequencer":"00617F08299329D189"},
              "request-id":"N4N7GDK58NMKJ12R","requester":"123456789012",
              "reason":"PutObject"}}"#;
        let Notification::Objects(records) = parse(body) else {
            panic!("{:?}", parse(body));
        };
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!(r.bucket, "radar-raw");
        assert_eq!(r.key, "mch/2026/12/05/AQC+T04:00.gif");
        assert_eq!(r.size, 48213);
        assert!(r.is_created());
        assert_eq!(
            r.event_time.map(|t| t.to_rfc3339()).as_deref(),
            Some("2026-12-05T04:00:07+00:00")
        );
        // Other S3 events are read but not created objects; an event
        // without a key is not one at all.
        let deleted = body.replace("Object Created", "Object Deleted");
        let Notification::Objects(records) = parse(&deleted) else {
            panic!("{deleted}");
        };
        assert!(!records[0].is_created());
        let keyless = r#"{"detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"b"}}}"#;
        assert!(matches!(parse(keyless), Notification::NotS3(_)));
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
