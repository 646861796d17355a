//! The `[notifier]` section: the places to watch and where posts go.
//!
//! ```toml
//! [notifier]
//! enabled = true                # default: on when places are configured
//! outbox = "var/outbox"         # RAINCAST_OUTBOX
//! dry_run = false               # outbox only, store never written
//! x_api_base = "https://api.x.com"  # RAINCAST_X_API_BASE
//! public_url = "https://rain.example.org"  # base of the links in webhooks
//! allow_private_webhooks = false  # true: webhooks may target private/loopback addresses
//! max_subscriptions_per_key = 100
//!
//! [notifier.mastodon]           # post to Mastodon (token: RAINCAST_MASTODON_TOKEN)
//! base_url = "https://mastodon.social"
//!
//! [[notifier.places]]
//! name = "Zürich"
//! lat = 47.377
//! lon = 8.540
//! time_zone = "Europe/Zurich"
//! ```
//!
//! Posting credentials are secrets ([`crate::secrets`]): the four X
//! credentials named in [`X_SECRET_NAMES`] (`RAINCAST_X_CONSUMER_KEY`, … or
//! the SSM parameters `{ssm_prefix}x_consumer_key`, …; all four or none),
//! and the Mastodon access token [`MASTODON_TOKEN_NAME`]
//! (`RAINCAST_MASTODON_TOKEN` or `{ssm_prefix}mastodon_token`). They are
//! read again for every notifier pass ([`posting_account`]), so rotated
//! values are used without a restart, and never print.

use crate::place::Place;
use crate::secrets::{env_var_for_secret, SecretOrigin, Secrets};
use crate::{invalid, ConfigError, Env, Origins, Secret, DEFAULT_VAR_DIR};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The names of the X credentials, in [`XSecrets`] order.
pub const X_SECRET_NAMES: [&str; 4] = [
    "x_consumer_key",
    "x_consumer_secret",
    "x_access_token",
    "x_access_secret",
];

/// Their environment variables (`RAINCAST_X_CONSUMER_KEY`, …), in the same order.
pub const X_CREDENTIAL_VARS: [&str; 4] = [
    "RAINCAST_X_CONSUMER_KEY",
    "RAINCAST_X_CONSUMER_SECRET",
    "RAINCAST_X_ACCESS_TOKEN",
    "RAINCAST_X_ACCESS_SECRET",
];

/// The `[notifier]` table as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct NotifierFile {
    enabled: Option<bool>,
    outbox: Option<PathBuf>,
    dry_run: Option<bool>,
    x_api_base: Option<String>,
    public_url: Option<String>,
    allow_private_webhooks: Option<bool>,
    max_subscriptions_per_key: Option<usize>,
    mastodon: Option<MastodonFile>,
    places: Vec<Place>,
}

/// The `[notifier.mastodon]` table as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct MastodonFile {
    base_url: Option<String>,
}

/// Default of `max_subscriptions_per_key`.
pub const DEFAULT_MAX_SUBSCRIPTIONS_PER_KEY: usize = 100;

/// The secret holding the Mastodon access token (a token with the
/// `write:media` and `write:statuses` scopes).
pub const MASTODON_TOKEN_NAME: &str = "mastodon_token";

/// Its environment variable.
pub const MASTODON_TOKEN_VAR: &str = "RAINCAST_MASTODON_TOKEN";

/// The posting Mastodon account (its token is the secret
/// [`MASTODON_TOKEN_NAME`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MastodonSection {
    /// Instance URL without a trailing slash, e.g. `https://mastodon.social`.
    pub base_url: String,
}

/// Where the notifier posts, from the section and the secrets as they are now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostingAccount {
    /// No account: posts go to the outbox.
    None,
    /// X, with these credentials.
    X(XSecrets),
    /// Mastodon at `base_url`, with this token.
    Mastodon { base_url: String, token: Secret },
}

