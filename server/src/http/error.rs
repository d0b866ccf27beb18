//! Errors at the HTTP edge: JSON `{"code", "message"}` with a stable code and a status that
//! says whose fault it was. Causes are logged; a client never sees a 500 for bad input.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::AuthError;

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
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

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn unauthorized(e: &AuthError) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, e.code(), e.to_string())
    }

    /// A failure of ours; the cause is logged, the client gets a stable code.
    pub fn internal(code: &'static str, cause: impl std::fmt::Display) -> Self {
        tracing::error!(code, %cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            code,
            format!("the server could not complete the request: {cause}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(Body {
            code: self.code,
            message: &self.message,
        });
        (self.status, body).into_response()
    }
}

/// Middleware: every error answer is JSON `{"code", "message"}`, including those axum makes
/// itself (no route 404, wrong method 405 with its `Allow` header, body over the limit 413,
/// a rejected extractor's plain text, which is kept in the message).
pub async fn json_errors(
    max_body: usize,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    // The console's pages and exports are answers of their own (an HTML refusal page).
    let console = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html") || v.starts_with("text/csv"));
    if json || console {
        return response;
    }
    let (parts, body) = response.into_parts();
    let detail = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let with_detail = |message: String| {
        if detail.is_empty() {
            message
        } else {
            format!("{message} ({detail})")
        }
    };
    let error = match status {
        StatusCode::NOT_FOUND => ApiError::new(
            status,
            "not_found",
            format!("no endpoint {path}; GET /api/openapi.json lists them"),
        ),
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = parts
                .headers
                .get(axum::http::header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            ApiError::new(
                status,
                "method_not_allowed",
                format!("{path} does not take {method}; it takes {allowed}"),
            )
        }
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            status,
            "payload_too_large",
            format!(
                "the request body is over this server's limit of {max_body} bytes \
                 (limits.max_frame_bytes)"
            ),
        ),
        _ => ApiError::new(
            status,
            "rejected",
            with_detail(
                status
                    .canonical_reason()
                    .unwrap_or("the request was refused")
                    .to_owned(),
            ),
        ),
    };
    let mut answer = error.into_response();
    if let Some(allow) = parts.headers.get(axum::http::header::ALLOW) {
        answer
            .headers_mut()
            .insert(axum::http::header::ALLOW, allow.clone());
    }
    answer
}
