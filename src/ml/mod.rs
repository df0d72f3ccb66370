//! Numeric kernels: k-means, L2 logistic regression, BG/NBD and Gamma-Gamma, Hungarian matching,
//! calibration of predicted probabilities.
//! ndarray and rayon only; no SQL engine: the step kinds (`steps/`) feed them matrices and turn
//! what they fit into tables and SQL.

pub mod calibration;
pub mod hungarian;
pub mod kmeans;
pub mod logistic;
pub mod ltv;
pub mod similarity;
pub mod spend;
