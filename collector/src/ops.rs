//! The operator's endpoints: `GET /metrics` (Prometheus) and `GET /healthz` (load balancers,
//! systemd, Kubernetes).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ServerFault};
use crate::metrics::Metrics;
use crate::store::Store;

/// How long `/healthz` waits for the store.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /metrics`.
pub(crate) async fn get_metrics(State(metrics): State<Arc<Metrics>>) -> Response {
    match metrics.render() {
        Ok((text, content_type)) => ([(header::CONTENT_TYPE, content_type)], text).into_response(),
        Err(e) => {
            tracing::error!("rendering metrics failed: {e}");
            ApiError::server(ServerFault::Internal, "metrics unavailable").plain()
        }
    }
}

/// `GET /healthz`: `200 ok` while the store answers, `503` otherwise.
pub(crate) async fn healthz(State(store): State<Arc<dyn Store>>) -> Response {
    match tokio::time::timeout(HEALTH_TIMEOUT, store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ok").into_response(),
        Ok(Err(e)) => {
            tracing::warn!("health check: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store not answering\n").into_response(),
    }
}
