//! OAuth 1.0a request signing (RFC 5849, HMAC-SHA1), as X's user context needs.
//!
//! Implemented here with the `hmac` and `sha1` crates rather than taken from a
//! Twitter client crate or an OAuth 1.0a signer crate; see docs/ARCHITECTURE.md
//! ("Notifier": the X client, and the signer crates checked) for why. Tested
//! against the worked example in X's "Creating a signature" guide.
//!
//! What is signed (RFC 5849 §3.4.1): the upper-case method, the base URI
//! (lower-case scheme and host, port only when not the default, path, no
//! query), and every `oauth_*` protocol parameter plus the query parameters
//! plus, for `application/x-www-form-urlencoded` bodies only, the body
//! parameters. JSON and multipart bodies are not signed; X's v2 endpoints take
//! JSON (tweets, media initialize) and multipart (media append).
//!
//! Secrets never appear in `Debug` output or logs: [`Credentials`] redacts them.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::Url;
use sha1::Sha1;
use std::fmt;

/// Errors from signing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OAuthError {
    /// The request URL could not be parsed.
    #[error("invalid request URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
}

/// OAuth 1.0a user-context credentials: the app's consumer key and secret and
/// the posting account's access token and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Consumer (API) key.
    pub consumer_key: String,
    /// Consumer (API) secret.
    pub consumer_secret: String,
    /// Access token of the posting account.
    pub access_token: String,
    /// Access token secret.
    pub access_secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("consumer_key", &"<redacted>")
            .field("consumer_secret", &"<redacted>")
            .field("access_token", &"<redacted>")
            .field("access_secret", &"<redacted>")
            .finish()
    }
}

/// RFC 3986 percent-encoding as OAuth requires (RFC 5849 §3.6): every byte
/// except `A–Z a–z 0–9 - . _ ~` becomes `%XX` with upper-case hex.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
    out
}

/// The base string URI (RFC 5849 §3.4.1.2) and the decoded query pairs of `url`.
fn base_uri_and_query(url: &str) -> Result<(String, Vec<(String, String)>), OAuthError> {
    let parsed = Url::parse(url).map_err(|e| OAuthError::BadUrl {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    let host = parsed.host_str().ok_or_else(|| OAuthError::BadUrl {
        url: url.to_string(),
        reason: "no host".into(),
    })?;
    // `Url` lower-cases scheme and host and drops default ports already.
    let mut base = format!("{}://{}", parsed.scheme(), host.to_ascii_lowercase());
    if let Some(port) = parsed.port() {
        base.push_str(&format!(":{port}"));
    }
    base.push_str(parsed.path());
    let query = parsed
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Ok((base, query))
}

/// The signature base string (RFC 5849 §3.4.1) of a request to `url` (query
/// included) with the given `oauth_*` parameters and form-encoded body
/// parameters (pass none for JSON or multipart bodies).
pub fn signature_base_string(
    method: &str,
    url: &str,
    oauth_params: &[(&str, &str)],
    form_params: &[(&str, &str)],
) -> Result<String, OAuthError> {
    let (base_uri, query) = base_uri_and_query(url)?;
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (percent_encode(k), percent_encode(v)))
        .chain(
            oauth_params
                .iter()
                .chain(form_params)
                .map(|(k, v)| (percent_encode(k), percent_encode(v))),
        )
        .collect();
    pairs.sort();
    let normalized = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    Ok(format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        percent_encode(&base_uri),
        percent_encode(&normalized)
    ))
}

/// HMAC-SHA1 signature (base64) of a base string with the consumer and token secrets.
pub fn hmac_sha1_signature(base_string: &str, consumer_secret: &str, token_secret: &str) -> String {
    let key = format!(
        "{}&{}",
        percent_encode(consumer_secret),
        percent_encode(token_secret)
    );
    // HMAC accepts keys of any length: `new_from_slice` cannot fail here.
    let mut mac = match <Hmac<Sha1> as KeyInit>::new_from_slice(key.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(base_string.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A fresh nonce: 32 random alphanumeric characters.
pub fn new_nonce() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 32];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: fall back to time and a counter (still unique per process).
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let t = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64;
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = ((t.rotate_left(i as u32 * 7) ^ n.rotate_left(i as u32)) & 0xff) as u8;
        }
    }
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

