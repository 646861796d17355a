//! AWS SDK configuration shared by the S3 and DynamoDB adapters.
//!
//! Production uses [`sdk_config_from_env`]: the SDK's own default chain, so the
//! standard variables (`AWS_REGION`, `AWS_PROFILE`, `AWS_ACCESS_KEY_ID`, ...,
//! `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL_DYNAMODB`)
//! and instance or task roles work as the SDK documents them. Tests use
//! [`sdk_config_for_endpoint`], which never reads the process environment.

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use std::time::Duration;

/// How long to wait for a TCP connection to AWS or a compatible server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Upper bound for one attempt of one API call (a 400 KB item or a page of a
/// listing takes far less).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// SDK-level attempts per call (the SDK backs off between them). The ingest
/// job adds its own, longer backoff between runs on top.
pub const MAX_ATTEMPTS: u32 = 3;

fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .build()
}

/// The SDK's default configuration chain with Raincast's timeouts and retries.
/// `region` fills in a region when the environment names none (a compatible
/// server needs one to sign requests). `anonymous` sends unsigned requests
/// (public buckets).
pub async fn sdk_config_from_env(default_region: &str, anonymous: bool) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts())
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS));
    if anonymous {
        loader = loader.no_credentials();
    }
    let cfg = loader.load().await;
    if cfg.region().is_some() {
        return cfg;
    }
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(default_region.to_string()))
        .timeout_config(timeouts())
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS));
    if anonymous {
        loader = loader.no_credentials();
    }
    loader.load().await
}

/// The S3 client configuration and whether its requests go unsigned.
///
/// `anonymous`: `Some(true)` always sends unsigned requests, `Some(false)`
/// always signs, `None` (the default) signs when the SDK's default chain
/// finds credentials and otherwise sends unsigned requests, so that a public
/// bucket (NOAA's NEXRAD archive) works on a machine with no AWS account.
/// Only a chain that found *no* credentials at all falls back; a provider
/// that failed (an instance role timing out, say) keeps the signed
/// configuration, whose requests then report the credentials error.
pub async fn s3_sdk_config_from_env(
    default_region: &str,
    anonymous: Option<bool>,
) -> (SdkConfig, bool) {
    if let Some(anonymous) = anonymous {
        return (
            sdk_config_from_env(default_region, anonymous).await,
            anonymous,
        );
    }
    let signed = sdk_config_from_env(default_region, false).await;
    if credentials_missing(&signed).await {
        (sdk_config_from_env(default_region, true).await, true)
    } else {
        (signed, false)
    }
}

/// True when the configuration's credential chain holds no credentials at
/// all (as opposed to a provider that failed).
pub async fn credentials_missing(cfg: &SdkConfig) -> bool {
    use aws_sdk_s3::config::ProvideCredentials;
    match cfg.credentials_provider() {
        None => true,
        Some(provider) => matches!(
            provider.provide_credentials().await,
            Err(aws_credential_types::provider::error::CredentialsError::CredentialsNotLoaded(_))
        ),
    }
}

/// A configuration for an S3- or DynamoDB-compatible server at `endpoint_url`
/// with fixed dummy credentials, independent of the process environment.
/// `max_attempts` bounds the SDK's own retries (tests of outages use 1).
pub async fn sdk_config_for_endpoint(endpoint_url: &str, max_attempts: u32) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint_url)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "raincast-static",
        ))
        .timeout_config(timeouts())
        .retry_config(RetryConfig::standard().with_max_attempts(max_attempts.max(1)))
        .load()
        .await
}

/// Maps an SDK error to a [`crate::StoreError`]: connection failures and
/// timeouts are transient ([`crate::StoreError::Unavailable`]); service errors
/// carry their code and message.
pub(crate) fn sdk_error<E, R>(
    backend: &'static str,
    op: &'static str,
    err: aws_sdk_dynamodb::error::SdkError<E, R>,
) -> crate::StoreError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_dynamodb::error::SdkError;
    match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            crate::StoreError::Unavailable {
                backend,
                op,
                reason: error_chain(&err),
            }
        }
        SdkError::ServiceError(se) => {
            let e = se.err();
            let code = e.code().unwrap_or("unknown");
            let reason = format!("{code}: {}", e.message().unwrap_or("no message"));
            let throttled = matches!(
                code,
                "ThrottlingException"
                    | "ProvisionedThroughputExceededException"
                    | "RequestLimitExceeded"
                    | "SlowDown"
                    | "ServiceUnavailable"
                    | "InternalServerError"
                    | "InternalError"
            );
            if throttled {
                crate::StoreError::Unavailable {
                    backend,
                    op,
                    reason,
                }
            } else {
                crate::StoreError::Backend {
                    backend,
                    op,
                    reason,
                }
            }
        }
        _ => crate::StoreError::Backend {
            backend,
            op,
            reason: error_chain(&err),
        },
    }
}

/// An error and its sources on one line.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut src = err.source();
    while let Some(e) = src {
        s.push_str(": ");
        s.push_str(&e.to_string());
        src = e.source();
    }
    s
}
