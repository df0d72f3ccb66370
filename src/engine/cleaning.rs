//! Dirty rows of a source, left out before any step reads it and counted: CSV rows whose values
//! do not parse as the declared types (`bad_rows = "skip"`), rows matching a named `drop` rule
//! (null ids, negative amounts, timestamps after `as_of`, unknown kinds, ...), and repeated keys
//! (`dedupe`). The file as read stays available as `<source>__raw`; the source's own name is a
//! view over the clean rows, so every step, segment and export sees the same data.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::datasource::TableProvider;

use super::diagnostics::execution_error;
use super::sql::param_values;
use super::Engine;
use crate::error::{Error, Result};
use crate::job::{Bindings, Source};

/// Suffix of the table holding a cleaned source's rows as read.
pub const RAW_SUFFIX: &str = "__raw";

use crate::quote::ident as q;

/// Where the counts of a day-partitioned source are kept per day, and its days' fingerprints.
pub struct KeptCounts {
    /// The source's folder in the state.
    pub dir: crate::storage::Location,
    /// The day column.
    pub column: String,
    /// Each day's files' fingerprint.
    pub prints: BTreeMap<String, String>,
    /// Count every day again (`--full-refresh`).
    pub recount: bool,
}

/// Whether a source's counts can be kept per day: day-partitioned, every file in a day folder,
/// no de-duplication (repeats span days) and no rule reading a param (its counts would change
/// with it).
pub fn counts_per_day(source: &Source) -> bool {
    !source.partitions.is_empty()
        && source.dedupe.is_empty()
        && !source.drop.iter().any(|(_, cond)| cond.contains('$'))
}

/// True when the source declares any cleaning.
pub fn wanted(source: &Source) -> bool {
    source.skip_bad_rows || !source.drop.is_empty() || !source.dedupe.is_empty()
}

/// The declared schema with every column as text: how a CSV with `bad_rows = "skip"` is read,
/// so a value that does not parse becomes a counted bad row instead of a failed read.
pub fn text_schema(declared: &SchemaRef) -> SchemaRef {
    Arc::new(datafusion::arrow::datatypes::Schema::new(
        declared
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_data_type(DataType::Utf8))
            .collect::<Vec<_>>(),
    ))
}

fn sql_type(t: &DataType) -> &'static str {
    match t {
        DataType::Int64 => "BIGINT",
        DataType::Int32 => "INT",
        DataType::Float64 => "DOUBLE",
        DataType::Boolean => "BOOLEAN",
        DataType::Date32 => "DATE",
        DataType::Timestamp(..) => "TIMESTAMP",
        _ => "VARCHAR",
    }
}

