//! `GET /api/v1/keys/challenge` and `POST /api/v1/keys`: a probe key proves its work once and is
//! registered (the contract is [`vantage_measurement::wire::registration`]).
//!
//! Registration is the entry fee, not trust: a registered key still earns trust by reporting
//! ([`crate::trust`]). The challenge is the same for every probe (this installation's salt and
//! the configured difficulty), so the collector keeps no state per challenge and a probe can
//! solve it offline; verifying costs one hash and one signature check, cheap enough to answer
//! inline. Answers: `201` registered now, `200` already registered, `400` not a registration,
//! `422` a proof that does not hold, each counted in
//! `vantage_collector_key_registrations_total{outcome}`. Neither the key nor its id is logged.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use vantage_measurement::wire::registration::{self, RegistrationChallenge, RegistrationError, RegistrationRequest};

use crate::clock::Clock;
use crate::error::ApiError;
use crate::limits::{LimitedEndpoint, Limiter, Subject};
use crate::metrics::{Metrics, RegistrationOutcome};
use crate::server::ClientSource;
use crate::store::Store;

/// The largest registration body: the request is about 150 bytes of JSON.
pub const MAX_REQUEST_BYTES: usize = 1024;

/// This collector's challenge, the same for every probe.
#[derive(Debug)]
pub(crate) struct Challenge(pub(crate) RegistrationChallenge);

/// `GET /api/v1/keys/challenge`.
pub(crate) async fn get_challenge(State(challenge): State<Arc<Challenge>>) -> Json<RegistrationChallenge> {
    Json(challenge.0.clone())
}

/// `POST /api/v1/keys`.
pub(crate) async fn post_key(
    State(challenge): State<Arc<Challenge>>,
    State(store): State<Arc<dyn Store>>,
    State(metrics): State<Arc<Metrics>>,
    State(clock): State<Arc<dyn Clock>>,
    State(limiter): State<Arc<Limiter>>,
    ClientSource(source): ClientSource,
    body: Bytes,
) -> Response {
    // Charged before the body is even parsed: a flood of bad proofs costs a hash lookup each.
    if let Err(limited) = limiter.check(LimitedEndpoint::Register, Subject::Source(source)) {
        return limited.into_response();
    }
    let request: RegistrationRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            let message = format!("expected {{\"public_key\", \"nonce\", \"signature\"}}: {e}");
            return refuse(&metrics, RegistrationOutcome::Malformed, message);
        }
    };
    let key = match registration::verify(&request, &challenge.0) {
        Ok(key) => key,
        Err(e) => return refuse(&metrics, outcome_of(&e), e.to_string()),
    };
    match store.register_key(&key, clock.now()).await {
        Ok(new) => {
            let (status, outcome) = if new {
                (StatusCode::CREATED, RegistrationOutcome::Registered)
            } else {
                (StatusCode::OK, RegistrationOutcome::AlreadyRegistered)
            };
            metrics.record_registration(outcome);
            tracing::info!(outcome = outcome.as_str(), "key registration");
            (status, Json(serde_json::json!({ "outcome": outcome.as_str() }))).into_response()
        }
        Err(e) => {
            tracing::error!("recording a key registration failed: {e}");
            ApiError::from(&e).into_response()
        }
    }
}

/// The outcome label of a refused proof.
fn outcome_of(e: &RegistrationError) -> RegistrationOutcome {
    match e {
        RegistrationError::InsufficientWork { .. } => RegistrationOutcome::InsufficientWork,
        RegistrationError::BadSignature => RegistrationOutcome::BadSignature,
        _ => RegistrationOutcome::Malformed,
    }
}

/// `400` for what is not a registration, `422` for a proof that does not hold.
fn refuse(metrics: &Metrics, outcome: RegistrationOutcome, message: String) -> Response {
    metrics.record_registration(outcome);
    tracing::info!(outcome = outcome.as_str(), "key registration refused");
    let status = match outcome {
        RegistrationOutcome::Malformed => StatusCode::BAD_REQUEST,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    ApiError::client(status, Some(outcome.as_str()), message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_sorted_by_what_is_wrong() {
        assert_eq!(
            outcome_of(&RegistrationError::InsufficientWork { needed: 22, found: 3 }),
            RegistrationOutcome::InsufficientWork
        );
        assert_eq!(outcome_of(&RegistrationError::BadSignature), RegistrationOutcome::BadSignature);
        for malformed in [
            RegistrationError::NotBase64("public_key"),
            RegistrationError::KeyLength(3),
            RegistrationError::InvalidKey,
            RegistrationError::SignatureLength(3),
        ] {
            assert_eq!(outcome_of(&malformed), RegistrationOutcome::Malformed, "{malformed}");
        }
    }
}
