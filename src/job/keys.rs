//! The one table of which job-file keys apply to which step kind and which export kind.
//!
//! Serde already rejects a key no step or export takes (`deny_unknown_fields`); this table
//! rejects a key that belongs to another kind, so `reach = ["5%"]` on a kmeans step is an error
//! that names the key, the step, its kind and the kinds the key applies to, not a green run
//! without tiers.

use super::spec::{ExportFormat, ExportSpec};

/// The step kinds, as written in `kind = "..."`.
pub const STEP_KINDS: &[&str] = &["sql", "kmeans", "lookalike", "ltv", "propensity"];

const ALL_STEPS: &[&str] = STEP_KINDS;
const MODELS: &[&str] = &["kmeans", "lookalike", "ltv", "propensity"];
const MATRIX: &[&str] = &["kmeans", "lookalike", "propensity"];
const SCORED: &[&str] = &["lookalike", "propensity"];

/// Every key of a `[[step]]` and the step kinds it applies to.
pub const STEP_KEYS: &[(&str, &[&str])] = &[
    ("name", ALL_STEPS),
    ("kind", ALL_STEPS),
    ("description", ALL_STEPS),
    ("min_rows", ALL_STEPS),
    ("max_rows", ALL_STEPS),
    ("transient", ALL_STEPS),
    ("sql", &["sql"]),
    ("query", &["sql"]),
    ("incremental", &["sql"]),
    ("input", MODELS),
    ("id", MODELS),
    ("features", MATRIX),
    ("transforms", MATRIX),
    ("nulls", MATRIX),
    ("assign", MATRIX),
    ("sample_rows", MATRIX),
    ("seed", &["kmeans", "lookalike"]),
    ("k", &["kmeans"]),
    ("k_range", &["kmeans"]),
    ("max_iter", &["kmeans"]),
    ("tol", &["kmeans"]),
    ("n_init", &["kmeans"]),
    ("exclude", SCORED),
    ("method", &["lookalike"]),
    ("negatives", SCORED),
    ("c", SCORED),
    ("seed_value", SCORED),
    ("reach", SCORED),
    ("min_seed", &["lookalike"]),
    ("horizon", &["ltv", "propensity"]),
    ("label", &["propensity"]),
    ("min_auc", &["propensity"]),
    ("penalizer", &["ltv"]),
    ("refit", MODELS),
    ("refit_drift", MODELS),
];

/// The export kinds: the export of a table, or segments in one format.
pub const EXPORT_KINDS: &[&str] = &[
    "table",
    "tencent_ads",
    "meta_custom_audience",
    "google_customer_match",
    "tiktok_custom_audience",
    "csv segments",
    "parquet segments",
];

const SEGMENTS: &[&str] = &[
    "tencent_ads",
    "meta_custom_audience",
    "google_customer_match",
    "tiktok_custom_audience",
    "csv segments",
    "parquet segments",
];
const TEXT_SEGMENTS: &[&str] = &[
    "tencent_ads",
    "meta_custom_audience",
    "google_customer_match",
    "tiktok_custom_audience",
    "csv segments",
];
const CSV_PLATFORMS: &[&str] = &[
    "meta_custom_audience",
    "google_customer_match",
    "tiktok_custom_audience",
];

const AD_PLATFORMS: &[&str] = &[
    "tencent_ads",
    "meta_custom_audience",
    "google_customer_match",
    "tiktok_custom_audience",
];

/// Every key of an `[[export]]` and the export kinds it applies to.
pub const EXPORT_KEYS: &[(&str, &[&str])] = &[
    ("table", &["table"]),
    ("segments", SEGMENTS),
    ("to", EXPORT_KINDS),
    ("format", EXPORT_KINDS),
    ("columns", &["table", "csv segments", "parquet segments"]),
    ("order_by", &["table"]),
    ("identities", SEGMENTS),
    ("ids", &["tencent_ads"]),
    ("fields", CSV_PLATFORMS),
    ("hash", SEGMENTS),
    ("country_code", CSV_PLATFORMS),
    ("app_id", &["google_customer_match"]),
    ("max_rows_per_file", TEXT_SEGMENTS),
    ("max_bytes_per_file", TEXT_SEGMENTS),
    ("compress", TEXT_SEGMENTS),
    ("min_size", SEGMENTS),
    ("required", SEGMENTS),
    ("deltas", SEGMENTS),
    ("full_every", SEGMENTS),
    ("platform_floor", AD_PLATFORMS),
    ("consent", &["google_customer_match"]),
];

/// The kinds `key` applies to in `table`, if it is a key of the table.
pub fn kinds_of(
    table: &[(&str, &'static [&'static str])],
    key: &str,
) -> Option<&'static [&'static str]> {
    table
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, kinds)| *kinds)
}