/// Registers `raw` (already registered as `<name>__raw`) under the source's name as a view of
/// its clean rows, and counts what each rule left out. Returns the counts by rule, in rule
/// order: `unparsable`, each `drop` rule, `duplicate`.
pub async fn register_clean_view(
    engine: &Engine,
    source: &Source,
    raw: Arc<dyn TableProvider>,
    bindings: &Bindings,
    per_day: Option<&KeptCounts>,
) -> Result<BTreeMap<String, u64>> {
    let name = &source.name;
    let raw_name = format!("{name}{RAW_SUFFIX}");
    let context = format!("source `{name}`");
    engine
        .ctx
        .register_table(raw_name.as_str(), raw.clone())
        .map_err(|e| Error::internal(format!("cannot register {context}: {e}")))?;
    let raw_schema = raw.schema();
    let partition_cols: Vec<&str> = source.partitions.iter().map(String::as_str).collect();

    // 1. Typed columns (bad_rows = "skip"): TRY_CAST of each text column; a row with a value
    //    that is present but does not parse is bad.
    let mut typed_cols = Vec::new();
    let mut parses = Vec::new();
    for f in raw_schema.fields() {
        let c = q(f.name());
        let declared = source.schema.as_ref().and_then(|s| {
            s.field_with_name(f.name())
                .ok()
                .map(|f| f.data_type().clone())
        });
        match declared {
            // Only text read from CSV is parsed here (JSON is sorted out line by line).
            Some(t)
                if source.skip_bad_rows
                    && t != DataType::Utf8
                    && f.data_type() == &DataType::Utf8
                    && !partition_cols.contains(&f.name().as_str()) =>
            {
                let cast = format!("TRY_CAST(NULLIF(TRIM({c}), '') AS {})", sql_type(&t));
                parses.push(format!(
                    "(NULLIF(TRIM({c}), '') IS NULL OR {cast} IS NOT NULL)"
                ));
                typed_cols.push(format!("{cast} AS {c}"));
            }
            _ => typed_cols.push(c),
        }
    }
    let parsed_where = if parses.is_empty() {
        "TRUE".to_string()
    } else {
        parses.join(" AND ")
    };
    let typed = format!(
        "SELECT {} FROM {} WHERE {parsed_where}",
        typed_cols.join(", "),
        q(&raw_name)
    );
    let any_rule = if source.drop.is_empty() {
        "FALSE".to_string()
    } else {
        source
            .drop
            .iter()
            .map(|(_, cond)| format!("COALESCE(({cond}), FALSE)"))
            .collect::<Vec<_>>()
            .join(" OR ")
    };
    let kept = format!("SELECT * FROM ({typed}) t WHERE NOT ({any_rule})");

    // 2. Counts: parse failures, then each drop rule over the parsed rows (a row may match
    //    several rules), then repeated keys among the kept rows.
    let mut counts = BTreeMap::new();
    // Without `bad_rows = "skip"` every row parsed: no pass over the source to count them.
    if let (false, Some(k)) = (parses.is_empty(), per_day) {
        let day = q(&k.column);
        let v = super::day_counts::measure(
            engine,
            &k.dir,
            "unparsable",
            &k.prints,
            k.recount,
            1,
            bindings,
            &context,
            |days| {
                format!(
                    "SELECT CAST({day} AS VARCHAR), COUNT(*) FROM {} WHERE NOT ({parsed_where}) AND CAST({day} AS VARCHAR) IN ({days}) GROUP BY 1",
                    q(&raw_name)
                )
            },
        )
        .await?;
        counts.insert("unparsable".to_string(), v[0] as u64);
    } else if !parses.is_empty() {
        let bad = scalar(
            engine,
            &format!(
                "SELECT COUNT(*) FROM {} WHERE NOT ({parsed_where})",
                q(&raw_name)
            ),
            bindings,
            &context,
        )
        .await?;
        counts.insert("unparsable".to_string(), bad);
    } else if source.skip_bad_rows {
        counts.insert("unparsable".to_string(), 0);
    }
    if !source.drop.is_empty() {
        let sums: Vec<String> = source
            .drop
            .iter()
            .map(|(_, cond)| format!("SUM(CASE WHEN COALESCE(({cond}), FALSE) THEN 1 ELSE 0 END)"))
            .collect();
        let row = match per_day {
            Some(k) => {
                let day = q(&k.column);
                super::day_counts::measure(
                    engine,
                    &k.dir,
                    "dropped",
                    &k.prints,
                    k.recount,
                    sums.len(),
                    bindings,
                    &context,
                    |days| {
                        format!(
                            "SELECT CAST({day} AS VARCHAR), {} FROM ({typed}) t WHERE CAST({day} AS VARCHAR) IN ({days}) GROUP BY 1",
                            sums.join(", ")
                        )
                    },
                )
                .await
                .map_err(|e| rule_error(source, e))?
                .into_iter()
                .map(|v| v as u64)
                .collect()
            }
            None => row_of(
                engine,
                &format!("SELECT {} FROM ({typed}) t", sums.join(", ")),
                bindings,
                &context,
            )
            .await
            .map_err(|e| rule_error(source, e))?,
        };
        for ((rule, _), n) in source.drop.iter().zip(row) {
            counts.insert(rule.clone(), n);
        }
    }
    let view_sql = if source.dedupe.is_empty() {
        kept
    } else {
        for k in &source.dedupe {
            if raw_schema.field_with_name(k).is_err() {
                return Err(Error::job_msg(
                    Some(name),
                    format!("dedupe column `{k}` is not a column of source `{name}`"),
                    None,
                ));
            }
        }
        let keys = source
            .dedupe
            .iter()
            .map(|k| q(k))
            .collect::<Vec<_>>()
            .join(", ");
        let dups = scalar(
            engine,
            &format!("SELECT COALESCE(SUM(n - 1), 0) FROM (SELECT COUNT(*) AS n FROM ({kept}) k GROUP BY {keys}) g"),
            bindings,
            &context,
        )
        .await?;
        counts.insert("duplicate".to_string(), dups);
        // One row per key; among rows that differ beyond the key, the smallest in column order,
        // so the kept row does not depend on file order.
        let all = raw_schema
            .fields()
            .iter()
            .map(|f| q(f.name()))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "SELECT {all} FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY {all}) AS __n FROM ({kept}) k) d WHERE __n = 1"
        )
    };
    let df = engine
        .ctx
        .sql(&view_sql)
        .await
        .and_then(|df| df.with_param_values(param_values(bindings)))
        .map_err(|e| rule_error(source, execution_error(&context, e)))?;
    engine
        .ctx
        .register_table(name.as_str(), df.into_view())
        .map_err(|e| Error::internal(format!("cannot register {context}: {e}")))?;
    Ok(counts)
}

