//! The HTTP edge: accepting connections, the hyper service that turns
//! every request into an answer (trace id, routing, the one error → JSON
//! edge, security headers, the access log), and the host's own endpoints.
//!
//! May use every layer below it; nothing below uses it, except that the
//! handlers read request bodies through [`request_body`].

pub mod access_log;
pub mod connection;
pub mod endpoints;
pub mod headers;
pub mod request_body;
pub mod router;
pub mod server;
pub mod service;
