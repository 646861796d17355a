//! The OpenAPI document is checked against the running router:
//! * it is OpenAPI 3.1, every `$ref` resolves, every path parameter is declared;
//! * every documented path is served (no route is documented but missing),
//!   and the router only has documented routes (routes are registered through
//!   `utoipa_axum::routes!`, which documents them; this test calls them all);
//! * every schema example validates against its schema;
//! * real responses for every path (successes and problems) use a documented
//!   status and content type, and JSON bodies validate against the schema.
//!
//! The validator below covers the JSON Schema subset utoipa emits (`$ref`,
//! `type` incl. type lists, `properties`/`required`, `items`, `enum`,
//! `oneOf`/`anyOf`/`allOf`, `format: date-time`, `minimum`), and is strict:
//! an object key the schema does not describe is an error.

#![allow(clippy::unwrap_used)]

mod common;

use chrono::Utc;
use common::*;
use serde_json::Value;
use std::collections::BTreeSet;

fn resolve<'a>(doc: &'a Value, r: &str) -> Option<&'a Value> {
    let path = r.strip_prefix("#/")?;
    path.split('/').try_fold(doc, |v, seg| v.get(seg))
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "integer" => v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => v.is_number(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => false,
    }
}

fn validate(doc: &Value, schema: &Value, v: &Value, at: &str, errs: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        match resolve(doc, r) {
            Some(s) => validate(doc, s, v, at, errs),
            None => errs.push(format!("{at}: unresolved $ref {r}")),
        }
        return;
    }
    let count_ok = |subs: &Vec<Value>| {
        subs.iter()
            .filter(|s| {
                let mut e = Vec::new();
                validate(doc, s, v, at, &mut e);
                e.is_empty()
            })
            .count()
    };
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            validate(doc, s, v, at, errs);
        }
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
        if count_ok(any) == 0 {
            errs.push(format!("{at}: matches none of anyOf: {v}"));
        }
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
        let n = count_ok(one);
        if n != 1 {
            errs.push(format!("{at}: matches {n} of oneOf (need 1): {v}"));
        }
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !types.iter().any(|t| type_ok(t, v)) {
            errs.push(format!("{at}: expected {types:?}, got {v}"));
            return;
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            errs.push(format!("{at}: {v} not in enum {e:?}"));
        }
    }
    if let (Some(min), Some(x)) = (schema.get("minimum").and_then(Value::as_f64), v.as_f64()) {
        if x < min {
            errs.push(format!("{at}: {x} below minimum {min}"));
        }
    }
    if schema.get("format").and_then(Value::as_str) == Some("date-time") {
        if let Some(s) = v.as_str() {
            if chrono::DateTime::parse_from_rfc3339(s).is_err() {
                errs.push(format!("{at}: {s:?} is not an RFC 3339 date-time"));
            }
        }
    }
    if let Some(obj) = v.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        if let Some(req) = schema.get("required").and_then(Value::as_array) {
            for k in req.iter().filter_map(Value::as_str) {
                if !obj.contains_key(k) {
                    errs.push(format!("{at}: missing required {k:?}"));
                }
            }
        }
        if let Some(props) = props {
            for (k, val) in obj {
                match props.get(k) {
                    Some(ps) => validate(doc, ps, val, &format!("{at}.{k}"), errs),
                    None if schema.get("additionalProperties").is_some() => {}
                    None => errs.push(format!("{at}: undocumented key {k:?}")),
                }
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate().take(200) {
            validate(doc, items, x, &format!("{at}[{i}]"), errs);
        }
    }
}

fn all_refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                out.insert(r.to_string());
            }
            m.values().for_each(|x| all_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| all_refs(x, out)),
        _ => {}
    }
}

fn doc() -> Value {
    serde_json::to_value(raincast_api::openapi()).unwrap()
}

