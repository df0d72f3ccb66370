//! The ad platforms' identifier rules as data: which fields and id types a format takes, the
//! normalisation and hashing each gets, the platforms' size limits. Checking a job uses them;
//! the normalising SQL and the hashing itself live with the segment-file writer.
//!
//! Sources of the rules (also cited in the README):
//! - Tencent Ads, customer-file audiences (客户文件人群): <https://developers.e.qq.com/docs/audience_management/file>
//! - Meta, customer list custom audiences, hashing and normalisation:
//!   <https://developers.facebook.com/docs/marketing-api/audiences/guides/custom-audiences#hash>
//! - Google Ads, Customer Match data formatting:
//!   <https://support.google.com/google-ads/answer/7659867>
//! - TikTok, supported IDs and formats of customer files:
//!   <https://ads.tiktok.com/help/article/list-of-supported-ids-and-formats-for-a-customer-file>

use super::spec::ExportFormat;

/// How a normalised value is turned into what the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// Written as normalised (only when the export says `hash = "none"`, or for values that
    /// are not personal data by the platform's rules, such as mobile advertising ids).
    None,
    /// Lower-case hex MD5.
    Md5,
    /// Lower-case hex SHA-256.
    Sha256,
    /// Lower-case hex SHA-256 of the lower-case hex MD5.
    Md5Sha256,
}
impl Hash {
    /// Name used in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Hash::None => "none",
            Hash::Md5 => "md5",
            Hash::Sha256 => "sha256",
            Hash::Md5Sha256 => "md5+sha256",
        }
    }
}

/// Normalisation and validity rule of one identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Norm {
    /// IMEI or MEID: 14 or 15 digits or lower-case hex letters (Tencent: lower-case before MD5).
    Imei,
    /// IDFA: upper-case, hyphens kept, 8-4-4-4-12; the all-zero IDFA (tracking off) is invalid.
    Idfa,
    /// MAC: separators removed, upper-case, 12 hex digits.
    Mac,
    /// Chinese mobile number: 11 digits starting with 1; a `+86` / `0086` / `86` prefix is removed.
    ChinaMobile,
    /// OAID as given (trimmed); all-zero OAIDs are invalid.
    Oaid,
    /// WeChat / QQ openid as given.
    Openid,
    /// Mobile advertising id (IDFA or GAID/OAID), lower-case, not hashed by the CSV platforms.
    Maid,
    /// Email trimmed and lower-cased.
    Email,
    /// Email as Google wants it: also dots removed before `@` for gmail.com / googlemail.com.
    EmailGoogle,
    /// Email as TikTok wants it: `+tag` and dots removed before `@`.
    EmailTiktok,
    /// Phone as digits with the country code, no `+`, no leading zeros (Meta).
    PhoneDigits,
    /// Phone in E.164: `+`, country code, number (Google, TikTok).
    PhoneE164,
    /// First or last name: trimmed, lower-case, punctuation removed.
    Name,
    /// Two-letter country code, lower-case (Meta).
    CountryLower,
    /// Two-letter country code, upper-case (Google; not hashed).
    CountryUpper,
    /// Postal code: trimmed, spaces removed, lower-case.
    Zip,
    /// City: lower-case, no spaces, punctuation or digits.
    City,
    /// State or region: trimmed, lower-case.
    State,
    /// Gender: `f` or `m`.
    Gender,
    /// Year of birth, four digits.
    Year,
    /// Free text id (e.g. an external id), trimmed.
    Text,
}

impl Norm {
    /// True when the value is personal data that leaves only hashed unless `hash = "none"`.
    pub fn is_pii(self) -> bool {
        !matches!(
            self,
            Norm::Openid | Norm::Maid | Norm::Text | Norm::CountryUpper
        )
    }
}

/// One output field (a column of a CSV platform, or one Tencent id type).
#[derive(Debug, Clone)]
pub struct Field {
    /// Header (CSV) or id type (Tencent).
    pub header: String,
    /// Column of the identities table.
    pub column: String,
    /// Normalisation.
    pub norm: Norm,
    /// Hashing of the normalised value.
    pub hash: Hash,
    /// Tencent `WECHAT_OPENID`: the column naming the app (`open_app_id`) of each openid.
    pub app_column: Option<String>,
}

