//! The error type of request handling: an HTTP status plus a message that
//! names what went wrong. It becomes the JSON body `{"error": "…"}`.

use hyper::StatusCode;
use std::io;

/// An error answered to an API client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// HTTP status of the answer.
    pub status: StatusCode,
    /// Message for the `error` field.
    pub message: String,
}

impl ApiError {
    /// An error with an explicit status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 Not Found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 500 Internal Server Error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// Maps an I/O error on `what` to a fitting status, keeping the cause.
    pub fn io(what: &str, e: &io::Error) -> Self {
        let status = match e.raw_os_error() {
            Some(libc::ENOENT) => StatusCode::NOT_FOUND,
            Some(libc::ENOTDIR) => StatusCode::NOT_FOUND,
            Some(libc::EACCES) | Some(libc::EPERM) => StatusCode::FORBIDDEN,
            Some(libc::ELOOP) | Some(libc::EXDEV) | Some(libc::ENAMETOOLONG) => {
                StatusCode::BAD_REQUEST
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let cause = match e.raw_os_error() {
            Some(libc::ENOENT) => "no such file or directory".to_string(),
            Some(libc::ELOOP) => {
                "too many symlinks, or a link that leaves the filesystem".to_string()
            }
            Some(libc::EXDEV) => "the path leaves the filesystem".to_string(),
            _ => e.to_string(),
        };
        Self::new(status, format!("{what}: {cause}"))
    }
}
