//! Unit tests (in-memory files).
