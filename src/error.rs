//! Error types of the engine and the mapping of each to a sysexits exit code.
//!
//! Every message says what went wrong *and* what to do about it, because the reader is
//! usually a scheduler log at 3 a.m., not a debugger.

use std::fmt;

/// Exit codes, following sysexits so a scheduler can tell "fix the job" from "retry later".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// 0: the run finished and its outputs are written.
    Success = 0,
    /// 1: an unexpected internal failure.
    Internal = 1,
    /// 64: the command line is wrong.
    Usage = 64,
    /// 65: input data is bad (corrupt file, failed quality gate).
    DataError = 65,
    /// 66: a source does not exist.
    NoInput = 66,
    /// 73: an output cannot be created (not a folder, read-only, full, an invalid path).
    CantCreate = 73,
    /// 75: a temporary failure (storage unreachable, lock held): retry later.
    TempFail = 75,
    /// 77: permission denied: the credentials in use may not read or write there.
    NoPerm = 77,
    /// 78: the job file or its SQL is wrong: fix the job.
    Config = 78,
}

impl ExitCode {
    /// The numeric process exit code.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// A location in a text file (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, as the user wrote or passed it.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One problem found in a job file or one of its SQL files.
#[derive(Debug, Clone)]
pub struct Problem {
    /// Where it is, when known.
    pub location: Option<Location>,
    /// The step (or source, export) it belongs to, when known.
    pub step: Option<String>,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = &self.location {
            write!(f, "{loc}: ")?;
        }
        if let Some(step) = &self.step {
            write!(f, "[{step}] ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Errors of the engine. Each variant maps to one exit code (see [`Error::exit_code`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line is wrong (bad `--param`, unknown param name, bad date).
    #[error("{0}")]
    Usage(String),

    /// The job file or its SQL has one or more problems.
    #[error("{}", format_problems(.0))]
    Job(Vec<Problem>),

    /// A source (or the previous run a step needs) does not exist.
    #[error("source `{source_name}` not found at {url}: {detail}\n  hint: check the URL and the params it uses (--date, --param), or that the data has landed")]
    SourceMissing {
        /// Source name in the job file.
        source_name: String,
        /// Resolved URL.
        url: String,
        /// What is missing, in words.
        detail: String,
        /// The storage's own error, when there was one.
        #[source]
        cause: Option<BoxError>,
    },

    /// Input data is bad: a corrupt file, an unparsable row, a failed quality gate.
    #[error("bad data{}: {message}", context.as_deref().map(|c| format!(" in {c}")).unwrap_or_default())]
    Data {
        /// The source, step or file concerned.
        context: Option<String>,
        /// What is wrong and what to do.
        message: String,
        /// The error that found it (a Parquet or CSV reader's), when there is one.
        #[source]
        source: Option<BoxError>,
    },

    /// Storage could not be reached, or another run holds the lock: retry later.
    #[error("temporary failure{}: {message}\n  hint: this is usually transient; the scheduler can retry later", context.as_deref().map(|c| format!(" in {c}")).unwrap_or_default())]
    Temporary {
        /// The source, step or URL concerned.
        context: Option<String>,
        /// What happened.
        message: String,
    },

    /// A storage operation failed; `failure` says whether a retry can help.
    #[error("{}", storage_message(.failure, .context, .url))]
    Storage {
        /// What was being done (`write`, `read`, `lock`, a source's name).
        context: String,
        /// The location.
        url: String,
        /// Why, which decides the exit code.
        failure: StorageFailure,
        /// What the storage said.
        #[source]
        source: BoxError,
    },

    /// Problems found by `check`, some about the data: exits with the data's code.
    #[error("{}", format_problems(.problems))]
    Checked {
        /// Every problem, in job order.
        problems: Vec<Problem>,
        /// The exit code.
        code: ExitCode,
    },

    /// Some dates of a `--from`/`--to` range failed (each was reported as it happened).
    #[error("{} of {total} dates failed: {}", failed.len(), failed.iter().map(|(d, c)| format!("{d} (exit {})", c.code())).collect::<Vec<_>>().join(", "))]
    Dates {
        /// Dates that failed, with their exit codes, in run order.
        failed: Vec<(String, ExitCode)>,
        /// Dates attempted or planned.
        total: usize,
    },

    /// Anything else.
    #[error("{0}")]
    Internal(String),

    /// Anything else, with the error that caused it.
    #[error("{context}")]
    Unexpected {
        /// What was being done.
        context: String,
        /// What failed.
        #[source]
        source: BoxError,
    },
}

/// Any error, kept as the cause of ours.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a storage operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageFailure {
    /// Nothing is there to read (exit 66).
    Missing,
    /// The credentials in use may not do this (exit 77): a retry will not help.
    PermissionDenied,
    /// The output cannot be created (exit 73): a file where a folder should be, a read-only or
    /// full disk, an invalid path.
    CannotCreate,
    /// Unreachable, timed out, throttled, a server error (exit 75): a retry can fix it.
    Temporary,
}

impl StorageFailure {
    /// The exit code of this failure.
    pub fn exit_code(self) -> ExitCode {
        match self {
            StorageFailure::Missing => ExitCode::NoInput,
            StorageFailure::PermissionDenied => ExitCode::NoPerm,
            StorageFailure::CannotCreate => ExitCode::CantCreate,
            StorageFailure::Temporary => ExitCode::TempFail,
        }
    }
}

fn storage_message(failure: &StorageFailure, context: &str, url: &str) -> String {
    let url = if url.is_empty() { "storage" } else { url };
    match failure {
        StorageFailure::Missing => format!("{context}: nothing found at {url}\n  hint: check the URL and the params it uses (--date, --param), or that the data has landed"),
        StorageFailure::PermissionDenied => format!("permission denied ({context}) at {url}\n  hint: the credentials in use may not do this there; check the bucket policy or the folder's permissions (a retry will not help)"),
        StorageFailure::CannotCreate => format!("cannot create output ({context}) at {url}\n  hint: check that the location can hold files: a folder (not a file), not read-only, not full"),
        StorageFailure::Temporary => format!("temporary failure in {context} ({url})\n  hint: this is usually transient; the scheduler can retry later"),
    }
}

/// The error and every cause below it, one per line: what the command line prints.
pub fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut seen = out.clone();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        // Many errors repeat their cause in their own message; print each text once.
        if !seen.contains(&text) {
            out.push_str(&format!("\n  caused by: {text}"));
            seen.push_str(&text);
        }
        cause = c.source();
    }
    out
}

