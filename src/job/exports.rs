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
    /// With `deltas`: days between runs that send the whole target list as a replacing set.
    pub full_every_days: u32,
    /// Hold back file sets below the platform's documented minimum of valid rows.
    pub platform_floor: bool,
    /// google: consent signals of the upload.
    pub consent: Vec<Consent>,
}

/// A consent signal of a Google export. Google takes consent per upload, not per row, so the
/// files hold only people with consent and the manifest says the signal to set on the upload.
#[derive(Debug, Clone)]
pub struct Consent {
    /// The signal (`ad_user_data` or `ad_personalization`).
    pub header: String,
    /// Its value for every row.
    pub value: ConsentValue,
}

/// Where a consent signal comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentValue {
    /// `GRANTED` or `UNSPECIFIED` for every row.
    Fixed(String),
    /// A column of the identities table, read per row: rows not granted are left out.
    Column(String),
}

/// Google's consent signals, as the EU user consent policy names them.
const CONSENT_SIGNALS: &[&str] = &["ad_user_data", "ad_personalization"];

fn consent(
    format: ExportFormat,
    spec: Option<&std::collections::BTreeMap<String, super::spec::ConsentSpec>>,
) -> Result<Vec<Consent>, String> {
    let Some(map) = spec else {
        return Ok(Vec::new());
    };
    if format != ExportFormat::GoogleCustomerMatch {
        return Err("`consent` is written in Google Customer Match files only".into());
    }
    let mut out = Vec::new();
    for signal in CONSENT_SIGNALS {
        let Some(v) = map.get(*signal) else { continue };
        let value = match v {
            super::spec::ConsentSpec::Fixed(s) => {
                let up = s.trim().to_ascii_uppercase();
                if up == "DENIED" {
                    return Err(format!("consent `{signal}` = \"DENIED\": Google rejects Customer Match uploads without consent; leave such people out of the export (or read consent per row: {{ column = \"...\" }})"));
                }
                if up != "GRANTED" && up != "UNSPECIFIED" {
                    return Err(format!("consent `{signal}` = \"{s}\" must be \"GRANTED\", \"UNSPECIFIED\" or {{ column = \"...\" }}"));
                }
                ConsentValue::Fixed(up)
            }
            super::spec::ConsentSpec::Column(c) => ConsentValue::Column(c.column.clone()),
        };
        out.push(Consent {
            header: signal.to_string(),
            value,
        });
    }
    if let Some(k) = map.keys().find(|k| !CONSENT_SIGNALS.contains(&k.as_str())) {
        return Err(format!(
            "consent signal `{k}` is not one of: {}",
            CONSENT_SIGNALS.join(", ")
        ));
    }
    Ok(out)
}

/// `"30 days"`, `"N days"`, `"every N days"`, `"daily"` or `"weekly"`, in days.
fn full_every(text: Option<&str>) -> Result<u32, String> {
    let Some(text) = text else {
        return Ok(DEFAULT_FULL_EVERY_DAYS);
    };
    let t = text.trim().to_ascii_lowercase();
    let n = match t.as_str() {
        "daily" => Some(1),
        "weekly" => Some(7),
        _ => t
            .strip_prefix("every ")
            .unwrap_or(&t)
            .strip_suffix(" days")
            .or_else(|| t.strip_suffix(" day"))
            .and_then(|n| n.trim().parse::<u32>().ok())
            .filter(|n| *n >= 1),
    };
    n.ok_or_else(|| {
        format!("full_every = \"{text}\" must be \"N days\" (N ≥ 1), \"daily\" or \"weekly\"")
    })
}

/// Days between full sends of a list fed with deltas: well inside Tencent's refresh window and
/// Google's 540-day membership limit.
pub const DEFAULT_FULL_EVERY_DAYS: u32 = 30;

/// Google Customer Match takes one key type per list: contact information (email, phone,
/// name and address) or mobile device ids. An export naming both writes them as two file sets
/// of each segment; device ids belong to one app, named by `app_id` (an Android package name
/// or a numeric App Store id).
fn google_key_types(fields: &[platforms::Field], app_id: Option<&str>) -> Result<(), String> {
    const DEVICE: &str = "Mobile Device ID";
    let device = fields.iter().any(|f| f.header == DEVICE);
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
                    match (ty.as_str(), &id.app_column) {
                        ("WECHAT_OPENID" | "WX_OPENID", None) => return Err("WECHAT_OPENID files belong to one official account or mini-program each: say which column holds each openid's app, e.g. `{ type = \"WECHAT_OPENID\", column = \"openid\", app_column = \"open_app_id\" }`".into()),
                        ("WECHAT_OPENID" | "WX_OPENID" | "MOBILE_QQ_OPENID", Some(_)) | (_, None) => {}
                        (_, Some(_)) => return Err(format!("`app_column` belongs to WECHAT_OPENID, WX_OPENID and MOBILE_QQ_OPENID (ids that belong to one app), not `{ty}`")),
                    }
                    out.push(platforms::Field {
                        header: ty,
                        column: id.column.clone(),
                        norm,
                        hash,
                        app_column: id.app_column.clone(),
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
        let consent = consent(format, spec.consent.as_ref())?;
        let full_every_days = full_every(spec.full_every.as_deref())?;
        if spec.full_every.is_some() && spec.deltas != Some(true) {
            return Err(
                "`full_every` paces the full sends of an export with `deltas = true`".into(),
            );
        }
        if spec.platform_floor == Some(true) && platforms::platform_floor(format).is_none() {
            return Err("`platform_floor` applies to the ad-platform formats".into());
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
            full_every_days,
            platform_floor: spec.platform_floor.unwrap_or(false),
            consent,
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
