//! Raincast's secrets provider: the named secrets of
//! [`raincast_config::secrets::Secrets`] read from SSM Parameter Store.
//!
//! Every parameter directly below `[secrets] ssm_prefix` is one secret: the
//! parameter `/raincast/prod/x_consumer_key` is the secret `x_consumer_key`.
//! They are SecureString parameters, read with decryption
//! (`GetParametersByPath`, the provider's only call), at start by [`load`]
//! and again every `refresh_seconds` by [`run`], so a value rotated in SSM
//! is in use after at most one refresh interval, without a restart. A failed
//! refresh keeps the values read before and is retried at the next tick.
//!
//! The provider knows no secret by name: consumers ask
//! [`Secrets::get`](raincast_config::secrets::Secrets::get) for theirs
//! (the X account, and whatever else is added later), and environment
//! variables (`RAINCAST_{NAME}`) win over SSM. Values are never logged:
//! logs name the secrets that changed, never their values.

use aws_sdk_ssm::error::DisplayErrorContext;
use aws_sdk_ssm::Client;
use raincast_config::secrets::{is_secret_name, Secrets, SecretsSection};
use raincast_config::Secret;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

/// Errors reading the parameters.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The SSM call failed (network, credentials, permissions, throttling).
    #[error("cannot read the SSM parameters under {prefix}: {reason}")]
    Ssm { prefix: String, reason: String },
}

/// Reads the secrets below one SSM path.
#[derive(Clone)]
pub struct SsmSecrets {
    client: Client,
    prefix: String,
}

impl std::fmt::Debug for SsmSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsmSecrets")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl SsmSecrets {
    /// A reader of the parameters directly below `prefix` (which ends in
    /// `/`, as `[secrets] ssm_prefix` is validated).
    pub fn new(sdk: &aws_config::SdkConfig, prefix: &str) -> Self {
        Self {
            client: Client::new(sdk),
            prefix: prefix.to_string(),
        }
    }

    /// The SSM path read.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Every parameter directly below the prefix, decrypted, by secret
    /// name. Parameters whose names are no secret names (see
    /// [`is_secret_name`]) are left out with a warning naming them.
    /// Parameters that are not SecureString (stored unencrypted) are read,
    /// with a warning naming them.
    pub async fn fetch(&self) -> Result<BTreeMap<String, Secret>, SecretsError> {
        let (out, plain) = self.fetch_noting_plain().await?;
        for p in plain {
            warn!(parameter = %p,
                "SSM parameter is not a SecureString: stored unencrypted; make it a SecureString");
        }
        Ok(out)
    }

    /// [`Self::fetch`], and the parameters read that are not SecureString.
    pub async fn fetch_noting_plain(
        &self,
    ) -> Result<(BTreeMap<String, Secret>, Vec<String>), SecretsError> {
        let mut out = BTreeMap::new();
        let mut plain = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .get_parameters_by_path()
                .path(&self.prefix)
                .recursive(false)
                .with_decryption(true)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| SecretsError::Ssm {
                    prefix: self.prefix.clone(),
                    reason: DisplayErrorContext(&e).to_string(),
                })?;
            for p in page.parameters() {
                let (Some(full), Some(value)) = (p.name(), p.value()) else {
                    continue;
                };
                let name = full.strip_prefix(&self.prefix).unwrap_or(full);
                if !is_secret_name(name) {
                    warn!(parameter = %full,
                        "SSM parameter ignored: a secret's name is lower case letters, digits and '_'");
                    continue;
                }
                if p.r#type() != Some(&aws_sdk_ssm::types::ParameterType::SecureString) {
                    plain.push(full.to_string());
                }
                out.insert(name.to_string(), Secret::new(value));
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok((out, plain)),
            }
        }
    }

    /// Reads the parameters into `secrets`; returns the names that changed.
    pub async fn refresh(&self, secrets: &Secrets) -> Result<Vec<String>, SecretsError> {
        let fetched = self.fetch().await?;
        Ok(secrets.replace_fetched(fetched))
    }
}

/// At start: when `section` names an SSM prefix, reads its parameters into
/// `secrets` (a failure stops the start) and returns the reader for [`run`].
pub async fn load(
    section: &SecretsSection,
    sdk: &aws_config::SdkConfig,
    secrets: &Secrets,
) -> Result<Option<SsmSecrets>, SecretsError> {
    let Some(prefix) = &section.ssm_prefix else {
        return Ok(None);
    };
    let ssm = SsmSecrets::new(sdk, prefix);
    let names = ssm.refresh(secrets).await?;
    info!(prefix = %prefix, secrets = ?names, refresh_s = section.refresh.as_secs(),
        "secrets read from SSM");
    if names.is_empty() {
        warn!(prefix = %prefix, "no parameters under the SSM prefix (a typo in [secrets] ssm_prefix?)");
    }
    let shadowed = secrets.shadowed_by_env();
    if !shadowed.is_empty() {
        warn!(secrets = ?shadowed,
            "environment variables override these SSM parameters (rotation in SSM has no effect on them)");
    }
    Ok(Some(ssm))
}

/// Reads the parameters again every `refresh` until `shutdown`, logging the
/// names of the secrets that changed. A failed read keeps the values read
/// before and is logged.
pub async fn run(
    refresh: Duration,
    ssm: SsmSecrets,
    secrets: Secrets,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate: `load` has just read them.
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            _ = tick.tick() => {}
        }
        match ssm.refresh(&secrets).await {
            Ok(changed) if changed.is_empty() => {}
            Ok(changed) => {
                info!(prefix = %ssm.prefix, secrets = ?changed, "secrets changed in SSM")
            }
            Err(e) => warn!(error = %e, "secrets refresh failed; keeping the values read before"),
        }
    }
}
