//! The one error type of the storage layer.

/// Why a storage operation failed. `kind()` gives a short stable code for
/// metrics labels and logs; `is_transient()` tells callers whether trying
/// again later can help (network down, throttled) or not (bad input).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or timed out: retry later.
    #[error("{backend}: unavailable during {op}: {reason}")]
    Unavailable {
        backend: &'static str,
        op: &'static str,
        reason: String,
    },
    /// The backend answered with an error that retrying will not fix.
    #[error("{backend}: {op} failed: {reason}")]
    Backend {
        backend: &'static str,
        op: &'static str,
        reason: String,
    },
    /// An object or table that must exist does not.
    #[error("{backend}: {what} not found")]
    NotFound { backend: &'static str, what: String },
    /// An object exists but cannot be read (a file without read permission,
    /// a folder where a file was listed): retrying without a change to it
    /// will not help, and other objects are not affected.
    #[error("{backend}: cannot read {what}: {reason}")]
    Unreadable {
        backend: &'static str,
        what: String,
        reason: String,
    },
    /// An item would break a hard limit of the backend (DynamoDB: 400 KB per
    /// item). Raised before anything is sent.
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        what: String,
        size: usize,
        limit: usize,
    },
    /// An argument or configuration value is unusable.
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// A stored record could not be read back.
    #[error("corrupt record {what}: {reason}")]
    Corrupt { what: String, reason: String },
    /// A conditional operation lost a race it cannot resolve by itself
    /// (e.g. a compare-and-set on a record that changed meanwhile).
    #[error("conflict on {what}: {reason}")]
    Conflict { what: String, reason: String },
}

impl StoreError {
    /// Short machine-readable code: `unavailable`, `backend`, `not_found`,
    /// `unreadable`, `too_large`, `invalid`, `corrupt`, `conflict`.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Unavailable { .. } => "unavailable",
            StoreError::Backend { .. } => "backend",
            StoreError::NotFound { .. } => "not_found",
            StoreError::Unreadable { .. } => "unreadable",
            StoreError::TooLarge { .. } => "too_large",
            StoreError::Invalid { .. } => "invalid",
            StoreError::Corrupt { .. } => "corrupt",
            StoreError::Conflict { .. } => "conflict",
        }
    }

    /// True when the same call may succeed later without any change.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        StoreError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>, reason: impl Into<String>) -> Self {
        StoreError::Corrupt {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// Result alias of the storage layer.
pub type StoreResult<T> = Result<T, StoreError>;
