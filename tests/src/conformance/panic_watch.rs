//! Seeing driver panics that no call returns.
//!
//! The plugin ABI turns a panic in a query slot (limits, capabilities,
//! has_zero_init, probe) into a default answer and a "driver panicked" log
//! record, and a linked-in driver may panic on a thread the suite joins.
//! [`install`] sets a panic hook and a `log` logger that count both; the
//! suite fails every case during which the count grew. Without `install`
//! (the in-process tests, whose harness may own the logger) the count stays
//! at zero and only returned panics and "driver panicked" errors count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};

static COUNT: AtomicU64 = AtomicU64::new(0);
static LAST: Mutex<Option<String>> = Mutex::new(None);
static INSTALL: Once = Once::new();

/// The panics seen since [`install`].
pub fn count() -> u64 {
    COUNT.load(Ordering::Acquire)
}

/// The message of the last panic seen.
pub fn last() -> Option<String> {
    LAST.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

fn note(text: String) {
    *LAST.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
    COUNT.fetch_add(1, Ordering::AcqRel);
}

/// The text of a panic payload.
pub fn payload_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Forwards warnings and errors to stderr and notes "panicked" records.
struct WatchLogger;

impl log::Log for WatchLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = record.args().to_string();
        eprintln!(
            "blk-conformance: {} {}: {text}",
            record.level(),
            record.target()
        );
        if text.contains("panicked") {
            note(text);
        }
    }

    fn flush(&self) {}
}

/// Installs the panic hook and the logger (once; call before loading
/// plugins, which read the log level when they are loaded). Returns false
/// when another logger was already set, so that only panics in this
/// process's own code are seen.
pub fn install() -> bool {
    let mut logger_set = false;
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = payload_text(info.payload());
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            note(format!("panic{at}: {msg}"));
            previous(info);
        }));
        logger_set = log::set_boxed_logger(Box::new(WatchLogger)).is_ok();
        if logger_set {
            log::set_max_level(log::LevelFilter::Warn);
        }
    });
    logger_set
}