/// The `Authorization` header value for a request, with a given nonce and
/// timestamp (seconds since the epoch). `form_params` as in
/// [`signature_base_string`].
pub fn authorization_header_with(
    creds: &Credentials,
    method: &str,
    url: &str,
    form_params: &[(&str, &str)],
    nonce: &str,
    timestamp: i64,
) -> Result<String, OAuthError> {
    let ts = timestamp.to_string();
    let oauth = [
        ("oauth_consumer_key", creds.consumer_key.as_str()),
        ("oauth_nonce", nonce),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", ts.as_str()),
        ("oauth_token", creds.access_token.as_str()),
        ("oauth_version", "1.0"),
    ];
    let base = signature_base_string(method, url, &oauth, form_params)?;
    let sig = hmac_sha1_signature(&base, &creds.consumer_secret, &creds.access_secret);
    let mut parts: Vec<String> = oauth
        .iter()
        .map(|(k, v)| format!("{}=\"{}\"", k, percent_encode(v)))
        .collect();
    parts.push(format!("oauth_signature=\"{}\"", percent_encode(&sig)));
    parts.sort();
    Ok(format!("OAuth {}", parts.join(", ")))
}

/// [`authorization_header_with`] with a fresh nonce and the current time.
pub fn authorization_header(
    creds: &Credentials,
    method: &str,
    url: &str,
    form_params: &[(&str, &str)],
) -> Result<String, OAuthError> {
    authorization_header_with(
        creds,
        method,
        url,
        form_params,
        &new_nonce(),
        chrono::Utc::now().timestamp(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of X's "Creating a signature" guide
    /// (POST statuses/update with a status and include_entities).
    fn guide_creds() -> Credentials {
        Credentials {
            consumer_key: "xvz1evFS4wEEPTGEFPHBog".into(),
            consumer_secret: "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw".into(),
            access_token: "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb".into(),
            access_secret: "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE".into(),
        }
    }

    #[test]
    fn matches_the_published_example() {
        let c = guide_creds();
        let oauth = [
            ("oauth_consumer_key", c.consumer_key.as_str()),
            ("oauth_nonce", "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg"),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", "1318622958"),
            ("oauth_token", c.access_token.as_str()),
            ("oauth_version", "1.0"),
        ];
        let base = signature_base_string(
            "post",
            "https://api.twitter.com/1.1/statuses/update.json?include_entities=true",
            &oauth,
            &[(
                "status",
                "Hello Ladies + Gentlemen, a signed OAuth request!",
            )],
        )
        .expect("base string");
        assert!(base.starts_with(
            "POST&https%3A%2F%2Fapi.twitter.com%2F1.1%2Fstatuses%2Fupdate.json&include_entities%3Dtrue%26oauth_consumer_key"
        ));
        assert!(base.ends_with(
            "oauth_version%3D1.0%26status%3DHello%2520Ladies%2520%252B%2520Gentlemen%252C%2520a%2520signed%2520OAuth%2520request%2521"
        ));
        assert_eq!(
            hmac_sha1_signature(&base, &c.consumer_secret, &c.access_secret),
            "hCtSmYh+iHYCEqBWrE7C7hYmtUk="
        );
        let header = authorization_header_with(
            &c,
            "POST",
            "https://api.twitter.com/1.1/statuses/update.json?include_entities=true",
            &[(
                "status",
                "Hello Ladies + Gentlemen, a signed OAuth request!",
            )],
            "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg",
            1318622958,
        )
        .expect("header");
        assert!(header.starts_with("OAuth oauth_consumer_key=\"xvz1evFS4wEEPTGEFPHBog\""));
        assert!(header.contains("oauth_signature=\"hCtSmYh%2BiHYCEqBWrE7C7hYmtUk%3D\""));
    }

    #[test]
    fn base_uri_normalisation() {
        let (b, q) =
            base_uri_and_query("HTTPS://API.X.com:443/2/media/upload?media_id=12&command=STATUS")
                .expect("url");
        assert_eq!(b, "https://api.x.com/2/media/upload");
        assert_eq!(q.len(), 2);
        let (b, _) = base_uri_and_query("http://127.0.0.1:8080/2/tweets").expect("url");
        assert_eq!(b, "http://127.0.0.1:8080/2/tweets");
        assert!(base_uri_and_query("not a url").is_err());
    }

    #[test]
    fn percent_encoding_is_rfc3986() {
        assert_eq!(
            percent_encode("Ladies + Gentlemen"),
            "Ladies%20%2B%20Gentlemen"
        );
        assert_eq!(percent_encode("a-b._~"), "a-b._~");
        assert_eq!(percent_encode("é/☃"), "%C3%A9%2F%E2%98%83");
    }

    #[test]
    fn credentials_debug_is_redacted() {
        let c = Credentials {
            consumer_key: "ck-visible?".into(),
            consumer_secret: "cs-secret-value".into(),
            access_token: "at-secret-value".into(),
            access_secret: "as-secret-value".into(),
        };
        let dbg = format!("{c:?}");
        for secret in [
            "ck-visible?",
            "cs-secret-value",
            "at-secret-value",
            "as-secret-value",
        ] {
            assert!(!dbg.contains(secret), "{dbg}");
        }
    }

    #[test]
    fn nonces_are_fresh() {
        let a = new_nonce();
        let b = new_nonce();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
