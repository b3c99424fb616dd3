//! `cecsync` keeps a Parquet data lake in sync with the query APIs of Huawei Cloud's
//! contact center (CEC/AICC).
//!
//! # Layout
//! Data flows one way: slice -> request -> page -> records -> batch -> file -> commit.
//!
//! - [`config`]: the operator's TOML file, validated into [`config::Settings`].
//! - [`catalog`]: the datasets — pipeline specs (`pipelines/*.toml`) and schemas
//!   (`schemas/*.json`).
//! - [`calendar`]: month slices in the server's zone.
//! - [`source`]: HTTP client with retries, auth strategies, paging strategies.
//! - [`normalize`]: JSON records to Arrow record batches by the schema; rejects.
//! - `json_scan`: JSON tokens measured and checked, for the walks of pages and records.
//! - [`sink`]: the object store, the lake layout, staging, Parquet writing and the atomic
//!   partition commit.
//! - [`state`]: checkpoints kept in the lake (`_state/`).
//! - [`engine`]: backfill and incremental sync of month slices; status and verify.
//! - [`push`]: receivers of the platforms' pushes, their spool and its compaction.
//! - [`service`]: `cecsync run`: schedules, control API, status page, lease, shutdown.
//! - [`task`]: spawned tasks that are aborted with their handle.
//! - [`tls`]: HTTPS for the push receivers and the simulator.
//! - [`telemetry`]: metric names and the registry behind `/metrics`.
//! - [`sim`]: a simulator of the CEC APIs for the demo and the tests.

pub mod bench;
pub mod calendar;
pub mod catalog;
pub mod config;
pub mod demo;
pub mod engine;
pub(crate) mod json_scan;
pub mod normalize;
pub mod push;
pub mod secret;
pub mod service;
pub mod sim;
pub mod sink;
pub mod source;
pub mod state;
pub mod task;
pub mod telemetry;
pub mod tls;
