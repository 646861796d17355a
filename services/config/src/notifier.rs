//! The `[notifier]` section: the places to watch and where posts go.
//!
//! ```toml
//! [notifier]
//! enabled = true                # default: on when places are configured
//! outbox = "var/outbox"         # RAINCAST_OUTBOX
//! dry_run = false               # outbox only, store never written
//! x_api_base = "https://api.x.com"  # RAINCAST_X_API_BASE
//!
//! [[notifier.places]]
//! name = "Zürich"
//! lat = 47.377
//! lon = 8.540
//! time_zone = "Europe/Zurich"
//! ```
//!
//! X credentials are secrets ([`crate::secrets`]): the four named in
//! [`X_SECRET_NAMES`], from `RAINCAST_X_CONSUMER_KEY`, … or the SSM
//! parameters `{ssm_prefix}x_consumer_key`, …; all four or none. They are
//! read again for every notifier pass ([`x_secrets`]), so rotated values
//! are used without a restart, and never print.

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
    places: Vec<Place>,
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
            Some((v, setting, origin)) => {
                let v = v.trim().trim_end_matches('/').to_string();
                if !(v.starts_with("http://") || v.starts_with("https://")) {
                    return Err(invalid(
                        setting,
                        origin,
                        format!("{v:?} is not an http(s) URL"),
                    ));
                }
                Some(v)
            }
            None => None,
        };
        Ok(Self {
            enabled: f.enabled,
            outbox,
            dry_run: f.dry_run.unwrap_or(false),
            places: f.places.clone(),
            x_api_base,
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
mod tests {
    use super::*;

    #[test]
    fn names_and_variables_agree() {
        for (name, var) in X_SECRET_NAMES.iter().zip(X_CREDENTIAL_VARS) {
            assert_eq!(env_var_for_secret(name), var);
        }
    }
}
