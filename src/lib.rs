//! `audiences`: a batch audience segmentation engine.
//!
//! A job is a TOML file plus the SQL files it names. One run flows down this list, and each
//! layer imports only the layers below it:
//!
//! ```text
//! main.rs / cli/     one file per command: parse, call, print; errors to exit codes
//! pipeline/          the run as stages: plan (clock read once, params bound once, locations
//!                    resolved once), static checks, steps, exports, segments, report, publish
//! summary.rs         the run's summary for people
//! report/ measure/   report.html; lift of each segment against its control group
//! export/            tables to Parquet / CSV; segment files in each platform's format; manifest
//! segments/          named sets of ids: priority, suppression, holdout (SQL)
//! quality/           data-quality gates of sources, steps and segments
//! steps/             one module per step kind behind one small interface: sql, incremental,
//!                    kmeans, lookalike, ltv, propensity (and the feature matrix and ranked
//!                    tiers they share)
//! ml/                numeric kernels: k-means, logistic regression, BG/NBD, Gamma-Gamma,
//!                    Hungarian matching, similarity, calibration; ndarray + rayon, no SQL engine
//! engine/            the DataFusion session (local or Ballista), sources, cleaning, drift,
//!                    results held once, the one SQL helper and its error mapping
//! storage/           object stores: locations, writes, lock, publication, history, retries
//! job/               the job file as written (serde) -> the checked job, plain data for every
//!                    step kind and export; the key table; params, templates, binding
//! features/          Arrow -> feature matrix: transforms, null policy, scaling, their SQL form
//! hint.rs quote.rs error.rs   leaves: nearest names and line/column; SQL quoting; errors
//! demo/              the deterministic demo dataset with planted structure
//! ```

pub mod cli;
pub mod demo;
pub mod engine;
pub mod error;
pub mod export;
pub mod features;
pub mod hint;
pub mod job;
pub mod measure;
pub mod ml;
pub mod pipeline;
pub mod quality;
pub mod quote;
pub mod report;
pub mod segments;
pub mod steps;
pub mod storage;
pub mod summary;

pub use error::{Error, ExitCode, Result};
