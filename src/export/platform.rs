//! The ad platforms' identifier rules at work: how each value is
//! normalised and validated (as a SQL expression, so the SQL engine de-duplicates and orders
//! the normalised values with bounded memory), and how it is hashed (in Rust, in parallel).
//!
//! Sources of the rules (also cited in the README):
//! - Tencent Ads, customer-file audiences (客户文件人群): <https://developers.e.qq.com/docs/audience_management/file>
//! - Meta, customer list custom audiences, hashing and normalisation:
//!   <https://developers.facebook.com/docs/marketing-api/audiences/guides/custom-audiences#hash>
//! - Google Ads, Customer Match data formatting:
//!   <https://support.google.com/google-ads/answer/7659867>
//! - TikTok, supported IDs and formats of customer files:
//!   <https://ads.tiktok.com/help/article/list-of-supported-ids-and-formats-for-a-customer-file>

use md5::Md5;
use sha2::{Digest, Sha256};

pub use crate::job::platforms::{
    csv_fields, platform_floor, platform_max_bytes, tencent_type, Field, Hash, Norm,
};

impl Hash {
    /// Appends the hashed form of `value` to `out`.
    pub fn apply(self, value: &[u8], out: &mut Vec<u8>) {
        let mut hex = [0u8; 64];
        match self {
            Hash::None => out.extend_from_slice(value),
            Hash::Md5 => {
                let d = Md5::digest(value);
                let n = encode_hex(&d, &mut hex);
                out.extend_from_slice(&hex[..n]);
            }
            Hash::Sha256 => {
                let d = Sha256::digest(value);
                let n = encode_hex(&d, &mut hex);
                out.extend_from_slice(&hex[..n]);
            }
            Hash::Md5Sha256 => {
                let d = Md5::digest(value);
                let mut md5hex = [0u8; 32];
                encode_hex(&d, &mut md5hex);
                let d = Sha256::digest(md5hex);
                let n = encode_hex(&d, &mut hex);
                out.extend_from_slice(&hex[..n]);
            }
        }
    }
}

fn encode_hex(bytes: &[u8], out: &mut [u8]) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 15) as usize];
    }
    bytes.len() * 2
}
use crate::quote::literal as lit;