/// Tencent id types: (name, normalisation, hashing). Raw types need `hash = "none"`.
/// `MD5_SHA256_*` is SHA-256 of the lower-case hex MD5 of the normalised id.
const TENCENT: &[(&str, Norm, Hash)] = &[
    ("HASH_IMEI", Norm::Imei, Hash::Md5),
    ("HASH_IDFA", Norm::Idfa, Hash::Md5),
    ("HASH_MAC", Norm::Mac, Hash::Md5),
    ("HASH_MOBILE_PHONE", Norm::ChinaMobile, Hash::Md5),
    ("SHA256_MOBILE_PHONE", Norm::ChinaMobile, Hash::Sha256),
    ("HASH_OAID", Norm::Oaid, Hash::Md5),
    ("MD5_SHA256_IMEI", Norm::Imei, Hash::Md5Sha256),
    ("MD5_SHA256_IDFA", Norm::Idfa, Hash::Md5Sha256),
    ("MD5_SHA256_OAID", Norm::Oaid, Hash::Md5Sha256),
    ("WECHAT_OPENID", Norm::Openid, Hash::None),
    ("WX_OPENID", Norm::Openid, Hash::None),
    ("WX_UNIONID", Norm::Openid, Hash::None),
    ("CAID", Norm::Openid, Hash::None),
    ("MOBILE_QQ_OPENID", Norm::Openid, Hash::None),
    ("IMEI", Norm::Imei, Hash::None),
    ("IDFA", Norm::Idfa, Hash::None),
    ("OAID", Norm::Oaid, Hash::None),
    ("MOBILE_PHONE", Norm::ChinaMobile, Hash::None),
];

/// Names Tencent has since replaced: (old, current).
const TENCENT_RENAMED: &[(&str, &str)] = &[("SHA256_HASH_OAID", "MD5_SHA256_OAID")];

/// A Tencent id type by name: its current name, normalisation and hashing. An old name is
/// taken with a warning naming the current one.
pub fn tencent_type(name: &str, hash_none: bool) -> Result<(String, Norm, Hash), String> {
    let name = match TENCENT_RENAMED.iter().find(|(old, _)| *old == name) {
        Some((old, new)) => {
            tracing::warn!("Tencent id type `{old}` is now called `{new}`: files are written as {new}; rename it in the job");
            *new
        }
        None => name,
    };
    let Some((_, norm, hash)) = TENCENT.iter().find(|(n, _, _)| *n == name) else {
        let names: Vec<&str> = TENCENT.iter().map(|t| t.0).collect();
        return Err(format!(
            "unknown Tencent id type `{name}` (known: {})",
            names.join(", ")
        ));
    };
    if *hash == Hash::None && norm.is_pii() && !hash_none {
        return Err(format!(
            "id type `{name}` writes raw identifiers; say `hash = \"none\"` to allow it, or use HASH_{name}"
        ));
    }
    Ok((name.to_string(), *norm, *hash))
}

/// Fields of a CSV platform: (key accepted in `fields`, header written, normalisation, hashed?).
fn csv_platform(format: ExportFormat) -> &'static [(&'static str, &'static str, Norm, bool)] {
    match format {
        ExportFormat::MetaCustomAudience => &[
            ("email", "email", Norm::Email, true),
            ("phone", "phone", Norm::PhoneDigits, true),
            ("madid", "madid", Norm::Maid, false),
            ("fn", "fn", Norm::Name, true),
            ("ln", "ln", Norm::Name, true),
            ("zip", "zip", Norm::Zip, true),
            ("ct", "ct", Norm::City, true),
            ("st", "st", Norm::State, true),
            ("country", "country", Norm::CountryLower, true),
            ("gen", "gen", Norm::Gender, true),
            ("doby", "doby", Norm::Year, true),
            ("extern_id", "extern_id", Norm::Text, false),
        ],
        ExportFormat::GoogleCustomerMatch => &[
            ("email", "Email", Norm::EmailGoogle, true),
            ("phone", "Phone", Norm::PhoneE164, true),
            ("first_name", "First Name", Norm::Name, true),
            ("last_name", "Last Name", Norm::Name, true),
            ("country", "Country", Norm::CountryUpper, false),
            ("zip", "Zip", Norm::Zip, false),
            ("mobile_device_id", "Mobile Device ID", Norm::Maid, false),
        ],
        ExportFormat::TiktokCustomAudience => &[
            ("maid", "MAID", Norm::Maid, true),
            ("phone", "Phone", Norm::PhoneE164, true),
            ("email", "Email", Norm::EmailTiktok, true),
        ],
        _ => &[],
    }
}