#[test]
fn document_is_well_formed() {
    let d = doc();
    assert!(d["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(d["info"]["title"], "Raincast API");
    let mut refs = BTreeSet::new();
    all_refs(&d, &mut refs);
    assert!(!refs.is_empty());
    for r in &refs {
        assert!(resolve(&d, r).is_some(), "unresolved {r}");
    }
    for (path, item) in d["paths"].as_object().unwrap() {
        let ops: Vec<(&String, &Value)> = item
            .as_object()
            .unwrap()
            .iter()
            .filter(|(m, _)| METHODS.contains(&m.as_str()))
            .collect();
        assert!(!ops.is_empty(), "{path}: no operation");
        for (method, op) in ops {
            assert!(
                !op["responses"].as_object().unwrap().is_empty(),
                "{method} {path}"
            );
            assert!(
                op["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{method} {path}: no tag"
            );
            let declared: BTreeSet<String> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .map(|p| p["name"].as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default();
            // A parameter is a whole segment (`{id}`) or starts one (`{lead}.tif`).
            let in_path: BTreeSet<String> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.split_once('}')))
                .map(|(name, _)| name.to_string())
                .collect();
            assert_eq!(declared, in_path, "{method} {path}: path parameters");
        }
    }
}

/// Binary bodies (images, GeoTIFF, netCDF, npy) are `string`/`binary`, not
/// the array of integers utoipa makes of a `Vec<u8>` (a generated client
/// would parse that as JSON).
#[test]
fn binary_bodies_are_binary_strings() {
    let d = doc();
    let mut binary = 0;
    for (path, item) in d["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Some(responses) = op["responses"].as_object() else {
                continue;
            };
            for (status, r) in responses {
                for (media, content) in r["content"].as_object().into_iter().flatten() {
                    if media.contains("json") {
                        continue;
                    }
                    let where_ = format!("{method} {path} {status} {media}");
                    assert_eq!(content["schema"]["type"], "string", "{where_}: {content}");
                    if media != "text/html" && !media.starts_with("text/") {
                        assert_eq!(content["schema"]["format"], "binary", "{where_}: {content}");
                        binary += 1;
                    }
                }
            }
        }
    }
    assert!(binary >= 7, "{binary} binary bodies");
}

/// Parameter limits the server enforces are in the parameters' schemas too,
/// so that a client (or a fuzzer) generated from the document keeps to them.
#[test]
fn parameter_limits_are_in_their_schemas() {
    let d = doc();
    let param = |path: &str, name: &str| -> Value {
        d["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: no parameters"))
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{path}: no {name}"))["schema"]
            .clone()
    };
    let range = |path: &str, name: &str, lo: f64, hi: f64| {
        let s = param(path, name);
        assert_eq!(
            (s["minimum"].as_f64(), s["maximum"].as_f64()),
            (Some(lo), Some(hi)),
            "{path} {name}: {s}"
        );
    };
    range("/v1/forecast", "lat", -90.0, 90.0);
    range("/v1/forecast", "lon", -180.0, 180.0);
    range("/v1/radars/{id}/scans", "limit", 1.0, 1000.0);
    range("/v1/radars/{id}/animation.gif", "past", 0.0, 360.0);
    range("/v1/basemap", "north", -90.0, 90.0);
    assert_eq!(
        param("/v1/radars/{id}/scans", "from")["format"],
        "date-time"
    );
    assert_eq!(
        param("/v1/radars/{id}/skill", "window")["pattern"],
        "^(24h|7d)$"
    );
}

/// The methods the router serves (and documents).
const METHODS: [&str; 3] = ["get", "post", "delete"];

