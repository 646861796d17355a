//! The `[secrets]` section and [`Secrets`], the process's named secret
//! values (name → [`Secret`]).
//!
//! ```toml
//! [secrets]
//! ssm_prefix = "/raincast/prod/"   # RAINCAST_SECRETS__SSM_PREFIX; none: environment only
//! refresh_seconds = 300            # RAINCAST_SECRETS__REFRESH_SECONDS; 1..=600
//! ```
//!
//! A secret has a name such as `x_consumer_key` (lower case, digits and
//! `_`). It comes from the environment variable `RAINCAST_{NAME}`
//! (`RAINCAST_X_CONSUMER_KEY`) or, when `ssm_prefix` is set, from the SSM
//! parameter `{ssm_prefix}{name}` (`/raincast/prod/x_consumer_key`, a
//! SecureString). The variable wins, so one host or a container can set a
//! secret by hand. Parameters are read at start and again every
//! `refresh_seconds` (raincast-secrets); a consumer asks [`Secrets::get`]
//! each time it needs a value, so a rotated parameter is in use after at
//! most one refresh, without a restart. Consumers (the X account; others
//! plug in the same way) only know names; this module never does I/O.

use crate::{invalid, ConfigError, Origins, Secret};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Default interval between two reads of the SSM parameters.
pub const DEFAULT_REFRESH_SECONDS: u64 = 300;
/// Longest interval allowed: a rotated secret is in use within 10 minutes.
pub const MAX_REFRESH_SECONDS: u64 = 600;

/// The `[secrets]` table as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct SecretsFile {
    ssm_prefix: Option<String>,
    refresh_seconds: Option<u64>,
}

/// The validated `[secrets]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretsSection {
    /// SSM parameter path holding the secrets, starting and ending with `/`;
    /// `None`: secrets come from the environment only.
    pub ssm_prefix: Option<String>,
    /// How often the parameters are read again.
    pub refresh: Duration,
}

impl Default for SecretsSection {
    fn default() -> Self {
        Self {
            ssm_prefix: None,
            refresh: Duration::from_secs(DEFAULT_REFRESH_SECONDS),
        }
    }
}

impl SecretsSection {
    pub(crate) fn build(f: &SecretsFile, origins: &Origins) -> Result<Self, ConfigError> {
        let refresh_s = f.refresh_seconds.unwrap_or(DEFAULT_REFRESH_SECONDS);
        if !(1..=MAX_REFRESH_SECONDS).contains(&refresh_s) {
            let (setting, origin) = origins.of("secrets", "refresh_seconds");
            return Err(invalid(
                &setting,
                origin,
                format!("{refresh_s} is not in 1..={MAX_REFRESH_SECONDS}"),
            ));
        }
        let ssm_prefix = match f.ssm_prefix.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(p) => {
                let (setting, origin) = origins.of("secrets", "ssm_prefix");
                Some(validate_prefix(p).map_err(|e| invalid(&setting, origin, e))?)
            }
        };
        Ok(Self {
            ssm_prefix,
            refresh: Duration::from_secs(refresh_s),
        })
    }
}

/// An SSM parameter path: `/a/b/` (a trailing `/` is added), the
/// characters SSM allows in names, not below the reserved `/aws` or `/ssm`.
fn validate_prefix(p: &str) -> Result<String, String> {
    if !p.starts_with('/') {
        return Err(format!(
            "{p:?} must start with '/' (e.g. \"/raincast/prod/\")"
        ));
    }
    if let Some(c) = p
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_.-/".contains(*c)))
    {
        return Err(format!(
            "{p:?}: {c:?} is not allowed in an SSM parameter path"
        ));
    }
    if p.contains("//") {
        return Err(format!("{p:?} has an empty path segment"));
    }
    let first = p.trim_start_matches('/').split('/').next().unwrap_or("");
    if ["aws", "ssm"].contains(&first.to_ascii_lowercase().as_str()) {
        return Err(format!("{p:?}: /{first} is reserved by AWS"));
    }
    if p.len() > 1000 {
        return Err(format!("{p:?} is longer than 1000 characters"));
    }
    let mut p = p.to_string();
    if !p.ends_with('/') {
        p.push('/');
    }
    Ok(p)
}

