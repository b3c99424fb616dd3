//! Integration tests: the real binary and library against the built-in simulator over real
//! HTTP on loopback, with the Parquet lake read back and compared row by row.

mod aksk;
mod appraise;
mod bad_input;
mod call_detail_records;
mod cms_sim;
mod common;
mod core_sync;
mod crash;
mod daily;
mod fabric_sim;
mod faults;
mod gateway_sim;
mod isales_sim;
mod push_checks;
mod push_crash;
mod s3;
mod service;
mod snapshot;
mod tls;