fn rule_error(source: &Source, e: Error) -> Error {
    match e {
        Error::Data { message, .. } | Error::Internal(message) => Error::job_msg(
            Some(&source.name),
            format!(
                "a `drop` rule of source `{}` does not run: {message}",
                source.name
            ),
            Some(
                "each rule is a SQL condition over the source's columns, e.g. \"user_id IS NULL\""
                    .into(),
            ),
        ),
        e => e,
    }
}

async fn row_of(
    engine: &Engine,
    sql: &str,
    bindings: &Bindings,
    context: &str,
) -> Result<Vec<u64>> {
    let batches = super::sql::collect_bound(engine, sql, bindings, context).await?;
    let Some(b) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(vec![]);
    };
    let mut out = Vec::new();
    for c in b.columns() {
        let c = datafusion::arrow::compute::cast(c, &DataType::Int64).map_err(Error::unexpected)?;
        let c = c.as_primitive::<Int64Type>();
        out.push(if c.is_valid(0) {
            c.value(0).max(0) as u64
        } else {
            0
        });
    }
    Ok(out)
}

async fn scalar(engine: &Engine, sql: &str, bindings: &Bindings, context: &str) -> Result<u64> {
    Ok(row_of(engine, sql, bindings, context)
        .await?
        .first()
        .copied()
        .unwrap_or(0))
}

/// Whether a JSON value fits a declared column type (null always does).
fn fits(v: &serde_json::Value, t: &DataType) -> bool {
    use serde_json::Value as V;
    match (v, t) {
        (V::Null, _) => true,
        (V::String(_), DataType::Utf8) => true,
        (V::Number(n), DataType::Int64 | DataType::Int32) => n.is_i64(),
        (V::Number(_), DataType::Float64) => true,
        (V::Bool(_), DataType::Boolean) => true,
        (V::String(s), DataType::Date32) => crate::job::params::parse_date(s).is_ok(),
        (V::String(s), DataType::Timestamp(..)) => {
            datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(s).is_ok()
        }
        _ => false,
    }
}

/// A JSON source with `bad_rows = "skip"`: every line is checked against the declared schema
/// (an object whose fields have the declared types); the good lines are decoded into an
/// in-memory table, the others counted. Returns the table and the count of bad lines.
pub async fn json_good_rows(
    loc: &crate::storage::Location,
    objects: &[object_store::ObjectMeta],
    declared: &SchemaRef,
    context: &str,
) -> Result<(Arc<dyn TableProvider>, u64)> {
    use object_store::ObjectStoreExt;
    let mut good = Vec::new();
    let mut bad = 0u64;
    for m in objects {
        let bytes = loc
            .store
            .get(&m.location)
            .await
            .map_err(|e| crate::storage::classify(context, m.location.as_ref(), e))?
            .bytes()
            .await
            .map_err(|e| crate::storage::classify(context, m.location.as_ref(), e))?;
        for line in bytes.split(|b| *b == b'\n') {
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            let ok = match serde_json::from_slice::<serde_json::Value>(line) {
                Ok(serde_json::Value::Object(o)) => declared
                    .fields()
                    .iter()
                    .all(|f| o.get(f.name()).is_none_or(|v| fits(v, f.data_type()))),
                _ => false,
            };
            if ok {
                good.extend_from_slice(line);
                good.push(b'\n');
            } else {
                bad += 1;
            }
        }
    }
    let reader = datafusion::arrow::json::ReaderBuilder::new(declared.clone())
        .build(std::io::Cursor::new(good))
        .map_err(|e| Error::data(context.to_string(), e.to_string()))?;
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::data(context.to_string(), e.to_string()))?;
    let table = datafusion::datasource::MemTable::try_new(declared.clone(), vec![batches])
        .map_err(Error::unexpected)?;
    Ok((Arc::new(table), bad))
}
