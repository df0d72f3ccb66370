//! `audiences`: a batch audience segmentation engine.
//!
//! A job is a TOML file plus the SQL files it names. One run flows through these modules:
//!
//! ```text
//! job (job/)               TOML -> checked Job; typed params bound from the command line
//!   -> storage (storage/)  URLs -> object stores: local, s3://, gs://, az://, memory://
//!   -> sources (engine/sources.rs)   Parquet / CSV / JSON tables, Hive partitions
//!   -> SQL steps (engine/steps.rs)   DataFusion, `$param` placeholders, each result held once
//!   -> features (features/)           Arrow -> ndarray: transforms, null policy, scaling
//!   -> models (models/)               k-means clusters, fitted on a sample, assigned to all
//!   -> exports (export/)   Parquet / CSV files in a deterministic order
//!   -> summary (summary.rs)
//! ```
//!
//! `pipeline` drives a run end to end; `cli` holds one file per command; `demo` generates a
//! realistic dataset with planted structure.

pub mod cli;
pub mod demo;
pub mod engine;
pub mod error;
pub mod export;
pub mod features;
pub mod job;
pub mod measure;
pub mod models;
pub mod pipeline;
pub mod quality;
pub mod report;
pub mod segments;
pub mod storage;
pub mod summary;

pub use error::{Error, ExitCode, Result};
