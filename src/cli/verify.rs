//! `audiences verify`: a published run checked against its manifest and its platforms' formats
//! before ad ops upload it.

use clap::Args;

use super::out::outln;
use crate::error::{Error, Result};

/// Arguments of `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A run folder (holding `manifest.json`) or a date folder (holding `current.json`): a
    /// path or URL.
    #[arg(value_name = "RUN_OR_DATE")]
    location: String,
}

/// Prints what was checked; exits 65 naming each problem found.
pub async fn execute(args: VerifyArgs) -> Result<()> {
    let loc = crate::storage::locate(&args.location)?;
    let v = crate::export::verify::verify(&loc).await?;
    outln!("verified {}: {} files", v.run, v.files);
    if v.problems.is_empty() {
        outln!("ok: every file matches the manifest and its platform's format");
        return Ok(());
    }
    Err(Error::data(
        format!("verify {}", v.run),
        format!(
            "{} problems:\n  {}",
            v.problems.len(),
            v.problems.join("\n  ")
        ),
    ))
}