/// The posting account: X when its four credentials are set, Mastodon when
/// `[notifier.mastodon]` is configured (its token must then be set), else
/// none. Errors name the setting or secret: an incomplete X set, a
/// Mastodon table without a token or a token without the table, and both
/// accounts at once (the notifier posts to one).
///
/// `mastodon_base_url` is `[notifier.mastodon] base_url`, when set.
pub fn posting_account(
    mastodon_base_url: Option<&str>,
    secrets: &Secrets,
) -> Result<PostingAccount, ConfigError> {
    let x = x_secrets(secrets)?;
    let token = secrets.get_with_origin(MASTODON_TOKEN_NAME);
    match (mastodon_base_url, token, x) {
        (Some(_), _, Some(_)) => Err(invalid(
            "notifier.mastodon",
            "config file",
            "both X credentials and a Mastodon account are set; the notifier posts to one",
        )),
        (Some(base_url), Some((token, _)), None) => Ok(PostingAccount::Mastodon {
            base_url: base_url.to_string(),
            token,
        }),
        (Some(_), None, None) => Err(invalid(
            MASTODON_TOKEN_VAR,
            "environment or SSM",
            "not set, and [notifier.mastodon] is configured",
        )),
        (None, Some((_, origin)), _) => Err(invalid(
            MASTODON_TOKEN_VAR,
            origin.as_str(),
            "is set but [notifier.mastodon] base_url is not",
        )),
        (None, None, Some(x)) => Ok(PostingAccount::X(x)),
        (None, None, None) => Ok(PostingAccount::None),
    }
}

/// OAuth 1.0a user-context credentials of the posting X account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XSecrets {
    pub consumer_key: Secret,
    pub consumer_secret: Secret,
    pub access_token: Secret,
    pub access_secret: Secret,
}

/// The validated `[notifier]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifierSection {
    /// `None`: on when places are configured (and for the demo radar).
    pub enabled: Option<bool>,
    /// Outbox folder (default var/outbox).
    pub outbox: PathBuf,
    /// Only ever write to the outbox, and keep the store untouched.
    pub dry_run: bool,
    /// The places, each validated.
    pub places: Vec<Place>,
    /// X API base URL without a trailing slash (default https://api.x.com).
    pub x_api_base: Option<String>,
    /// Base URL of this service as its users reach it (links in webhook
    /// bodies); `None`: links are paths.
    pub public_url: Option<String>,
    /// Let webhooks target loopback, private, link-local and metadata
    /// addresses, and plain `http` (tests, private networks). Default false.
    pub allow_private_webhooks: bool,
    /// Most webhook subscriptions one API key may hold (default 100).
    pub max_subscriptions_per_key: usize,
    /// The Mastodon account, when `[notifier.mastodon]` is set.
    pub mastodon: Option<MastodonSection>,
}

/// An `http(s)` URL from `setting`, without its trailing slash.
fn http_url(v: &str, setting: &str, origin: &'static str) -> Result<String, ConfigError> {
    let v = v.trim().trim_end_matches('/').to_string();
    if !(v.starts_with("http://") || v.starts_with("https://")) {
        return Err(invalid(
            setting,
            origin,
            format!("{v:?} is not an http(s) URL"),
        ));
    }
    Ok(v)
}

impl NotifierSection {
    pub(crate) fn build(
        f: &NotifierFile,
        env: &Env<'_>,
        origins: &Origins,
    ) -> Result<Self, ConfigError> {
        for (i, p) in f.places.iter().enumerate() {
            p.validate().map_err(|e| {
                let (setting, origin) = origins.of("notifier", "places");
                invalid(&format!("{setting}[{i}]"), origin, e.to_string())
            })?;
        }
        crate::place::check_unique(&f.places).map_err(|e| {
            let (setting, origin) = origins.of("notifier", "places");
            invalid(&setting, origin, e.to_string())
        })?;
        let outbox = env
            .text("RAINCAST_OUTBOX")
            .map(PathBuf::from)
            .or_else(|| f.outbox.clone())
            .unwrap_or_else(|| Path::new(DEFAULT_VAR_DIR).join("outbox"));
        let x_api_base = match env.text("RAINCAST_X_API_BASE") {
            Some(v) => Some((v, "RAINCAST_X_API_BASE", "environment")),
            None => f
                .x_api_base
                .clone()
                .map(|v| (v, "notifier.x_api_base", "config file")),
        };
        let x_api_base = match x_api_base {
            Some((v, setting, origin)) => Some(http_url(&v, setting, origin)?),
            None => None,
        };
        let public_url = match &f.public_url {
            Some(v) => {
                let (setting, origin) = origins.of("notifier", "public_url");
                Some(http_url(v, &setting, origin)?)
            }
            None => None,
        };
        let max_subscriptions_per_key = f
            .max_subscriptions_per_key
            .unwrap_or(DEFAULT_MAX_SUBSCRIPTIONS_PER_KEY);
        if max_subscriptions_per_key == 0 {
            let (setting, origin) = origins.of("notifier", "max_subscriptions_per_key");
            return Err(invalid(&setting, origin, "must be at least 1"));
        }
        let mastodon = match &f.mastodon {
            Some(m) => {
                let (setting, origin) = origins.of("notifier", "mastodon");
                let Some(base) = &m.base_url else {
                    return Err(invalid(
                        &format!("{setting}.base_url"),
                        origin,
                        "is required in [notifier.mastodon]",
                    ));
                };
                let base_url = http_url(base, &format!("{setting}.base_url"), origin)?;
                Some(MastodonSection { base_url })
            }
            None => None,
        };
        Ok(Self {
            enabled: f.enabled,
            outbox,
            dry_run: f.dry_run.unwrap_or(false),
            places: f.places.clone(),
            x_api_base,
            public_url,
            allow_private_webhooks: f.allow_private_webhooks.unwrap_or(false),
            max_subscriptions_per_key,
            mastodon,
        })
    }
}

