//! Column lists written in job files (`schema`, `expect`): `"user_id string, amount double"`.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Parses `"user_id string, ts timestamp, amount double"` into an Arrow schema.
pub fn parse_schema(text: &str) -> std::result::Result<SchemaRef, String> {
    let mut fields = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let mut it = part.split_whitespace();
        let (Some(name), Some(ty), None) = (it.next(), it.next(), it.next()) else {
            return Err(format!(
                "`{part}` should be `column type`, e.g. `amount double`"
            ));
        };
        let dt = match ty.to_ascii_lowercase().as_str() {
            "string" | "text" | "utf8" | "varchar" => DataType::Utf8,
            "int" | "bigint" | "int64" | "long" => DataType::Int64,
            "int32" | "integer" => DataType::Int32,
            "float" | "double" | "float64" => DataType::Float64,
            "bool" | "boolean" => DataType::Boolean,
            "date" => DataType::Date32,
            "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, None),
            other => {
                return Err(format!(
                    "unknown type `{other}` for column `{name}` (use string, int, int32, double, bool, date or timestamp)"
                ))
            }
        };
        fields.push(Field::new(name, dt, true));
    }
    if fields.is_empty() {
        return Err("the schema lists no columns".into());
    }
    Ok(Arc::new(Schema::new(fields)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_text() {
        let s = parse_schema("user_id string, ts timestamp, amount double").unwrap();
        assert_eq!(s.fields().len(), 3);
        assert!(parse_schema("a blob").unwrap_err().contains("unknown type"));
    }
}
