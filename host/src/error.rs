//! Every failure a client can see, mapped in one place to one status code and
//! one JSON body: `{"error": {"code", "message", "trace_id"}}`.
//!
//! Messages are written for the droplet's author or caller: they name the
//! droplet, the limit or the trap, never host internals such as file paths or
//! backtraces.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

/// A request that could not be answered by its droplet.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The request itself is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// A bearer token is required and the request has none.
    #[error("{0}")]
    TokenRequired(String),
    /// The request's bearer token is not valid where one is required.
    #[error("{0}")]
    Unauthorized(String),
    /// A valid token without a required scope.
    #[error("{0}")]
    Forbidden(String),
    /// No droplet has that name (or the path names none).
    #[error("{0}")]
    DropletNotFound(String),
    /// No such host endpoint (an admin route that does not exist).
    #[error("{0}")]
    NotFound(String),
    /// The body is over the droplet's `max_body_kb`.
    #[error("request body is larger than this droplet's limit of {limit_kb} KiB")]
    BodyTooLarge {
        /// The droplet's limit.
        limit_kb: u64,
    },
    /// The guest trapped or panicked.
    #[error("{0}")]
    DropletTrap(String),
    /// The guest returned a response the host will not forward.
    #[error("droplet returned an invalid response: {0}")]
    InvalidResponse(String),
    /// The droplet's current version failed to load.
    #[error("droplet `{name}` is unavailable: {reason}")]
    DropletUnavailable {
        /// The droplet.
        name: String,
        /// Why it failed to load.
        reason: String,
    },
    /// No instance slot freed up in time.
    #[error("droplet `{0}` is over its concurrency limit; retry shortly")]
    DropletOverloaded(String),
    /// An in-process call found no free slot of the droplet its request
    /// from outside reached first (whose limit its whole fan-out shares).
    #[error(
        "droplet `{root}` is over its concurrency limit, which the in-process calls it causes share (this one called `{callee}`); retry shortly"
    )]
    FanoutOverloaded {
        /// The droplet the request from outside reached.
        root: String,
        /// The droplet this in-process call was for.
        callee: String,
    },
    /// One request from outside caused more in-process calls than the host
    /// allows.
    #[error("{0}")]
    TooManyCalls(String),
    /// The call overran the droplet's budget.
    #[error("droplet `{name}` did not answer within its budget of {budget_ms} ms")]
    BudgetExceeded {
        /// The droplet.
        name: String,
        /// Its budget.
        budget_ms: u64,
    },
    /// The deployment store (the fleet's database) could not be reached:
    /// nothing changed.
    #[error("the deployment store is unavailable, nothing changed: {0}")]
    StoreUnavailable(String),
    /// A chain of in-process droplet calls went too deep.
    #[error("{0}")]
    LoopDetected(String),
    /// The request conflicts with what is running (a rollout already
    /// running, or one that changed under the request).
    #[error("{0}")]
    Conflict(String),
    /// The host holds as many response bytes as it allows: the call's
    /// response was dropped.
    #[error("{0}")]
    HostBusy(String),
    /// The host is shutting down and takes no new work.
    #[error("the host is shutting down")]
    ShuttingDown,
    /// The host itself failed while answering (a bug): logged with the
    /// trace id, never detailed to the client.
    #[error(
        "the host failed while answering this request; its log has the details under this trace id"
    )]
    Internal,
}

