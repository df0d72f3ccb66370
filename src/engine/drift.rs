//! Schema drift: a source's `expect` columns against the schema the files really have, checked
//! when the source is registered, before any step runs.

use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};

use crate::error::{Error, Result};

/// Type families compared by the drift check: a width change is not drift, a kind change is.
fn family(t: &DataType) -> &'static str {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string",
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => "int",
        DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) => {
            "double"
        }
        DataType::Boolean => "bool",
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Timestamp(..) => "timestamp",
        DataType::Dictionary(_, v) => family(v),
        _ => "other",
    }
}

/// Schema drift: every column in the source's `expect` must exist with a type of the same
/// family. Exit 65 naming the source, each column, expected versus found.
pub fn check_expected(source: &str, url: &str, expected: &SchemaRef, found: &Schema) -> Result<()> {
    let mut drift = Vec::new();
    for f in expected.fields() {
        match found.field_with_name(f.name()) {
            Err(_) => drift.push(format!(
                "column `{}`: expected {}, found no such column",
                f.name(),
                family(f.data_type())
            )),
            Ok(g) if family(g.data_type()) != family(f.data_type()) => drift.push(format!(
                "column `{}`: expected {}, found {} ({})",
                f.name(),
                family(f.data_type()),
                family(g.data_type()),
                g.data_type()
            )),
            Ok(_) => {}
        }
    }
    if drift.is_empty() {
        return Ok(());
    }
    let cols: Vec<String> = found
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), family(f.data_type())))
        .collect();
    Err(Error::data(
        format!("source `{source}` ({url})"),
        format!(
            "schema drift: {}\n  found columns: {}\n  hint: the data's schema changed; fix the upstream export, or update the source's `expect` and the SQL that reads it",
            drift.join("; "),
            cols.join(", ")
        ),
    ))
}

/// One file whose column has a type of another family than the source's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileDrift {
    /// The file.
    pub path: String,
    /// The column.
    pub column: String,
    /// The source's type family for the column (declared, or that of most files).
    pub expected: String,
    /// This file's type family and type.
    pub found: String,
}

/// Whether a file's type family can be read as the source's: the same family, an all-null
/// column, or integers where the source has doubles.
fn compatible(found: &str, expected: &str) -> bool {
    found == expected || found == "null" || (found == "int" && expected == "double")
}

fn family_of(t: &DataType) -> &'static str {
    if matches!(t, DataType::Null) {
        "null"
    } else {
        family(t)
    }
}

/// The type that holds both: the wider of a family's widths, doubles for integers and doubles.
fn wider(a: &DataType, b: &DataType) -> DataType {
    use DataType as T;
    match (a, b) {
        _ if a == b => a.clone(),
        (T::Null, t) | (t, T::Null) => t.clone(),
        _ => match (family(a), family(b)) {
            ("int", "int") => T::Int64,
            ("int" | "double", "int" | "double") => T::Float64,
            _ => a.clone(),
        },
    }
}

