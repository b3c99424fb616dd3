//! Talking to a CEC source: the HTTP client with retries and a rate limit, the auth
//! strategies and the C2 request signature, reading a page's envelope, and the paging
//! strategies that turn a month slice into pages.

pub mod auth;
pub mod client;
pub mod envelope;
pub mod error;
pub mod gateway;
pub mod limiter;
pub mod outgoing;
pub mod paging;
pub mod retry;
#[cfg(test)]
pub(crate) mod scripted;
pub mod signature;

pub use client::SourceClient;
pub use error::SourceError;