#[test]
fn schema_examples_match_their_schemas() {
    let d = doc();
    let mut checked = 0;
    for (name, schema) in d["components"]["schemas"].as_object().unwrap() {
        for ex in schema
            .get("example")
            .into_iter()
            .chain(schema["examples"].as_array().into_iter().flatten())
        {
            let mut errs = Vec::new();
            validate(&d, schema, ex, name, &mut errs);
            assert!(errs.is_empty(), "example of {name}: {errs:#?}");
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} examples");
}

/// A concrete URI for a documented path template.
fn concrete(path: &str) -> String {
    path.replace("{id}", RADAR)
        .replace("{time}", "2024-06-16T10:10:00Z")
        .replace("{lead_min}", "30")
        .replace("{lead}", "30")
        .replace("{file}", "app.js")
        .replace("{key}", "rc_unknown")
        .replace("{location}", "47,8")
        .replace("{frame}", "nowcast_0_5")
        .replace("{size}", "256")
        .replace("{z}", "7")
        .replace("{x}", "66")
        .replace("{y}", "45")
        .replace("{color}", "0")
        .replace("{options}", "0_0.png")
}

#[tokio::test]
async fn real_responses_match_the_document() {
    let f = fixture().await;
    let d = doc();
    let paths: Vec<String> = d["paths"].as_object().unwrap().keys().cloned().collect();
    let (lon, lat) = grid().rowcol_to_lonlat(32.5, 37.5).unwrap();
    // Every documented path, plus error cases of the parameterised ones.
    let mut calls: Vec<(String, String)> = paths
        .iter()
        .filter(|p| d["paths"][p.as_str()]["get"].is_object())
        .map(|p| (p.clone(), concrete(p)))
        .collect();
    let forecast = format!("/v1/forecast?lat={lat}&lon={lon}");
    calls.retain(|(p, _)| p != "/v1/forecast");
    let (key, _) = raincast_store::keys::create(f.store.as_ref(), "openapi", Utc::now())
        .await
        .unwrap();
    let compatible = "/forecast/{key}/{location}".to_string();
    calls.extend([
        (
            compatible.clone(),
            format!("/forecast/{key}/{lat},{lon}?units=si"),
        ),
        (compatible.clone(), format!("/forecast/{key}/0,0")),
        (compatible.clone(), format!("/forecast/{key}/0,0?units=x")),
        ("/v1/forecast".to_string(), forecast),
        ("/v1/forecast".into(), "/v1/forecast?lat=200&lon=8".into()),
        ("/v1/forecast".into(), "/v1/forecast?lat=0&lon=0".into()),
        ("/v1/forecast".into(), "/v1/forecast?lon=8".into()),
        ("/v1/radars/{id}".into(), "/v1/radars/nope".into()),
        (
            "/v1/radars/{id}/scans".into(),
            format!("/v1/radars/{RADAR}/scans?from=x"),
        ),
        (
            "/v1/radars/{id}/scans".into(),
            format!("/v1/radars/{RADAR}/scans?limit=3"),
        ),
        (
            "/v1/radars/{id}/scans".into(),
            format!("/v1/radars/{RADAR}/scans?limit=0"),
        ),
        (
            "/v1/radars/{id}/scans/{time}".into(),
            format!("/v1/radars/{RADAR}/scans/2024-06-16T10:10:00Z?format=npy"),
        ),
        (
            "/v1/radars/{id}/scans/{time}".into(),
            format!("/v1/radars/{RADAR}/scans/2024-06-16T10:10:00Z?format=png"),
        ),
        (
            "/v1/radars/{id}/scans/{time}".into(),
            format!("/v1/radars/{RADAR}/scans/2024-06-16T10:11:00Z"),
        ),
        (
            "/v1/radars/{id}/nowcast".into(),
            "/v1/radars/empty/nowcast".into(),
        ),
        (
            "/v1/radars/{id}/nowcast/frames/{lead_min}".into(),
            format!("/v1/radars/{RADAR}/nowcast/frames/7"),
        ),
        (
            "/v1/radars/{id}/nowcast/frames/{lead_min}".into(),
            format!("/v1/radars/{RADAR}/nowcast/frames/5?issued=2020-01-01T00:00:00Z"),
        ),
        (
            "/v1/radars/{id}/animation.gif".into(),
            format!("/v1/radars/{RADAR}/animation.gif?past=0&future=0"),
        ),
        (
            "/v1/radars/{id}/nowcast/{lead}.tif".into(),
            format!("/v1/radars/{RADAR}/nowcast/7.tif"),
        ),
        (
            "/v1/radars/{id}/nowcast/{lead}.tif".into(),
            format!("/v1/radars/{RADAR}/nowcast/5.tif?issued=2020-01-01T00:00:00Z"),
        ),
        (
            "/v1/radars/{id}/nowcast.nc".into(),
            "/v1/radars/empty/nowcast.nc".into(),
        ),
        (
            "/v1/radars/{id}/nowcast.nc".into(),
            format!("/v1/radars/{RADAR}/nowcast.nc?issued=x"),
        ),
        ("/assets/{file}".into(), "/assets/nothing.js".into()),
        (
            "/v2/radar/{frame}/{size}/{z}/{x}/{y}/{color}/{options}".into(),
            "/v2/radar/nowcast_0_5/300/7/66/45/0/0_0.png".into(),
        ),
        (
            "/v1/radars/{id}/skill".into(),
            format!("/v1/radars/{RADAR}/skill?window=3d"),
        ),
        (
            "/v1/radars/{id}/skill/reliability.png".into(),
            format!("/v1/radars/{RADAR}/skill/reliability.png?window=3d"),
        ),
        (
            "/v1/radars/{id}/skill/reliability.png".into(),
            format!("/v1/radars/{RADAR}/skill/reliability.png?lead=999"),
        ),
    ]);
    // Every GET with no key; the subscription operations with one.
    let mut calls: Vec<(&str, String, String, Option<String>)> = calls
        .into_iter()
        .map(|(t, u)| ("get", t, u, None))
        .collect();
    let subs = "/v1/subscriptions".to_string();
    let one = "/v1/subscriptions/{id}".to_string();
    let body = |url: &str| {
        Some(
            serde_json::json!({
                "name": "Office", "lat": lat, "lon": lon, "url": url,
                "events": ["rain_expected"]
            })
            .to_string(),
        )
    };
    calls.extend([
        (
            "post",
            subs.clone(),
            subs.clone(),
            body("https://93.184.215.14/hook"),
        ),
        (
            "post",
            subs.clone(),
            subs.clone(),
            body("https://127.0.0.1/hook"),
        ),
        ("get", subs.clone(), subs.clone(), None),
        (
            "delete",
            one.clone(),
            "/v1/subscriptions/sub_0".into(),
            None,
        ),
    ]);
    let mut seen_paths = BTreeSet::new();
    let mut validated_json = 0;
    for (method, template, uri, body) in &calls {
        let resp = if template.starts_with("/v1/subscriptions") {
            let req = axum::http::Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(uri.as_str())
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body.clone().unwrap_or_default()))
                .unwrap();
            call(&f.state, req).await
        } else {
            get(&f.state, uri).await
        };
        let status = resp.status().as_u16().to_string();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = body_bytes(resp).await;
        if status == "404" {
            let p: Value = serde_json::from_slice(&body).unwrap();
            assert_ne!(
                p["code"], "no_such_route",
                "{uri}: documented path not served"
            );
        }
        let op = &d["paths"][template.as_str()][*method];
        let documented = &op["responses"][status.as_str()];
        assert!(
            documented.is_object(),
            "{uri}: status {status} is not documented"
        );
        let media = ct.split(';').next().unwrap().trim().to_string();
        seen_paths.insert(template.clone());
        if body.is_empty() {
            assert!(
                documented["content"].is_null(),
                "{uri}: {status} documents a body"
            );
            continue;
        }
        let content = documented["content"]
            .as_object()
            .unwrap_or_else(|| panic!("{uri}: {status} has no content"));
        let schema = content
            .iter()
            .find(|(k, _)| k.split(';').next().unwrap().trim() == media)
            .map(|(_, v)| &v["schema"])
            .unwrap_or_else(|| {
                panic!(
                    "{uri}: content type {ct} not documented for {status}: {:?}",
                    content.keys()
                )
            });
        if media.ends_with("json") {
            let v: Value = serde_json::from_slice(&body).unwrap();
            let mut errs = Vec::new();
            validate(&d, schema, &v, uri, &mut errs);
            assert!(errs.is_empty(), "{uri} ({status}): {errs:#?}");
            validated_json += 1;
        }
    }
    assert_eq!(seen_paths, paths.iter().cloned().collect::<BTreeSet<_>>());
    assert!(validated_json >= 20, "{validated_json}");
}

#[test]
fn the_validator_rejects_wrong_values() {
    let d = doc();
    let problem = serde_json::json!({"$ref": "#/components/schemas/Problem"});
    let good = serde_json::json!({"type": "/problems/x", "title": "Bad Request", "status": 400, "detail": "d", "code": "x"});
    let mut errs = Vec::new();
    validate(&d, &problem, &good, "good", &mut errs);
    assert!(errs.is_empty(), "{errs:?}");
    let mut bad_type = good.clone();
    bad_type["status"] = serde_json::json!("400");
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("detail");
    let mut extra = good.clone();
    extra["stack_trace"] = serde_json::json!("secret");
    for (name, v) in [("type", bad_type), ("missing", missing), ("extra", extra)] {
        let mut errs = Vec::new();
        validate(&d, &problem, &v, name, &mut errs);
        assert!(!errs.is_empty(), "{name} was accepted");
    }
    let mut errs = Vec::new();
    let radar = serde_json::json!({"$ref": "#/components/schemas/Radar"});
    validate(
        &d,
        &radar,
        &serde_json::json!({"id": "x", "status": "sunny"}),
        "radar",
        &mut errs,
    );
    assert!(errs.iter().any(|e| e.contains("status")), "{errs:?}");
}