/// The environment variable of the secret `name`: `RAINCAST_` and the name
/// in upper case (`x_consumer_key` → `RAINCAST_X_CONSUMER_KEY`).
pub fn env_var_for_secret(name: &str) -> String {
    format!("RAINCAST_{}", name.to_ascii_uppercase())
}

/// True for a valid secret name: 1 to 128 of `a-z`, `0-9`, `_`.
pub fn is_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Which layer a secret's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretOrigin {
    /// `RAINCAST_{NAME}`.
    Environment,
    /// The SSM parameter `{ssm_prefix}{name}`.
    Ssm,
}

impl SecretOrigin {
    /// For messages: "environment" or "SSM".
    pub fn as_str(self) -> &'static str {
        match self {
            SecretOrigin::Environment => "environment",
            SecretOrigin::Ssm => "SSM",
        }
    }
}

#[derive(Default)]
struct Layers {
    /// `RAINCAST_*` variables of the process, as given at start.
    env: HashMap<String, Secret>,
    /// The last values read from SSM, by secret name.
    fetched: BTreeMap<String, Secret>,
}

/// The process's secrets, shared by every service and swapped as a whole
/// when the provider reads them again. Cloning shares the values. `Debug`
/// shows names only.
#[derive(Clone, Default)]
pub struct Secrets(Arc<RwLock<Layers>>);

