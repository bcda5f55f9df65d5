//! The JSON documents that cross the ABI on cold paths (info, reports,
//! schemas, option lists), encoded and decoded with the errors each side
//! reports.

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
