//! The checked form of a `[[export]]` of segments: plain data the segment-file writer reads.

use super::platforms;
use super::spec::ExportFormat;

/// A checked export of segments in one format.
#[derive(Debug, Clone)]
pub struct SegmentExport {
    /// Index of the export in the job (names it in messages).
    pub index: usize,
    /// Format.
    pub format: ExportFormat,
    /// Segment patterns.
    pub patterns: Vec<String>,
    /// Identities table joined on the id.
    pub identities: Option<String>,
    /// Output fields (CSV platforms) or id types in order of preference (Tencent).
    pub fields: Vec<platforms::Field>,
    /// Extra columns (csv / parquet).
    pub columns: Vec<String>,
    /// Lines per file.
    pub max_rows_per_file: usize,
    /// Bytes per file: the export's `max_bytes_per_file`, else the platform's cap.
    pub max_bytes_per_file: Option<u64>,
    /// Compression.
    pub compress: platforms::Compress,
    /// Smallest target group exported.
    pub min_size: u64,
    /// Fail the run when a segment is not exported.
    pub required: bool,
    /// Write adds / removes against the previous published run.
    pub deltas: bool,
    /// `hash = "none"` was said.
    pub raw_allowed: bool,
    /// Country calling code of national phone numbers.
    pub country_code: Option<String>,
    /// google: the app of a `Mobile Device ID` list.
    pub app_id: Option<String>,
}

/// Google Customer Match takes one key type per list: contact information (email, phone,
/// name and address) or mobile device ids, the latter for one app, named by `app_id` (an
/// Android package name or a numeric App Store id).
fn google_key_types(fields: &[platforms::Field], app_id: Option<&str>) -> Result<(), String> {
    const DEVICE: &str = "Mobile Device ID";
    let device = fields.iter().any(|f| f.header == DEVICE);
    if device && fields.len() > 1 {
        let others: Vec<&str> = fields
            .iter()
            .filter(|f| f.header != DEVICE)
            .map(|f| f.header.as_str())
            .collect();
        return Err(format!(
            "Google Customer Match takes one key type per list: `{DEVICE}` cannot share a list with {}; write device ids in an export of their own (fields = {{ mobile_device_id = \"...\" }} with app_id) and contact information in another",
            others.join(", ")
        ));
    }
    match (device, app_id) {
        (true, None) => Err(format!(
            "a `{DEVICE}` list belongs to one app: say `app_id = \"com.example.shop\"` (Android package name) or `app_id = \"123456789\"` (App Store id)"
        )),
        (true, Some(app)) if !valid_app_id(app) => Err(format!(
            "app_id `{app}` is neither an Android package name (com.example.shop) nor a numeric App Store id"
        )),
        (false, Some(_)) => Err(format!(
            "app_id belongs to a `{DEVICE}` list; this export writes contact information"
        )),
        _ => Ok(()),
    }
}

