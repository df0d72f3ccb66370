//! Integration tests: the real binary, real Parquet files, a real S3-protocol server on loopback.

mod common;
mod s3;

mod adversarial;
mod bad_input;
mod ballista;
mod check;
mod clustering;
mod faults;
mod fuzz;
mod incremental;
mod lifecycle;
mod lookalike;
mod ltv;
mod measure;
mod nightly;
mod platforms;
mod propensity;
mod publication;
mod quality;
mod reference;
mod refit;
mod run;
mod s3_storage;
mod segments;
