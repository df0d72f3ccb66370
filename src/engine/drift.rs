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