/// An Android package name (two or more dot-separated names of letters, digits and `_`, each
/// starting with a letter) or a numeric App Store id.
fn valid_app_id(app: &str) -> bool {
    if !app.is_empty() && app.chars().all(|c| c.is_ascii_digit()) {
        return true;
    }
    let parts: Vec<&str> = app.split('.').collect();
    parts.len() >= 2
        && parts.iter().all(|p| {
            p.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

impl SegmentExport {
    /// Checks an `[[export]]` of segments.
    pub fn from_spec(
        spec: &super::spec::ExportSpec,
        format: ExportFormat,
        patterns: Vec<String>,
        identities: Option<String>,
        pii_table: Option<&str>,
        index: usize,
    ) -> std::result::Result<SegmentExport, String> {
        let raw_allowed = spec.hash.as_deref() == Some("none");
        let fields = match format {
            ExportFormat::TencentAds => {
                if let Some(h) = &spec.hash {
                    if h != "none" {
                        return Err(format!("tencent_ads: the id type sets the hashing; `hash` may only be \"none\" (for raw types), not `{h}`"));
                    }
                }
                let ids = spec.ids.as_ref().filter(|v| !v.is_empty()).ok_or_else(|| {
                    "tencent_ads needs `ids = [{ type = \"HASH_IMEI\", column = \"imei\" }, ...]`: the id types in order of preference and their columns".to_string()
                })?;
                let mut out = Vec::new();
                for id in ids {
                    let (ty, norm, hash) = platforms::tencent_type(&id.ty, raw_allowed)?;
                    if out.iter().any(|f: &platforms::Field| f.header == ty) {
                        return Err(format!("id type `{ty}` is listed twice"));
                    }
                    out.push(platforms::Field {
                        header: ty,
                        column: id.column.clone(),
                        norm,
                        hash,
                    });
                }
                out
            }
            ExportFormat::MetaCustomAudience
            | ExportFormat::GoogleCustomerMatch
            | ExportFormat::TiktokCustomAudience => {
                let map = spec.fields.as_ref().ok_or("this format needs `fields`: platform field -> column, e.g. `fields = { email = \"email\", phone = \"phone\" }`")?;
                platforms::csv_fields(format, map, spec.hash.as_deref())?
            }
            // The key table refuses `ids` and `fields` here: these write the id and `columns`.
            ExportFormat::Csv | ExportFormat::Parquet => Vec::new(),
        };
        if format == ExportFormat::GoogleCustomerMatch {
            google_key_types(&fields, spec.app_id.as_deref())?;
        }
        let has_columns = !spec.columns.as_ref().is_none_or(|c| c.is_empty());
        if matches!(format, ExportFormat::Csv | ExportFormat::Parquet) && has_columns {
            if identities.is_none() {
                return Err("`columns` come from the `identities` table: name one".into());
            }
            if identities.as_deref() == pii_table && !raw_allowed {
                return Err(format!("`columns` of the identities table `{}` would leave unhashed: say `hash = \"none\"` to allow it, or take the columns from another table (`identities = \"...\"`)", pii_table.unwrap_or_default()));
            }
        }
        if let Some(cc) = &spec.country_code {
            if cc.is_empty()
                || cc.len() > 3
                || !cc.chars().all(|c| c.is_ascii_digit())
                || cc.starts_with('0')
            {
                return Err(format!(
                    "country_code `{cc}` must be 1 to 3 digits without `+`, e.g. \"86\""
                ));
            }
        }
        let compress = match &spec.compress {
            Some(c) => platforms::Compress::parse(c)?,
            None if format == ExportFormat::TencentAds => platforms::Compress::Zip,
            None => platforms::Compress::None,
        };
        if !fields.is_empty() && identities.is_none() {
            return Err("name the table holding the identifiers: `identities = \"users\"` here or under [publish]".into());
        }
        let cap = platforms::platform_max_bytes(format);
        let max_bytes_per_file = match (spec.max_bytes_per_file, cap) {
            (Some(0), _) => return Err("max_bytes_per_file must be at least 1".into()),
            (Some(b), Some(c)) if b > c => {
                return Err(format!(
                    "max_bytes_per_file = {b} is over the platform's cap of {c} bytes"
                ))
            }
            (Some(b), _) => Some(b),
            (None, c) => c,
        };
        let max_rows_per_file = spec.max_rows_per_file.unwrap_or(1_000_000);
        if max_rows_per_file == 0 {
            return Err("max_rows_per_file must be at least 1".into());
        }
        Ok(SegmentExport {
            index,
            format,
            patterns,
            identities,
            fields,
            columns: spec.columns.clone().unwrap_or_default(),
            max_rows_per_file,
            max_bytes_per_file,
            compress,
            min_size: spec.min_size.unwrap_or(1000) as u64,
            required: spec.required.unwrap_or(false),
            deltas: spec.deltas.unwrap_or(false),
            raw_allowed,
            country_code: spec.country_code.clone(),
            app_id: spec.app_id.clone(),
        })
    }

    /// The format's name in job files.
    pub fn format_name(&self) -> &'static str {
        format_name(self.format)
    }
}

/// A format's name in job files.
pub fn format_name(f: ExportFormat) -> &'static str {
    match f {
        ExportFormat::Parquet => "parquet",
        ExportFormat::Csv => "csv",
        ExportFormat::TencentAds => "tencent_ads",
        ExportFormat::MetaCustomAudience => "meta_custom_audience",
        ExportFormat::GoogleCustomerMatch => "google_customer_match",
        ExportFormat::TiktokCustomAudience => "tiktok_custom_audience",
    }
}