/// The current X credentials: all four secrets, or none (`Ok(None)`).
/// An incomplete set is an error naming the first missing variable.
pub fn x_secrets(secrets: &Secrets) -> Result<Option<XSecrets>, ConfigError> {
    let values: Vec<Option<(Secret, SecretOrigin)>> = X_SECRET_NAMES
        .iter()
        .map(|k| secrets.get_with_origin(k))
        .collect();
    if values.iter().all(Option::is_none) {
        return Ok(None);
    }
    let missing: Vec<String> = X_SECRET_NAMES
        .iter()
        .zip(&values)
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| env_var_for_secret(k))
        .collect();
    if let Some(first) = missing.first() {
        let from: Vec<String> = X_SECRET_NAMES
            .iter()
            .zip(&values)
            .filter_map(|(k, v)| v.as_ref().map(|(_, o)| format!("{k} from {}", o.as_str())))
            .collect();
        return Err(invalid(
            first,
            "environment or SSM",
            format!(
                "X credentials incomplete: {missing:?} not set (all four are needed; have {from:?})"
            ),
        ));
    }
    let mut it = values.into_iter().flatten().map(|(v, _)| v);
    let mut next = || it.next().unwrap_or_else(|| Secret::new(""));
    Ok(Some(XSecrets {
        consumer_key: next(),
        consumer_secret: next(),
        access_token: next(),
        access_secret: next(),
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_posting_account_follows_the_secrets_as_they_change() {
        use std::collections::{BTreeMap, HashMap};
        let secrets = Secrets::from_env(&HashMap::new());
        let base = Some("https://m.example.org");
        // The Mastodon table without its token is an error naming the token.
        let err = posting_account(base, &secrets).unwrap_err().to_string();
        assert!(err.contains(MASTODON_TOKEN_VAR), "{err}");
        // The token arrives from SSM, then is rotated: each call sees the
        // current value.
        for token in ["t-1", "t-2"] {
            secrets.replace_fetched(BTreeMap::from([(
                MASTODON_TOKEN_NAME.to_string(),
                Secret::new(token),
            )]));
            match posting_account(base, &secrets).unwrap() {
                PostingAccount::Mastodon { base_url, token: t } => {
                    assert_eq!(base_url, "https://m.example.org");
                    assert_eq!(t.expose(), token);
                }
                other => panic!("not Mastodon: {other:?}"),
            }
        }
        // A token without the table, and X beside Mastodon, are errors.
        let err = posting_account(None, &secrets).unwrap_err().to_string();
        assert!(err.contains("SSM") && err.contains("base_url"), "{err}");
        let mut all: BTreeMap<String, Secret> = X_SECRET_NAMES
            .iter()
            .map(|k| (k.to_string(), Secret::new("v")))
            .collect();
        all.insert(MASTODON_TOKEN_NAME.into(), Secret::new("t-2"));
        secrets.replace_fetched(all);
        let err = posting_account(base, &secrets).unwrap_err().to_string();
        assert!(err.contains("posts to one"), "{err}");
        // X alone once the token is gone.
        secrets.replace_fetched(
            X_SECRET_NAMES
                .iter()
                .map(|k| (k.to_string(), Secret::new("v")))
                .collect(),
        );
        assert!(matches!(
            posting_account(None, &secrets).unwrap(),
            PostingAccount::X(_)
        ));
        assert_eq!(env_var_for_secret(MASTODON_TOKEN_NAME), MASTODON_TOKEN_VAR);
    }

    #[test]
    fn names_and_variables_agree() {
        for (name, var) in X_SECRET_NAMES.iter().zip(X_CREDENTIAL_VARS) {
            assert_eq!(env_var_for_secret(name), var);
        }
    }
}