impl Norm {
    /// A SQL expression over the text value `c`: the normalised value when it is valid, else NULL.
    /// `cc` is the country calling code given to national phone numbers.
    pub fn sql(self, c: &str, cc: Option<&str>) -> String {
        let when = |v: String, cond: String| format!("CASE WHEN {cond} THEN {v} END");
        // Phones arrive written every way (`+86 138 0013 8000`, `(+86)138…`, `0086-138…`,
        // `86 138…`, `138.0013.8000`, a trunk `0`): only digits and a `+` count. `+` or `00`
        // starts an international number; a trunk `0` a national one. Without either, a number
        // that starts with `cc` and has at least 8 digits after it is taken as already
        // international (no national number starts with its own country code, as a rule),
        // anything else as national, given `cc`.
        let phone_digits = || {
            let s = format!("regexp_replace(trim({c}), '[^0-9+]', '', 'g')");
            let d = format!("regexp_replace({s}, '[^0-9]', '', 'g')");
            let stripped = format!("regexp_replace({d}, '^0+', '')");
            let national = match cc {
                Some(cc) => format!(
                    "(CASE WHEN NOT starts_with({d}, '0') AND starts_with({d}, {cc}) AND length({d}) >= {min} THEN {d} ELSE concat({cc}, {stripped}) END)",
                    cc = lit(cc),
                    min = cc.len() + 8
                ),
                None => "CAST(NULL AS VARCHAR)".to_string(),
            };
            format!("(CASE WHEN starts_with({s}, '+') OR starts_with({s}, '00') THEN {stripped} ELSE {national} END)")
        };
        match self {
            Norm::Imei => {
                let v = format!("lower(trim({c}))");
                when(
                    v.clone(),
                    format!(
                        "regexp_like({v}, '^[0-9a-f]{{14,15}}$') AND NOT regexp_like({v}, '^0+$')"
                    ),
                )
            }
            Norm::Idfa => {
                let v = format!("upper(trim({c}))");
                when(v.clone(), format!("regexp_like({v}, '^[0-9A-F]{{8}}-[0-9A-F]{{4}}-[0-9A-F]{{4}}-[0-9A-F]{{4}}-[0-9A-F]{{12}}$') AND NOT regexp_like({v}, '^[0-]+$')"))
            }
            Norm::Mac => {
                let v = format!("upper(regexp_replace(trim({c}), '[:.-]', '', 'g'))");
                when(
                    v.clone(),
                    format!(
                        "regexp_like({v}, '^[0-9A-F]{{12}}$') AND NOT regexp_like({v}, '^0+$')"
                    ),
                )
            }
            Norm::ChinaMobile => {
                let v = format!("regexp_replace(regexp_replace(trim({c}), '[^0-9+]', '', 'g'), '^(\\+86|0086|86|0)?(1[0-9]{{10}})$', '${{2}}')");
                when(v.clone(), format!("regexp_like({v}, '^1[3-9][0-9]{{9}}$')"))
            }
            Norm::Oaid => {
                let v = format!("trim({c})");
                when(v.clone(), format!("regexp_like({v}, '^[0-9A-Za-z-]{{16,64}}$') AND NOT regexp_like({v}, '^[0-]+$')"))
            }
            Norm::Openid => {
                let v = format!("trim({c})");
                when(
                    v.clone(),
                    format!("regexp_like({v}, '^[0-9A-Za-z_-]{{6,64}}$')"),
                )
            }
            Norm::Maid => {
                let v = format!("lower(trim({c}))");
                when(v.clone(), format!("regexp_like({v}, '^[0-9a-f-]{{16,64}}$') AND NOT regexp_like({v}, '^[0-]+$')"))
            }
            Norm::Email => {
                let v = format!("lower(trim({c}))");
                when(
                    v.clone(),
                    format!("regexp_like({v}, '^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$')"),
                )
            }
            Norm::EmailGoogle => {
                let e = format!("lower(trim({c}))");
                let v = format!("(CASE WHEN split_part({e}, '@', 2) IN ('gmail.com', 'googlemail.com') THEN concat(replace(split_part({e}, '@', 1), '.', ''), '@', split_part({e}, '@', 2)) ELSE {e} END)");
                when(v.clone(), format!("regexp_like({e}, '^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$') AND regexp_like({v}, '^[^@\\s]+@')"))
            }
            Norm::EmailTiktok => {
                let e = format!("lower(trim({c}))");
                let v = format!("concat(replace(regexp_replace(split_part({e}, '@', 1), '\\+.*$', ''), '.', ''), '@', split_part({e}, '@', 2))");
                when(v.clone(), format!("regexp_like({e}, '^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$') AND regexp_like({v}, '^[0-9a-z][^@\\s]*@')"))
            }
            Norm::PhoneDigits => {
                let v = phone_digits();
                when(
                    v.clone(),
                    format!("regexp_like({v}, '^[1-9][0-9]{{7,14}}$')"),
                )
            }
            Norm::PhoneE164 => {
                let v = phone_digits();
                when(
                    format!("concat('+', {v})"),
                    format!("regexp_like({v}, '^[1-9][0-9]{{7,14}}$')"),
                )
            }
            Norm::Name => {
                let v = format!("regexp_replace(lower(trim({c})), '[[:punct:]]', '', 'g')");
                when(v.clone(), format!("length({v}) > 0"))
            }
            Norm::CountryLower => {
                let v = format!("lower(trim({c}))");
                when(v.clone(), format!("regexp_like({v}, '^[a-z]{{2}}$')"))
            }
            Norm::CountryUpper => {
                let v = format!("upper(trim({c}))");
                when(v.clone(), format!("regexp_like({v}, '^[A-Z]{{2}}$')"))
            }
            Norm::Zip => {
                let v = format!("lower(regexp_replace(trim({c}), '\\s', '', 'g'))");
                when(v.clone(), format!("length({v}) > 0"))
            }
            Norm::City => {
                let v = format!(
                    "regexp_replace(lower(trim({c})), '[[:punct:][:space:][:digit:]]', '', 'g')"
                );
                when(v.clone(), format!("length({v}) > 0"))
            }
            Norm::State => {
                let v = format!("lower(trim({c}))");
                when(v.clone(), format!("length({v}) > 0"))
            }
            Norm::Gender => {
                let v = format!("lower(substr(trim({c}), 1, 1))");
                when(v.clone(), format!("{v} IN ('f', 'm')"))
            }
            Norm::Year => {
                let v = format!("trim({c})");
                when(
                    v.clone(),
                    format!("regexp_like({v}, '^(19|20)[0-9]{{2}}$')"),
                )
            }
            Norm::Text => {
                let v = format!("trim({c})");
                when(v.clone(), format!("length({v}) > 0"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(hash: Hash, v: &str) -> String {
        let mut out = Vec::new();
        hash.apply(v.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn tencent_published_examples() {
        // The examples on Tencent's customer-file page, after our normalisation.
        assert_eq!(
            h(Hash::Md5, "FF1999CD-7177-4937-A474-74937A102630"),
            "2c010ed96aef2fc34983e1e7e9176b7e"
        );
        assert_eq!(
            h(Hash::Md5, "a000002c9060f7"),
            "f2d5a650733ca8c27d502b1c08da14e5"
        );
        assert_eq!(
            h(Hash::Md5, "020000000000"),
            "e3f5536a141811db40efd6400f1d0a4e"
        );
    }

    /// Each value normalised by `norm` (country code 86) through the SQL engine.
    async fn normalised(norm: Norm, values: &[&str]) -> Vec<Option<String>> {
        use datafusion::arrow::array::{Array, AsArray};
        let ctx = datafusion::prelude::SessionContext::new();
        let rows = values
            .iter()
            .map(|v| format!("({})", lit(v)))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {} FROM (VALUES {rows}) t(p)",
            norm.sql("t.p", Some("86"))
        );
        let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
        let mut out = Vec::new();
        for b in &batches {
            let col = datafusion::arrow::compute::cast(
                b.column(0),
                &datafusion::arrow::datatypes::DataType::Utf8,
            )
            .unwrap();
            let col = col.as_string::<i32>();
            out.extend((0..col.len()).map(|i| col.is_valid(i).then(|| col.value(i).to_string())));
        }
        out
    }

    #[tokio::test]
    async fn phones_written_every_way_normalise_to_one_number() {
        let forms = [
            "+86 138 0013 8000",
            "+86-138-0013-8000",
            "(+86)13800138000",
            "(+86) 138 0013 8000",
            "0086-138-0013-8000",
            "0086 13800138000",
            "86 138 0013 8000",
            "8613800138000",
            "138.0013.8000",
            "138 0013 8000",
            "13800138000",
            "013800138000",
            " 138-0013-8000 ",
        ];
        for (norm, want) in [
            (Norm::PhoneDigits, "8613800138000"),
            (Norm::PhoneE164, "+8613800138000"),
            (Norm::ChinaMobile, "13800138000"),
        ] {
            let got = normalised(norm, &forms).await;
            for (form, g) in forms.iter().zip(&got) {
                assert_eq!(g.as_deref(), Some(want), "{norm:?} of {form:?}");
            }
            // Not a phone: dropped (and counted by the writer).
            let invalid = [
                "",
                "n/a",
                "123",
                "+86",
                "+1234567890123456789",
                "phone: none",
                "0",
            ];
            let got = normalised(norm, &invalid).await;
            for (form, g) in invalid.iter().zip(&got) {
                assert_eq!(g, &None, "{norm:?} of {form:?}");
            }
        }
        // Another country's numbers keep their own code; a short national number gets ours;
        // text without digits is no phone.
        let got = normalised(
            Norm::PhoneE164,
            &[
                "+44 20 7183 8750",
                "(+1) 650-253-1234",
                "0044 20 7183 8750",
                "8750 1234",
                "n/a",
            ],
        )
        .await;
        assert_eq!(
            got,
            [
                Some("+442071838750".to_string()),
                Some("+16502531234".to_string()),
                Some("+442071838750".to_string()),
                Some("+8687501234".to_string()),
                None
            ]
        );
    }

    #[test]
    fn standard_vectors() {
        assert_eq!(h(Hash::Md5, "hello"), "5d41402abc4b2a76b9719d911017c592");
        assert_eq!(
            h(Hash::Sha256, "hello"),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(
            h(Hash::Md5Sha256, "hello"),
            h(Hash::Sha256, "5d41402abc4b2a76b9719d911017c592")
        );
        assert_eq!(h(Hash::None, "abc"), "abc");
    }
}