impl Secrets {
    /// The secrets the environment holds (`RAINCAST_{NAME}` variables); no
    /// SSM values yet.
    pub fn from_env(env: &HashMap<String, String>) -> Self {
        let env = env
            .iter()
            .filter(|(k, v)| k.starts_with("RAINCAST_") && !v.trim().is_empty())
            .map(|(k, v)| (k.clone(), Secret::new(v.trim())))
            .collect();
        Secrets(Arc::new(RwLock::new(Layers {
            env,
            fetched: BTreeMap::new(),
        })))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Layers> {
        // A panic while holding the lock cannot leave the maps half-written
        // (each write is one assignment), so a poisoned lock is still sound.
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The current value of `name` and where it came from: the environment
    /// variable first, else the last value read from SSM.
    pub fn get_with_origin(&self, name: &str) -> Option<(Secret, SecretOrigin)> {
        let layers = self.read();
        if let Some(v) = layers.env.get(&env_var_for_secret(name)) {
            return Some((v.clone(), SecretOrigin::Environment));
        }
        layers
            .fetched
            .get(name)
            .map(|v| (v.clone(), SecretOrigin::Ssm))
    }

    /// The current value of `name` (see [`Secrets::get_with_origin`]).
    pub fn get(&self, name: &str) -> Option<Secret> {
        self.get_with_origin(name).map(|(v, _)| v)
    }

    /// Replaces every value read from SSM by `fetched`; returns the names
    /// whose value was added, changed or removed (sorted).
    pub fn replace_fetched(&self, fetched: BTreeMap<String, Secret>) -> Vec<String> {
        let mut layers = self.0.write().unwrap_or_else(|e| e.into_inner());
        let mut changed: Vec<String> = fetched
            .iter()
            .filter(|(k, v)| layers.fetched.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .chain(
                layers
                    .fetched
                    .keys()
                    .filter(|k| !fetched.contains_key(*k))
                    .cloned(),
            )
            .collect();
        changed.sort();
        changed.dedup();
        layers.fetched = fetched;
        changed
    }

    /// Names read from SSM that an environment variable overrides.
    pub fn shadowed_by_env(&self) -> Vec<String> {
        let layers = self.read();
        layers
            .fetched
            .keys()
            .filter(|k| layers.env.contains_key(&env_var_for_secret(k)))
            .cloned()
            .collect()
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let layers = self.read();
        f.debug_struct("Secrets")
            .field("from_ssm", &layers.fetched.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tests::env;
    use crate::{Config, Overrides};

    #[test]
    fn section_from_file_and_environment() {
        let c = Config::from_toml("", &env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c.secrets, SecretsSection::default());
        assert!(c.secrets.refresh <= Duration::from_secs(MAX_REFRESH_SECONDS));
        let c = Config::from_toml(
            "[secrets]\nssm_prefix = \"/raincast/prod\"\nrefresh_seconds = 60\n",
            &env(&[("RAINCAST_SECRETS__REFRESH_SECONDS", "30")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.secrets.ssm_prefix.as_deref(), Some("/raincast/prod/"));
        assert_eq!(c.secrets.refresh, Duration::from_secs(30));
        let c = Config::from_toml(
            "",
            &env(&[("RAINCAST_SECRETS__SSM_PREFIX", "/raincast/test/")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.secrets.ssm_prefix.as_deref(), Some("/raincast/test/"));
    }

    #[test]
    fn bad_settings_name_their_origin() {
        for (text, vars, want) in [
            (
                "[secrets]\nrefresh_seconds = 601",
                vec![],
                "secrets.refresh_seconds (from config file)",
            ),
            (
                "",
                vec![("RAINCAST_SECRETS__REFRESH_SECONDS", "0")],
                "RAINCAST_SECRETS__REFRESH_SECONDS (from environment)",
            ),
            (
                "[secrets]\nssm_prefix = \"raincast/prod/\"",
                vec![],
                "secrets.ssm_prefix (from config file)",
            ),
            (
                "",
                vec![("RAINCAST_SECRETS__SSM_PREFIX", "/aws/x/")],
                "RAINCAST_SECRETS__SSM_PREFIX (from environment)",
            ),
            (
                "[secrets]\nssm_prefix = \"/a b/\"",
                vec![],
                "secrets.ssm_prefix (from config file)",
            ),
            ("[secrets]\nkey = \"v\"", vec![], "key"),
        ] {
            let err = Config::from_toml(text, &env(&vars), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{text:?} {vars:?}: {err}");
        }
    }

    #[test]
    fn environment_wins_and_refreshes_replace_ssm_values() {
        let s = Secrets::from_env(&env(&[("RAINCAST_X_ACCESS_TOKEN", "from-env")]));
        assert_eq!(s.get("x_consumer_key"), None);
        let changed = s.replace_fetched(BTreeMap::from([
            ("x_consumer_key".to_string(), Secret::new("v1")),
            ("x_access_token".to_string(), Secret::new("ssm")),
        ]));
        assert_eq!(changed, ["x_access_token", "x_consumer_key"]);
        assert_eq!(
            s.get_with_origin("x_access_token"),
            Some((Secret::new("from-env"), SecretOrigin::Environment))
        );
        assert_eq!(s.shadowed_by_env(), ["x_access_token"]);
        let shared = s.clone();
        let changed = shared.replace_fetched(BTreeMap::from([(
            "x_consumer_key".to_string(),
            Secret::new("v2"),
        )]));
        assert_eq!(changed, ["x_access_token", "x_consumer_key"]);
        assert_eq!(
            s.get_with_origin("x_consumer_key"),
            Some((Secret::new("v2"), SecretOrigin::Ssm))
        );
        assert!(s.replace_fetched(shared_snapshot(&s)).is_empty());
    }

    fn shared_snapshot(s: &Secrets) -> BTreeMap<String, Secret> {
        BTreeMap::from([(
            "x_consumer_key".to_string(),
            s.get("x_consumer_key").unwrap(),
        )])
    }

    #[test]
    fn debug_shows_names_never_values() {
        let s = Secrets::from_env(&env(&[("RAINCAST_X_ACCESS_TOKEN", "env-s3cr3t")]));
        s.replace_fetched(BTreeMap::from([(
            "x_consumer_key".to_string(),
            Secret::new("ssm-s3cr3t"),
        )]));
        let text = format!("{s:?}");
        assert!(text.contains("x_consumer_key"), "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");
    }

    #[test]
    fn names_and_variables() {
        assert_eq!(
            env_var_for_secret("x_consumer_key"),
            "RAINCAST_X_CONSUMER_KEY"
        );
        assert!(is_secret_name("mastodon_token2"));
        for bad in ["", "X_KEY", "x-key", "x/key", &"a".repeat(129)] {
            assert!(!is_secret_name(bad), "{bad}");
        }
    }
}
