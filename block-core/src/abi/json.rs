//! The JSON documents that cross the ABI on cold paths (info, reports,
//! schemas, option lists), encoded and decoded with the errors each side
//! reports.

use super::BcStrSink;
use crate::error::{BlockError, Result};

/// Encodes a result document (exporting side).
pub(crate) fn to_json<T: serde::Serialize>(op: &str, v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| BlockError::io(op, format!("cannot encode result: {e}")))
}

/// Decodes a result document the peer returned (importing side).
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(op: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| BlockError::io(op, format!("driver returned a malformed result: {e}")))
}

/// Decodes a JSON array of `[key, value]` pairs.
pub fn options_from_json(op: &str, text: &[u8]) -> Result<Vec<(String, String)>> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(text)
        .map_err(|e| BlockError::invalid(op, format!("bad options document: {e}")))
}

/// Encodes `[key, value]` pairs as JSON.
pub fn options_to_json(pairs: &[(String, String)]) -> String {
    serde_json::to_string(pairs).unwrap_or_else(|_| "[]".to_string())
}

/// The document a stopped check sends next to its error (exporting side):
/// the [`crate::CheckStopped`] source, if the error has one, is pushed to
/// the result sink as `{"check-stopped": {"findings": [...]}}` and taken
/// off the error, whose message then crosses as it reads linked in. Hosts
/// that predate it never read a result sink after an error.
///
/// # Safety
/// `out` must be NULL or a valid sink.
pub(crate) unsafe fn send_check_stopped(out: *const BcStrSink, mut e: BlockError) -> BlockError {
    let stopped = e
        .source
        .as_ref()
        .and_then(|s| s.downcast_ref::<crate::CheckStopped>())
        .map(|s| serde_json::json!({ "check-stopped": s }));
    if let Some(doc) = stopped {
        super::sinks::push_str(out, &doc.to_string());
        e.source = None;
    }
    e
}

/// The importing side of [`send_check_stopped`]: the findings a stopped
/// check sent become the error's [`crate::CheckStopped`] source. Nothing
/// (plugins before it) or anything unreadable leaves the error as it is.
pub(crate) fn receive_check_stopped(e: BlockError, sent: &[u8]) -> BlockError {
    #[derive(serde::Deserialize)]
    struct Doc {
        #[serde(rename = "check-stopped")]
        stopped: crate::CheckStopped,
    }
    match serde_json::from_slice::<Doc>(sent) {
        Ok(d) => e.with_source(d.stopped),
        Err(_) => e,
    }
}