/// The fields of a CSV-platform export from its `fields` map and `hash` setting, in the
/// platform's column order.
pub fn csv_fields(
    format: ExportFormat,
    map: &std::collections::BTreeMap<String, String>,
    hash: Option<&str>,
) -> Result<Vec<Field>, String> {
    let table = csv_platform(format);
    for key in map.keys() {
        let k = key.to_ascii_lowercase().replace(' ', "_");
        if !table
            .iter()
            .any(|(name, header, _, _)| *name == k || *header == key.as_str())
        {
            let names: Vec<&str> = table.iter().map(|t| t.0).collect();
            return Err(format!(
                "field `{key}` is not one of this platform's fields: {}",
                names.join(", ")
            ));
        }
    }
    let tiktok = format == ExportFormat::TiktokCustomAudience;
    let hash = match (hash, tiktok) {
        (None | Some("sha256"), _) => Hash::Sha256,
        (Some("md5"), true) => Hash::Md5,
        (Some("none"), _) => Hash::None,
        (Some(h), _) => {
            return Err(format!(
                "hash `{h}` is not offered here (use sha256{}, or none to write raw values)",
                if tiktok { ", md5" } else { "" }
            ))
        }
    };
    let mut out = Vec::new();
    for (name, header, norm, hashed) in table {
        let Some(column) = map.iter().find_map(|(k, v)| {
            (k.to_ascii_lowercase().replace(' ', "_") == *name || k.as_str() == *header)
                .then(|| v.clone())
        }) else {
            continue;
        };
        let h = if *hashed { hash } else { Hash::None };
        let header = if tiktok {
            match h {
                Hash::Sha256 => format!("{header}_SHA256"),
                Hash::Md5 if *name == "maid" => "MAID_MD5".to_string(),
                Hash::Md5 => {
                    return Err(format!(
                        "TikTok takes `{name}` as raw or SHA-256 only, not MD5"
                    ))
                }
                _ => header.to_string(),
            }
        } else {
            header.to_string()
        };
        out.push(Field {
            header,
            column,
            norm: *norm,
            hash: h,
            app_column: None,
        });
    }
    if out.is_empty() {
        return Err("`fields` maps no platform field to a column".into());
    }
    Ok(out)
}

/// The smallest number of valid rows a file set needs for the platform to use the list (the
/// opt-in `platform_floor`), with the rule's source. Where the platform states a floor of
/// matched people, valid rows are the upper bound the engine can check.
pub fn platform_floor(format: ExportFormat) -> Option<(u64, &'static str)> {
    match format {
        // "Your audience must contain at least 100 people" to be used for ads or a lookalike.
        ExportFormat::MetaCustomAudience => Some((
            100,
            "Meta: a customer-list audience needs at least 100 matched people",
        )),
        // The list serves once it has at least 100 active members (Search, Gmail, YouTube).
        ExportFormat::GoogleCustomerMatch => Some((
            100,
            "Google Customer Match: a list needs at least 100 active members to serve",
        )),
        // Customer files need at least 1,000 rows and 1,000 matched users.
        ExportFormat::TiktokCustomAudience => Some((
            1000,
            "TikTok: a customer file needs at least 1,000 rows (and 1,000 matched users)",
        )),
        // A lookalike (拓展人群) seed package needs at least 2,000 users after matching.
        ExportFormat::TencentAds => Some((
            2000,
            "Tencent Ads: a lookalike seed audience needs at least 2,000 users",
        )),
        _ => None,
    }
}

/// The largest file the platform accepts.
pub fn platform_max_bytes(format: ExportFormat) -> Option<u64> {
    match format {
        ExportFormat::TencentAds => Some(100 * 1024 * 1024),
        ExportFormat::TiktokCustomAudience => Some(1024 * 1024 * 1024 - 1),
        _ => None,
    }
}

/// Compression of segment files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compress {
    /// Plain text.
    None,
    /// `.gz` (no file name or time in the header, so bytes are reproducible).
    Gzip,
    /// `.zip` holding one text file (entry time fixed at 1980-01-01 for the same reason).
    Zip,
}

impl Compress {
    /// Parses the job-file value.
    pub fn parse(s: &str) -> std::result::Result<Compress, String> {
        match s {
            "none" => Ok(Compress::None),
            "gzip" | "gz" => Ok(Compress::Gzip),
            "zip" => Ok(Compress::Zip),
            other => Err(format!("compress `{other}` is not one of: none, gzip, zip")),
        }
    }

    /// Name used in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Compress::None => "none",
            Compress::Gzip => "gzip",
            Compress::Zip => "zip",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_types_need_hash_none() {
        assert!(tencent_type("IMEI", false).is_err());
        assert!(tencent_type("IMEI", true).is_ok());
        assert!(tencent_type("WECHAT_OPENID", false).is_ok());
        assert!(tencent_type("HASH_IMIE", false)
            .unwrap_err()
            .contains("HASH_IMEI"));
    }
}