fn format_problems(problems: &[Problem]) -> String {
    let mut out = String::new();
    if problems.len() > 1 {
        out.push_str(&format!("{} problems in the job:\n", problems.len()));
    }
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&p.to_string());
    }
    out
}

impl Error {
    /// The exit code a process should end with for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_) => ExitCode::Usage,
            Error::Job(_) => ExitCode::Config,
            Error::SourceMissing { .. } => ExitCode::NoInput,
            Error::Data { .. } => ExitCode::DataError,
            Error::Temporary { .. } => ExitCode::TempFail,
            Error::Storage { failure, .. } => failure.exit_code(),
            Error::Internal(_) | Error::Unexpected { .. } => ExitCode::Internal,
            Error::Checked { code, .. } => *code,
            // The first failure decides, so a scheduler reacts to it as to a single date.
            Error::Dates { failed, .. } => {
                failed.first().map(|f| f.1).unwrap_or(ExitCode::Internal)
            }
        }
    }

    /// A job error with one problem.
    pub fn job(problem: Problem) -> Self {
        Error::Job(vec![problem])
    }

    /// A job error with a plain message (no location).
    pub fn job_msg(step: Option<&str>, message: impl Into<String>, hint: Option<String>) -> Self {
        Error::job(Problem {
            location: None,
            step: step.map(str::to_string),
            message: message.into(),
            hint,
        })
    }

    /// A data error with context.
    pub fn data(context: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Data {
            context: Some(context.into()),
            message: message.into(),
            source: None,
        }
    }

    /// An internal error.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }

    /// An unexpected failure of `source` while doing `context`; the cause is kept.
    pub fn caused(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Unexpected {
            context: context.into(),
            source: source.into(),
        }
    }

    /// An unexpected failure with no more context than the error itself (kept as the cause).
    pub fn unexpected(source: impl Into<BoxError>) -> Self {
        Error::caused("unexpected failure", source)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::caused("I/O error", e)
    }
}

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
