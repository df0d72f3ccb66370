//! Demo data generator (see generate.rs).
pub mod generate;
pub use generate::{generate, DemoConfig, DemoStats};
