/// What went wrong talking to the DCS, split by what the HA loop does about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DcsError {
    /// No endpoint answered within the retry budget: the loop treats the DCS as down.
    #[error("etcd is unreachable ({endpoints}): {detail}")]
    Unreachable { endpoints: String, detail: String },
    /// The lease this agent's keys hang on no longer exists (expired while we were away).
    #[error("our etcd lease {0:x} has expired")]
    LeaseExpired(i64),
    /// etcd answered but refused the request (auth, permissions, bad request).
    #[error("etcd refused the request: {0}")]
    Rejected(String),
    /// The caller gave something unusable (bad endpoint URL, ...).
    #[error("invalid DCS settings: {0}")]
    Settings(String),
}

impl DcsError {
    pub fn is_unreachable(&self) -> bool {
        matches!(self, DcsError::Unreachable { .. })
    }
}
