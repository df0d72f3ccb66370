//! Turning DataFusion errors into answers a user can act on: the SQL file, line and column,
//! the step, and the nearest column names; and classifying execution failures into exit codes
//! (missing input 66, bad data 65, unreachable storage 75).

use datafusion::error::DataFusionError;

use crate::error::{Error, Location, Problem};
use crate::hint::nearest;
use crate::job::StepSql;

/// Extracts `(line, column)` from sqlparser's "... at Line: L, Column: C" message.
fn parser_position(msg: &str) -> Option<(usize, usize)> {
    let i = msg.rfind("Line: ")?;
    let rest = &msg[i + 6..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let col: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    Some((line.trim().parse().ok()?, col.parse().ok()?))
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at Line: ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Translates a position inside the SQL text to the file that holds it.
fn to_file_location(sql: &StepSql, line: usize, column: usize) -> Location {
    let (line, column) = if line <= 1 {
        (sql.first_line, column + sql.first_column - 1)
    } else {
        (sql.first_line + line - 1, column)
    };
    Location {
        file: sql.file.clone(),
        line,
        column,
    }
}

/// Finds the position of `needle` as a whole word in the SQL text (1-based line and column).
fn find_word(text: &str, needle: &str) -> Option<(usize, usize)> {
    let lower = text.to_lowercase();
    let needle = needle.to_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find(&needle) {
        let start = from + i;
        let end = start + needle.len();
        let before_ok = start == 0 || !is_ident(lower.as_bytes()[start - 1]);
        let after_ok = end >= lower.len() || !is_ident(lower.as_bytes()[end]);
        if before_ok && after_ok {
            return Some(crate::hint::line_col(text, start));
        }
        from = end;
    }
    None
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Every error in a DataFusion error tree, outermost first (through context, diagnostic,
/// shared and collection wrappers, which `DataFusionError::iter` does not open).
fn chain(err: &DataFusionError) -> Vec<&DataFusionError> {
    let mut out = Vec::new();
    let mut queue = std::collections::VecDeque::from([err]);
    while let Some(e) = queue.pop_front() {
        out.push(e);
        match e {
            DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
                queue.push_back(inner)
            }
            DataFusionError::Shared(inner) => queue.push_back(inner.as_ref()),
            DataFusionError::Collection(v) => queue.extend(v.iter()),
            _ => {}
        }
    }
    out
}

/// Builds the problem report for a SQL step that failed to plan.
pub fn sql_problem(step: &str, sql: &StepSql, err: &DataFusionError) -> Problem {
    let mut position: Option<(usize, usize)> = None;
    let mut hint = None;
    let mut message = None;
    if let Some(d) = err.diagnostic() {
        if let Some(span) = d.span {
            if span.start.line > 0 {
                position = Some((span.start.line as usize, span.start.column as usize));
            }
        }
        message = Some(d.message.clone());
    }
    for e in chain(err) {
        match e {
            DataFusionError::SQL(pe, _) => {
                let text = pe.to_string();
                if position.is_none() {
                    position = parser_position(&text);
                }
                message = Some(format!("SQL syntax error: {}", strip_position(&text)));
            }
            DataFusionError::SchemaError(se, _) => {
                if let datafusion::common::SchemaError::FieldNotFound {
                    field,
                    valid_fields,
                } = se.as_ref()
                {
                    let names: Vec<String> = valid_fields.iter().map(|c| c.name.clone()).collect();
                    let mut unique = names.clone();
                    unique.sort();
                    unique.dedup();
                    let close = nearest(&field.name, &unique, 3);
                    message = Some(format!("unknown column `{}`", field.name));
                    if !close.is_empty() {
                        hint = Some(format!("nearest columns: {}", close.join(", ")));
                    }
                    if position.is_none() {
                        position = find_word(&sql.text, &field.name);
                    }
                }
            }
            DataFusionError::Plan(m) if m.contains("table") && m.contains("not found") => {
                message = Some(m.clone());
                hint = Some(
                    "a step can read the job's sources and the steps declared before it".into(),
                );
            }
            _ => {}
        }
    }
    let message = message.unwrap_or_else(|| err.find_root().strip_backtrace());
    Problem {
        location: Some(match position {
            Some((l, c)) => to_file_location(sql, l, c),
            None => Location {
                file: sql.file.clone(),
                line: sql.first_line,
                column: sql.first_column,
            },
        }),
        step: Some(step.to_string()),
        message,
        hint,
    }
}

/// Finds an object-store error anywhere in a DataFusion error chain.
fn object_store_error(err: &DataFusionError) -> Option<&object_store::Error> {
    for e in chain(err) {
        match e {
            DataFusionError::ObjectStore(os) => return Some(os.as_ref()),
            DataFusionError::External(ext) => {
                if let Some(os) = ext.downcast_ref::<object_store::Error>() {
                    return Some(os);
                }
            }
            _ => {}
        }
    }
    None
}

/// Classifies an error raised while reading or computing: storage, data, memory or other.
pub fn execution_error(context: &str, err: DataFusionError) -> Error {
    if let Some(os) = object_store_error(&err) {
        if let object_store::Error::NotFound { path, .. } = os {
            return Error::SourceMissing {
                source_name: context.to_string(),
                url: path.clone(),
                detail: "the object disappeared while the run was reading it".into(),
                cause: Some(Box::new(err)),
            };
        }
        let failure = crate::storage::failure_of(os, false);
        return Error::Storage {
            context: context.to_string(),
            url: String::new(),
            failure,
            source: Box::new(err),
        };
    }
    let root = err.find_root();
    if let DataFusionError::IoError(io) = root {
        let failure = crate::storage::failure_of(io, false);
        return Error::Storage {
            context: context.to_string(),
            url: String::new(),
            failure,
            source: Box::new(err),
        };
    }
    let text = root.strip_backtrace();
    let mut made = match root {
        DataFusionError::ParquetError(_) => Error::data(context, format!("corrupt or unreadable Parquet data: {text}\n  hint: replace or remove the damaged file, then rerun")),
        DataFusionError::ArrowError(ae, _) => match ae.as_ref() {
            datafusion::arrow::error::ArrowError::ParseError(_)
            | datafusion::arrow::error::ArrowError::CsvError(_)
            | datafusion::arrow::error::ArrowError::JsonError(_)
            | datafusion::arrow::error::ArrowError::ParquetError(_)
            | datafusion::arrow::error::ArrowError::CastError(_)
            | datafusion::arrow::error::ArrowError::InvalidArgumentError(_) => {
                Error::data(context, format!("unreadable data: {text}\n  hint: fix the rows or the declared schema of the source"))
            }
            _ => Error::internal(format!("{context}: {text}")),
        },
        DataFusionError::ResourcesExhausted(_) => Error::internal(format!(
            "{context}: out of memory budget: {text}\n  hint: raise --memory-limit, or make sure the spill folder has free disk"
        )),
        DataFusionError::Execution(m) if m.contains("Parquet") || m.contains("parquet") => {
            Error::data(context, format!("corrupt or unreadable Parquet data: {text}"))
        }
        _ => Error::internal(format!("{context}: {text}")),
    };
    // Bad data keeps the reader's error as its cause.
    if let Error::Data { source, .. } = &mut made {
        *source = Some(Box::new(err));
    }
    made
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_data_keeps_the_readers_error_as_its_cause() {
        let err = DataFusionError::ParquetError(Box::new(
            datafusion::parquet::errors::ParquetError::General("bad footer".into()),
        ));
        let e = execution_error("source `orders`", err);
        assert_eq!(e.exit_code(), crate::error::ExitCode::DataError);
        assert!(std::error::Error::source(&e).is_some());
        let text = crate::error::with_causes(&e);
        assert!(
            text.contains("corrupt or unreadable Parquet data"),
            "{text}"
        );
        assert!(text.contains("bad footer"), "{text}");
    }

    #[test]
    fn parses_parser_positions() {
        assert_eq!(
            parser_position("Expected: x, found: y at Line: 3, Column: 14"),
            Some((3, 14))
        );
        assert_eq!(parser_position("nothing here"), None);
    }

    #[test]
    fn offsets_inline_sql() {
        let sql = StepSql {
            text: "SELECT x".into(),
            file: "j.toml".into(),
            first_line: 5,
            first_column: 10,
        };
        assert_eq!(
            to_file_location(&sql, 1, 8),
            Location {
                file: "j.toml".into(),
                line: 5,
                column: 17
            }
        );
        assert_eq!(to_file_location(&sql, 2, 3).line, 6);
    }
}
