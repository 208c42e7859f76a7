//! `/auth/orgadmin/*`: self-service registration, email verification and org-admin sign-in; and
//! `/webhooks/stripe`, where Stripe says a subscription ended.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use harden_commands::billing::WebhookEvent;
use harden_commands::onboarding::RegistrationRequest;

use crate::dto::{ApiKeyResponse, Consistency};
use crate::error::{ApiError, ErrorBody, JsonBodyErrors};
use crate::extract::{AppBytes, AppJson, AppQuery, Client};
use crate::state::AppState;

const EMAIL_SENT: &str = "Verification email sent. Please verify your email to complete registration.";
const EMAIL_DISABLED: &str = "Email delivery is disabled on this server: verify with the verificationToken \
     (GET /auth/orgadmin/verify?token=...) to complete registration.";

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterRequest {
    pub org_name: String,
    pub admin_name: String,
    pub email: String,
    /// At least 10 characters; stored only as an Argon2id hash.
    pub password: String,
    /// One of US, CA, GB, EU, CH, NO, IS, AL, AZ, AM, TR, MK, ME, AU, NZ, SG, MY, JP, KR.
    pub country_code: String,
    /// free, starter, smb or business (enterprise: contact us). Required (an `Option` only so
    /// that its absence gets harden's own message).
    #[schema(required = true, value_type = String)]
    pub plan: Option<String>,
    /// monthly (default) or annual.
    pub billing_cycle: Option<String>,
    /// Required for paid plans.
    pub stripe_payment_method_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterResponse {
    pub requires_verification: bool,
    pub message: &'static str,
    /// Only when this server sends no email (non-production set-ups).
    pub verification_token: Option<String>,
}

/// Records a pending registration and emails a verification link (when SMTP is configured;
/// otherwise the token is in the answer). An address that already has an account gets an email
/// saying so, and the same answer as anyone else.
#[utoipa::path(post, path = "/auth/orgadmin/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 202, body = RegisterResponse), JsonBodyErrors,
        (status = 429, body = ErrorBody, description = "too many registrations from this client address"),
        (status = 502, body = ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    client: Client,
    AppJson(req): AppJson<RegisterRequest>,
) -> Result<(StatusCode, Json<RegisterResponse>), ApiError> {
    let request = RegistrationRequest {
        org_name: &req.org_name,
        admin_name: &req.admin_name,
        email: &req.email,
        password: &req.password,
        country_code: &req.country_code,
        plan: req.plan.as_deref(),
        billing_cycle: req.billing_cycle.as_deref(),
        payment_method: req.stripe_payment_method_id.as_deref(),
    };
    let registered = state.onboarding.register(request, client.addr, client.meta()).await?;
    let token = registered.verification_token.map(|t| t.expose_secret().to_owned());
    Ok((
        StatusCode::ACCEPTED,
        Json(RegisterResponse {
            requires_verification: true,
            message: if token.is_some() { EMAIL_DISABLED } else { EMAIL_SENT },
            verification_token: token,
        }),
    ))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct VerifyQuery {
    pub token: String,
    /// Another payment method, after Stripe refused the one given at registration.
    #[serde(rename = "stripePaymentMethodId")]
    pub stripe_payment_method_id: Option<String>,
}

/// Finishes a registration: for a paid plan, the Stripe customer, payment method and subscription
/// first; then the org and its first org admin, whose API key is the answer. A refused payment (402)
/// or Stripe out of reach (502) leaves nothing behind, and the same link works again afterwards.
#[utoipa::path(get, path = "/auth/orgadmin/verify", tag = "auth", params(VerifyQuery),
    responses((status = 200, body = ApiKeyResponse), (status = 400, body = ErrorBody), (status = 402, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 410, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn verify(
    State(state): State<AppState>,
    client: Client,
    AppQuery(query): AppQuery<VerifyQuery>,
) -> Result<(Consistency, Json<ApiKeyResponse>), ApiError> {
    // Run to the end even if the client goes away: a verification cut off between Stripe and
    // recording its answer would have to be resumed.
    let onboarding = state.onboarding.clone();
    let (key, committed) = tokio::spawn(async move {
        onboarding.verify(&query.token, query.stripe_payment_method_id.as_deref(), client.meta()).await
    })
    .await
    .map_err(|e| anyhow::anyhow!("the verification task failed: {e}"))??;
    let freshness = state.read_models.wait_for(committed.position).await;
    Ok((Consistency(freshness), Json(ApiKeyResponse { api_key: key.expose_secret().to_owned() })))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

/// Signs an org admin in with email and password: a fresh API key, and the previous one stops
/// working. Wrong password and unknown email get the same 401; repeated failures are slowed, then 429.
#[utoipa::path(post, path = "/auth/orgadmin/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = ApiKeyResponse), JsonBodyErrors, (status = 401, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    client: Client,
    AppJson(req): AppJson<LoginRequest>,
) -> Result<(Consistency, Json<ApiKeyResponse>), ApiError> {
    let (key, committed) = state.onboarding.login(&req.email, &req.password, client.addr, client.meta()).await?;
    let freshness = state.read_models.wait_for(committed.position).await;
    Ok((Consistency(freshness), Json(ApiKeyResponse { api_key: key.expose_secret().to_owned() })))
}

/// Stripe's webhook: `customer.subscription.deleted`, or a subscription that became unpaid or
/// canceled, moves its org to the free plan's limits (once, however often Stripe delivers it).
/// Every request must carry a valid `Stripe-Signature`.
#[utoipa::path(post, path = "/webhooks/stripe", tag = "auth", request_body(content = String, content_type = "application/json"),
    responses((status = 200, description = "received"), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn stripe_webhook(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    AppBytes(body): AppBytes,
) -> Result<Json<Value>, ApiError> {
    let stripe =
        state.onboarding.stripe().filter(|s| s.webhooks_enabled()).ok_or_else(|| {
            ApiError::status(StatusCode::NOT_FOUND, "Stripe webhooks are not configured on this server")
        })?;
    let signature = headers.get("stripe-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let event = stripe
        .webhook_event(signature, &body, chrono::Utc::now().timestamp())
        .map_err(|reason| ApiError::status(StatusCode::BAD_REQUEST, reason))?;
    if let WebhookEvent::SubscriptionEnded { org_id, subscription_id, reason } = event {
        state.onboarding.subscription_ended(org_id, &subscription_id, &reason, client.meta()).await?;
    }
    Ok(Json(json!({ "received": true })))
}
