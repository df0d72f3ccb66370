//! Models fitted on the feature matrix: k-means clustering (with automatic k, readable
//! profiles and cluster ids that stay stable across runs) and lookalike expansion of a seed.

pub mod hungarian;
pub mod kmeans;
pub mod kmeans_step;
pub mod logistic;
pub mod lookalike_step;
pub mod ltv;
pub mod ltv_step;
