//! The JSON error every refused request gets (OpenAI's shape: `{"error":{...}}`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A refused request: the status, a machine-readable code, a message a person can act on,
/// and for 503 the seconds after which to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// OpenAI-style error code (`invalid_request_error`, `model_not_found`...).
    pub code: &'static str,
    /// What went wrong and what to do.
    pub message: String,
    /// `Retry-After` in seconds (503 only).
    pub retry_after: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400: the request is malformed or asks for something this service does not do.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 404: the model named in the request is not the one this service serves.
    pub fn unknown_model(asked: &str, served: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!("model `{asked}` is not served here; this service serves `{served}`"),
        )
    }

    /// 413: the body is over the configured limit (refused before it is read).
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!("request body is over the limit of {limit} bytes (--max-body-bytes)"),
        )
    }

    /// 415: the body is not declared as JSON.
    pub fn not_json() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            "the body must be JSON (Content-Type: application/json)",
        )
    }

    /// 503 with `Retry-After`: memory is short right now; the same request can succeed later.
    pub fn overloaded(retry_after: u32, message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message)
        }
    }

    /// 502: the upstream refused or failed.
    pub fn upstream(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "upstream_error", message)
    }

    /// 404 for a path this service does not have.
    pub fn no_route() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    }

    /// 500: a failure on this side (a corrupt model file, say).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.code,
                "code": self.code,
            }
        })
        .to_string()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body(),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

/// A body that is not JSON of the expected shape: 400 with serde's own words (line, column).
pub fn json_error(e: &serde_json::Error) -> ApiError {
    ApiError::bad_request(format!("malformed JSON body: {e}"))
}

impl From<mm_llm::LlmError> for ApiError {
    /// A budget refusal is a 503 (memory is short now); anything else is on this side.
    fn from(e: mm_llm::LlmError) -> Self {
        match e {
            mm_llm::LlmError::Budget { .. } => {
                ApiError::overloaded(1, format!("memory is short: {e}"))
            }
            e => ApiError::internal(e.to_string()),
        }
    }
}
