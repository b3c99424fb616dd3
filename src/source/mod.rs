//! Talking to a CEC source: the HTTP client with retries, the auth strategies, reading a
//! page's envelope, and the paging strategies that turn a month slice into pages.

pub mod auth;
pub mod client;
pub mod envelope;
pub mod error;
pub mod paging;
pub mod retry;

pub use client::SourceClient;
pub use error::SourceError;