/// The schema of a source from each file's own schema, and the files that disagree with it.
///
/// A column's family is the declared one (`expected`, from the source's `expect`) or, without
/// one, that of most of the files that hold the column (ties: the first file's, in path order);
/// a file whose column has another family (text where the others have numbers) drifted. The
/// schema holds every column of the files that did not drift, each of the widest type seen.
pub fn reconcile(
    files: &[(String, SchemaRef)],
    expected: Option<&Schema>,
) -> (SchemaRef, Vec<FileDrift>) {
    use datafusion::arrow::datatypes::Field;
    use std::collections::BTreeMap;
    let mut names: Vec<String> = Vec::new();
    for (_, s) in files {
        for f in s.fields() {
            if !names.iter().any(|n| n == f.name()) {
                names.push(f.name().clone());
            }
        }
    }
    let mut drift = Vec::new();
    let mut family_for: BTreeMap<&str, &'static str> = BTreeMap::new();
    for name in &names {
        let declared = expected
            .and_then(|e| e.field_with_name(name).ok())
            .map(|f| family(f.data_type()));
        let fam = declared.unwrap_or_else(|| {
            let mut votes: Vec<(&'static str, usize, usize)> = Vec::new();
            for (i, (_, s)) in files.iter().enumerate() {
                if let Ok(f) = s.field_with_name(name) {
                    let fam = family_of(f.data_type());
                    if fam == "null" {
                        continue;
                    }
                    match votes.iter_mut().find(|v| v.0 == fam) {
                        Some(v) => v.1 += 1,
                        None => votes.push((fam, 1, i)),
                    }
                }
            }
            // Integers and doubles together are doubles, not a disagreement.
            if let (Some(d), Some(i)) = (
                votes.iter().position(|v| v.0 == "double"),
                votes.iter().position(|v| v.0 == "int"),
            ) {
                votes[d].1 += votes[i].1;
                votes[d].2 = votes[d].2.min(votes[i].2);
                votes.remove(i);
            }
            votes
                .iter()
                .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)))
                .map(|v| v.0)
                .unwrap_or("null")
        });
        family_for.insert(name.as_str(), fam);
        for (path, s) in files {
            if let Ok(f) = s.field_with_name(name) {
                let found = family_of(f.data_type());
                if fam != "null" && !compatible(found, fam) {
                    drift.push(FileDrift {
                        path: path.clone(),
                        column: name.clone(),
                        expected: fam.to_string(),
                        found: format!("{found} ({})", f.data_type()),
                    });
                }
            }
        }
    }
    let drifted: std::collections::BTreeSet<&str> = drift.iter().map(|d| d.path.as_str()).collect();
    let kept: Vec<&SchemaRef> = files
        .iter()
        .filter(|(p, _)| !drifted.contains(p.as_str()))
        .map(|(_, s)| s)
        .collect();
    let fields: Vec<Field> = names
        .iter()
        .filter_map(|name| {
            let mut t: Option<DataType> = None;
            let mut nullable = false;
            for s in &kept {
                match s.field_with_name(name) {
                    Ok(f) => {
                        t = Some(match &t {
                            None => f.data_type().clone(),
                            Some(t) => wider(t, f.data_type()),
                        });
                        nullable |= f.is_nullable();
                    }
                    Err(_) => nullable = true,
                }
            }
            t.map(|t| Field::new(name, t, nullable))
        })
        .collect();
    (std::sync::Arc::new(Schema::new(fields)), drift)
}

/// The error for files that drifted: exit 65 naming the source, each file, column, expected and
/// found type, and the two ways out.
pub fn files_error(source: &str, url: &str, files: usize, drift: &[FileDrift]) -> Error {
    let shown: Vec<String> = drift
        .iter()
        .take(10)
        .map(|d| {
            format!(
                "file {}: column `{}` is {}, expected {}",
                d.path, d.column, d.found, d.expected
            )
        })
        .collect();
    let more = drift.len().saturating_sub(shown.len());
    let bad: std::collections::BTreeSet<&str> = drift.iter().map(|d| d.path.as_str()).collect();
    Error::data(
        format!("source `{source}` ({url})"),
        format!(
            "schema drift in {} of {files} files:\n  {}{}\n  hint: re-export the file with the other files' types, or set `bad_files = \"skip\"` on the source to leave such files out (they are counted and listed in the manifest)",
            bad.len(),
            shown.join("\n  "),
            if more > 0 { format!("\n  … and {more} more") } else { String::new() }
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Field;
    use std::sync::Arc;

    fn schema(cols: &[(&str, DataType)]) -> SchemaRef {
        Arc::new(Schema::new(
            cols.iter()
                .map(|(n, t)| Field::new(*n, t.clone(), true))
                .collect::<Vec<_>>(),
        ))
    }

    #[test]
    fn the_file_whose_column_is_text_among_numbers_is_named() {
        let files = vec![
            (
                "d1".to_string(),
                schema(&[("id", DataType::Utf8), ("amount", DataType::Float64)]),
            ),
            (
                "d2".to_string(),
                schema(&[("id", DataType::Utf8), ("amount", DataType::Utf8)]),
            ),
            (
                "d3".to_string(),
                schema(&[("id", DataType::Utf8), ("amount", DataType::Int64)]),
            ),
            (
                "d4".to_string(),
                schema(&[("id", DataType::Utf8), ("amount", DataType::Null)]),
            ),
        ];
        let (s, drift) = reconcile(&files, None);
        assert_eq!(drift.len(), 1, "{drift:?}");
        assert_eq!(
            (drift[0].path.as_str(), drift[0].column.as_str()),
            ("d2", "amount")
        );
        assert_eq!(drift[0].expected, "double");
        assert!(drift[0].found.starts_with("string"), "{drift:?}");
        // Integers and an all-null day read as doubles.
        assert_eq!(
            s.field_with_name("amount").unwrap().data_type(),
            &DataType::Float64
        );
        // A declared type wins over the majority.
        let declared = schema(&[("amount", DataType::Utf8)]);
        let (_, drift) = reconcile(&files, Some(&declared));
        let paths: Vec<&str> = drift.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["d1", "d3"]);
    }
}