/// The kind of an export, when it can be told (`segments` with a `format`, or `table`).
pub fn export_kind(spec: &ExportSpec) -> Option<&'static str> {
    match (&spec.segments, spec.format) {
        (Some(_), Some(ExportFormat::TencentAds)) => Some("tencent_ads"),
        (Some(_), Some(ExportFormat::MetaCustomAudience)) => Some("meta_custom_audience"),
        (Some(_), Some(ExportFormat::GoogleCustomerMatch)) => Some("google_customer_match"),
        (Some(_), Some(ExportFormat::TiktokCustomAudience)) => Some("tiktok_custom_audience"),
        (Some(_), Some(ExportFormat::Csv)) => Some("csv segments"),
        (Some(_), Some(ExportFormat::Parquet)) => Some("parquet segments"),
        (Some(_), None) => None,
        (None, _) => spec.table.as_ref().map(|_| "table"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;
    use crate::job::Job;

    /// A value of the right TOML type for each step key (the key table decides, not the value).
    fn step_sample(key: &str) -> &'static str {
        match key {
            "min_rows" | "min_seed" | "negatives" | "n_init" | "max_iter" | "sample_rows" => "3",
            "max_rows" | "k" | "seed_value" => "5",
            "transient" => "true",
            "incremental" => "{ source = \"s\", days = 3 }",
            "sql" => "\"x.sql\"",
            "query" => "\"SELECT 1\"",
            "features" | "exclude" => "[\"a\"]",
            "transforms" => "{ a = \"log1p\" }",
            "nulls" => "\"mean\"",
            "assign" => "\"memory\"",
            "k_range" => "[2, 5]",
            "tol" | "c" | "horizon" | "penalizer" | "min_auc" => "0.5",
            "method" => "\"logistic\"",
            "reach" => "[\"5%\"]",
            "seed" => "1",
            _ => "\"t\"",
        }
    }

    fn export_sample(key: &str) -> &'static str {
        match key {
            "ids" => "[{ type = \"HASH_IMEI\", column = \"imei\" }]",
            "fields" => "{ email = \"email\" }",
            "hash" => "\"sha256\"",
            "country_code" => "\"86\"",
            "app_id" => "\"com.example.shop\"",
            "max_rows_per_file" | "min_size" => "10",
            "max_bytes_per_file" => "4096",
            "compress" => "\"gzip\"",
            "required" | "deltas" | "platform_floor" => "true",
            "full_every" => "\"30 days\"",
            "consent" => "{ ad_user_data = \"GRANTED\" }",
            "columns" | "order_by" => "[\"a\"]",
            _ => "\"t\"",
        }
    }

    fn parse(text: &str) -> String {
        match Job::parse(text, "x.toml", Path::new("/tmp")) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_step_key_on_every_step_kind() {
        for (key, kinds) in STEP_KEYS {
            if matches!(*key, "name" | "kind") {
                continue;
            }
            for kind in STEP_KINDS {
                let text = format!(
                    "name = \"x\"\n[[step]]\nname = \"st\"\nkind = \"{kind}\"\n{key} = {}\n",
                    step_sample(key)
                );
                let msg = parse(&text);
                let refused = format!("`{key}` does not apply to a {kind} step");
                if kinds.contains(kind) {
                    assert!(!msg.contains(&refused), "{key} on {kind}: {msg}");
                } else {
                    assert!(msg.contains(&refused), "{key} on {kind}: {msg}");
                    assert!(msg.contains("[st]"), "{msg}");
                    assert!(
                        msg.contains(&format!("it applies to {}", kinds.join(", "))),
                        "{msg}"
                    );
                    assert!(msg.contains("x.toml:5:1"), "the key's own line: {msg}");
                }
            }
        }
    }

    #[test]
    fn every_export_key_on_every_export_kind() {
        for (key, kinds) in EXPORT_KEYS {
            // These say what the export is.
            if matches!(*key, "table" | "segments" | "format") {
                continue;
            }
            for kind in EXPORT_KINDS {
                let base = match *kind {
                    "table" => "table = \"t\"\nformat = \"parquet\"".to_string(),
                    k => format!(
                        "segments = [\"s\"]\nformat = \"{}\"",
                        k.trim_end_matches(" segments")
                    ),
                };
                let text = format!(
                    "name = \"x\"\n[[export]]\n{base}\n{key} = {}\n",
                    export_sample(key)
                );
                let msg = parse(&text);
                let refused = format!("`{key}` does not apply to");
                if kinds.contains(kind) {
                    assert!(!msg.contains(&refused), "{key} on {kind}: {msg}");
                } else {
                    assert!(msg.contains(&refused), "{key} on {kind}: {msg}");
                    assert!(msg.contains("[export 1]"), "{msg}");
                    assert!(msg.contains(kind), "{key} on {kind}: {msg}");
                    assert!(msg.contains("x.toml:5:1"), "the key's own line: {msg}");
                }
            }
        }
    }

    /// The keys serde lists for an unknown key of a `[[step]]` or `[[export]]`.
    fn serde_keys(item: &str) -> BTreeSet<String> {
        let msg = parse(&format!("name = \"x\"\n[[{item}]]\nzz_unknown = 1\n"));
        let list = msg.split("expected one of").nth(1).expect(&msg);
        let list = list.lines().next().unwrap_or_default();
        list.split(',')
            .map(|k| k.trim().trim_matches('`').to_string())
            .filter(|k| !k.is_empty())
            .collect()
    }

    #[test]
    fn the_tables_list_every_key_the_job_file_takes() {
        let steps: BTreeSet<String> = STEP_KEYS.iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(steps, serde_keys("step"));
        let exports: BTreeSet<String> = EXPORT_KEYS.iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(exports, serde_keys("export"));
    }
}
