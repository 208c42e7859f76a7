//! # harden HTTP surfaces
//!
//! axum routers for the Backend and the Proxy (the Cloud API joins the Backend later), the
//! extractors that authenticate and parse requests, the one mapping from errors to statuses, and the
//! OpenAPI documents. No business rule lives here: handlers parse, call the command side or a read
//! model, and render.
//!
//! # Layout
//! - [`error`] — `ApiError`, the single error → status mapping and the `{ "error": ... }` body.
//! - [`extract`] — `AppJson`, `AppPath` (parse errors as 4xx JSON), `Caller` (X-Api-Key).
//! - [`state`] — what handlers share.
//! - [`dto`] — request and response bodies, camelCase as the spec writes them.
//! - [`backend`] — the Backend's routes, one module per resource.
//! - [`cloud`] — the Cloud API: identity-provider token verification, Svix webhook signatures.
//! - [`proxy`] — the Proxy's routes.
//! - [`layers`] — middleware every listener shares (request ids, tracing, limits, fallbacks).
//! - [`metrics`] — Prometheus metrics and their listener.
//! - [`rate_limit`] — per-address limits on the anonymous routes.

pub mod backend;
pub mod cloud;
pub mod dto;
pub mod error;
pub mod extract;
pub mod large_body;
pub mod layers;
pub mod metrics;
pub mod proxy;
pub mod rate_limit;
pub mod state;
pub mod ui;

pub use error::ApiError;
pub use state::AppState;