impl HostError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            HostError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HostError::TokenRequired(_) | HostError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            HostError::Forbidden(_) => StatusCode::FORBIDDEN,
            HostError::DropletNotFound(_) | HostError::NotFound(_) => StatusCode::NOT_FOUND,
            HostError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            HostError::DropletTrap(_) | HostError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            HostError::InvalidResponse(_) => StatusCode::BAD_GATEWAY,
            HostError::TooManyCalls(_) => StatusCode::TOO_MANY_REQUESTS,
            HostError::DropletUnavailable { .. }
            | HostError::DropletOverloaded(_)
            | HostError::FanoutOverloaded { .. }
            | HostError::StoreUnavailable(_)
            | HostError::HostBusy(_)
            | HostError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            HostError::BudgetExceeded { .. } => StatusCode::GATEWAY_TIMEOUT,
            HostError::LoopDetected(_) => StatusCode::LOOP_DETECTED,
            HostError::Conflict(_) => StatusCode::CONFLICT,
        }
    }

    /// The stable, documented error code.
    pub fn code(&self) -> &'static str {
        match self {
            HostError::BadRequest(_) => "bad_request",
            HostError::TokenRequired(_) | HostError::Unauthorized(_) => "unauthorized",
            HostError::Forbidden(_) => "forbidden",
            HostError::DropletNotFound(_) => "droplet_not_found",
            HostError::NotFound(_) => "not_found",
            HostError::BodyTooLarge { .. } => "body_too_large",
            HostError::DropletTrap(_) => "droplet_trap",
            HostError::InvalidResponse(_) => "invalid_response",
            HostError::DropletUnavailable { .. } | HostError::ShuttingDown => "droplet_unavailable",
            HostError::DropletOverloaded(_) | HostError::FanoutOverloaded { .. } => {
                "droplet_overloaded"
            }
            HostError::TooManyCalls(_) => "too_many_calls",
            HostError::StoreUnavailable(_) => "store_unavailable",
            HostError::HostBusy(_) => "host_busy",
            HostError::LoopDetected(_) => "loop_detected",
            HostError::Conflict(_) => "conflict",
            HostError::BudgetExceeded { .. } => "budget_exceeded",
            HostError::Internal => "internal_error",
        }
    }

    /// The response a client sees for this error.
    pub fn into_response(self, trace_id: &str) -> Response<Full<Bytes>> {
        let status = self.status();
        let retry_after = matches!(
            self,
            HostError::DropletOverloaded(_)
                | HostError::FanoutOverloaded { .. }
                | HostError::ShuttingDown
                | HostError::StoreUnavailable(_)
                | HostError::HostBusy(_)
        );
        let mut response = json_response(
            status,
            &error_body(self.code(), &self.to_string(), trace_id),
        );
        if retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        // RFC 6750 §3.1: a request without a token gets a bare challenge;
        // `invalid_token` is for a token that was sent and refused.
        let challenge = match (&self, status) {
            (HostError::TokenRequired(_), _) => Some("Bearer"),
            (_, StatusCode::UNAUTHORIZED) => Some("Bearer error=\"invalid_token\""),
            (_, StatusCode::FORBIDDEN) => Some("Bearer error=\"insufficient_scope\""),
            _ => None,
        };
        if let Some(challenge) = challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

/// The JSON error body of the host's one error shape.
pub fn error_body(code: &str, message: &str, trace_id: &str) -> serde_json::Value {
    serde_json::json!({
        "error": { "code": code, "message": message, "trace_id": trace_id }
    })
}

/// A response with a JSON body, as the host answers for itself.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// At most `max` characters of `text` (input echoed in an error message).
pub fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_documented_status_and_code() {
        let cases = [
            (HostError::BadRequest("x".into()), 400, "bad_request"),
            (HostError::Unauthorized("x".into()), 401, "unauthorized"),
            (HostError::Forbidden("x".into()), 403, "forbidden"),
            (
                HostError::DropletNotFound("x".into()),
                404,
                "droplet_not_found",
            ),
            (HostError::NotFound("x".into()), 404, "not_found"),
            (
                HostError::BodyTooLarge { limit_kb: 1 },
                413,
                "body_too_large",
            ),
            (HostError::DropletTrap("x".into()), 500, "droplet_trap"),
            (HostError::Internal, 500, "internal_error"),
            (
                HostError::InvalidResponse("x".into()),
                502,
                "invalid_response",
            ),
            (
                HostError::DropletUnavailable {
                    name: "x".into(),
                    reason: "y".into(),
                },
                503,
                "droplet_unavailable",
            ),
            (
                HostError::DropletOverloaded("x".into()),
                503,
                "droplet_overloaded",
            ),
            (
                HostError::BudgetExceeded {
                    name: "x".into(),
                    budget_ms: 5,
                },
                504,
                "budget_exceeded",
            ),
        ];
        for (error, status, code) in cases {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
            assert_eq!(error.code(), code, "{error:?}");
        }
    }

    #[test]
    fn a_missing_token_gets_a_bare_challenge() {
        let response = HostError::TokenRequired("x".into()).into_response("t");
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }

    #[test]
    fn auth_errors_carry_a_bearer_challenge() {
        let response = HostError::Unauthorized("x".into()).into_response("t");
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
        let response = HostError::Forbidden("x".into()).into_response("t");
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"insufficient_scope\""
        );
    }

    #[test]
    fn overloaded_carries_retry_after() {
        let response = HostError::DropletOverloaded("x".into()).into_response("t");
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    proptest::proptest! {
        #[test]
        fn clips_never_panic(text in ".{0,100}", max in 0usize..120) {
            proptest::prop_assert!(clip(&text, max).chars().count() <= max + 1);
        }
    }
}
