//! # harden
//!
//! A zero-knowledge, post-quantum secrets and file vault for teams. This crate is the binary's
//! library half: settings, telemetry and start-up; everything else lives in the workspace crates.
//!
//! # Layout
//! - [`settings`] — typed settings (defaults, `harden.toml`, `HARDEN_*`).
//! - [`telemetry`] — logging.
//! - [`startup`] — `Application::build` wires the database, bootstrap, followers and listeners.

pub mod settings;
pub mod startup;
pub mod telemetry;
pub mod tls;

pub use settings::Settings;
pub use startup::{Application, Surfaces};
