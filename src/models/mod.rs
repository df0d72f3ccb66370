//! Models fitted on the feature matrix: k-means clustering (with automatic k, readable
//! profiles and cluster ids that stay stable across runs).

pub mod hungarian;
pub mod kmeans;
pub mod kmeans_step;
