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
    /// 75: a temporary failure (storage unreachable, lock held): retry later.
    TempFail = 75,
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
        /// What the storage said.
        detail: String,
    },

    /// Input data is bad: a corrupt file, an unparsable row, a failed quality gate.
    #[error("bad data{}: {message}", context.as_deref().map(|c| format!(" in {c}")).unwrap_or_default())]
    Data {
        /// The source, step or file concerned.
        context: Option<String>,
        /// What is wrong and what to do.
        message: String,
    },

    /// Storage could not be reached, or another run holds the lock: retry later.
    #[error("temporary failure{}: {message}\n  hint: this is usually transient; the scheduler can retry later", context.as_deref().map(|c| format!(" in {c}")).unwrap_or_default())]
    Temporary {
        /// The source, step or URL concerned.
        context: Option<String>,
        /// What happened.
        message: String,
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
            Error::Internal(_) => ExitCode::Internal,
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
        }
    }

    /// An internal error.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Internal(format!("I/O error: {e}"))
    }
}

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
