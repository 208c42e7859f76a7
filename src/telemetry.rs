//! Logging: human-readable text by default, JSON lines with `HARDEN_LOG_FORMAT=json`. `RUST_LOG`,
//! when set, overrides `HARDEN_LOG`.

use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, Settings};

pub fn init(settings: &Settings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // try_init: tests start many applications in one process.
    let _ = match settings.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
