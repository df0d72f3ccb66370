//! Platform files as each ad platform takes them: Google's key types as separate file sets and
//! its consent, Tencent openids grouped by app, every written form of a phone number per
//! platform (hashes computed here, independently of the engine), and the platforms' floors.

use md5::{Digest, Md5};
use sha2::Sha256;

use crate::common::*;

fn md5(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

fn sha(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn manifest(run: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap()
}

/// Moves the `[publish]` table before the exports (TOML: exports are arrays of tables).
fn job_text(segments: &str, exports: &str) -> String {
    format!("{segments}\n[publish]\nidentities = \"ids\"\n{exports}")
}

fn with_exports(csv: &str, segments: &str, exports: &str) -> JobDir {
    let header = csv.lines().next().unwrap();
    let schema = header
        .split(',')
        .map(|c| format!("{c} string"))
        .collect::<Vec<_>>()
        .join(", ");
    JobDir::new(&format!(
        "name = \"p\"\n[sources]\nids = {{ url = \"../in/ids.csv\", format = \"csv\", schema = \"{schema}\" }}\n{}",
        job_text(segments, exports)
    ))
    .file("in/ids.csv", csv)
}

const ALL: &str = "[[segment]]\nname = \"all\"\nquery = \"SELECT DISTINCT user_id FROM ids\"\n";

#[test]
fn google_contact_and_device_ids_are_separate_file_sets_with_consent() {
    let csv = "user_id,email,phone,gaid,consent
u1,A@Example.com,+1 650 253 0001,38400000-8CF0-11BD-B23E-10B96E400001,granted
u2,b@example.com,,,yes
u3,,,38400000-8cf0-11bd-b23e-10b96e400003,true
u4,d@example.com,,38400000-8cf0-11bd-b23e-10b96e400004,denied
u5,e@example.com,,,
";
    let segments = format!(
        "{ALL}[[segment]]\nname = \"mail\"\nquery = \"SELECT user_id FROM ids WHERE user_id = 'u2'\"\n"
    );
    let export = "[[export]]\nsegments = [\"*\"]\nformat = \"google_customer_match\"\nfields = { email = \"email\", phone = \"phone\", mobile_device_id = \"gaid\" }\napp_id = \"com.example.shop\"\nconsent = { ad_user_data = { column = \"consent\" }, ad_personalization = \"GRANTED\" }\nmin_size = 1\n";
    let dir = with_exports(csv, &segments, export);
    let run = dir.run("run", &[]).published("undated");
    let g = run.join("google_customer_match");
    // Contact information in Google's contact template; u3 has none, u4 and u5 no consent.
    assert_eq!(
        std::fs::read_to_string(g.join("all/target/all_contact_part000.csv")).unwrap(),
        format!(
            "Email,Phone\n{},{}\n{},\n",
            sha("a@example.com"),
            sha("+16502530001"),
            sha("b@example.com")
        )
    );
    // Device ids in their own file set, lower-case, not hashed; u4's left out (no consent).
    assert_eq!(
        std::fs::read_to_string(g.join("all/target/all_mobile_device_id_part000.csv")).unwrap(),
        "Mobile Device ID\n38400000-8cf0-11bd-b23e-10b96e400001\n38400000-8cf0-11bd-b23e-10b96e400003\n"
    );
    // A segment with no device id writes no device file (and lists no such set).
    assert!(g.join("mail/target/mail_contact_part000.csv").exists());
    assert!(!g
        .join("mail/target/mail_mobile_device_id_part000.csv")
        .exists());
    let m = manifest(&run);
    let ex = &m["exports"][0];
    assert_eq!(ex["app_id"], "com.example.shop");
    assert_eq!(ex["consent"]["ad_user_data"], "GRANTED");
    assert_eq!(ex["consent"]["ad_personalization"], "GRANTED");
    let all = ex["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["segment"] == "all")
        .unwrap();
    assert_eq!(all["consent_withheld"], 2, "{all}");
    let types: Vec<&str> = all["file_sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["CONTACT", "MOBILE_DEVICE_ID"]);
    let mail = ex["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["segment"] == "mail")
        .unwrap();
    assert_eq!(mail["file_sets"].as_array().unwrap().len(), 1, "{mail}");
    // verify accepts what was written.
    let v = bin().arg("verify").arg(&run).output().unwrap();
    assert_eq!(v.status.code(), Some(0), "{}", output_text(&v));
    // A list that mixes key types (edited by hand, say) is named by verify.
    let contact = g.join("all/target/all_contact_part000.csv");
    let text = std::fs::read_to_string(&contact).unwrap();
    write(
        &contact,
        &text.replacen("Email,Phone", "Email,Mobile Device ID", 1),
    );
    let v = bin().arg("verify").arg(&run).output().unwrap();
    assert_eq!(v.status.code(), Some(65), "{}", output_text(&v));
    assert!(
        output_text(&v).contains("Google takes one key type per list"),
        "{}",
        output_text(&v)
    );
    write(&contact, &text);

    // Consent Google would reject, or a signal it does not know: job errors naming them.
    for (consent, expect) in [
        (
            "ad_user_data = \"DENIED\"",
            "Google rejects Customer Match uploads without consent",
        ),
        (
            "ad_user_data = \"maybe\"",
            "must be \"GRANTED\", \"UNSPECIFIED\"",
        ),
        (
            "ad_storage = \"GRANTED\"",
            "consent signal `ad_storage` is not one of",
        ),
    ] {
        let bad = export.replace(
            "ad_user_data = { column = \"consent\" }, ad_personalization = \"GRANTED\"",
            consent,
        );
        let dir = with_exports(csv, &segments, &bad);
        let res = dir.run("check", &[]);
        assert_eq!(res.code(), Some(78), "{consent}: {}", res.text());
        assert!(res.text().contains(expect), "{consent}: {}", res.text());
    }
}

#[test]
fn wechat_openids_are_grouped_into_one_file_set_per_app() {
    let csv = "user_id,openid,app
u1,oXyZ000111222,wx2222222222222222
u1,oAbCdEf123456,wx1111111111111111
u2,oAbCdEf223456,wx2222222222222222
u3,oAbCdEf323456,wx1111111111111111
u4,oAbCdEf423456,
u5,oAbCdEf523456,not an app id
";
    let export = "[[export]]\nsegments = [\"all\"]\nformat = \"tencent_ads\"\nids = [{ type = \"WECHAT_OPENID\", column = \"openid\", app_column = \"app\" }]\ncompress = \"none\"\nmin_size = 1\n";
    let dir = with_exports(csv, ALL, export);
    let run = dir.run("run", &[]).published("undated");
    let t = run.join("tencent_ads/all/target");
    assert_eq!(
        std::fs::read_to_string(t.join("all_wechat_openid_wx1111111111111111_part000.txt"))
            .unwrap(),
        "oAbCdEf123456\noAbCdEf323456\n"
    );
    assert_eq!(
        std::fs::read_to_string(t.join("all_wechat_openid_wx2222222222222222_part000.txt"))
            .unwrap(),
        "oXyZ000111222\noAbCdEf223456\n"
    );
    let m = manifest(&run);
    let seg = &m["exports"][0]["segments"][0];
    let sets: Vec<(String, String, u64)> = seg["file_sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id_type"].as_str().unwrap().to_string(),
                s["open_app_id"].as_str().unwrap().to_string(),
                s["rows"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sets,
        [
            ("WECHAT_OPENID".into(), "wx1111111111111111".into(), 2),
            ("WECHAT_OPENID".into(), "wx2222222222222222".into(), 2)
        ]
    );
    // An openid without a valid app cannot be uploaded: dropped and counted.
    assert_eq!(seg["dropped_invalid"], 2, "{seg}");

    // Without the app column the job is refused, naming the fix.
    let dir = with_exports(csv, ALL, &export.replace(", app_column = \"app\"", ""));
    let res = dir.run("check", &[]);
    assert_eq!(res.code(), Some(78), "{}", res.text());
    assert!(
        res.text().contains("app_column = \"open_app_id\""),
        "{}",
        res.text()
    );
    // An app column the identities table does not have: `check` names it.
    let dir = with_exports(
        csv,
        ALL,
        &export.replace("app_column = \"app\"", "app_column = \"appx\""),
    );
    let res = dir.run("check", &[]);
    assert_eq!(res.code(), Some(78), "{}", res.text());
    assert!(
        res.text().contains("has no column `appx`"),
        "{}",
        res.text()
    );
    // And an app column on another type is a mistake.
    let dir = with_exports(csv, ALL, &export.replace("WECHAT_OPENID", "WX_UNIONID"));
    let res = dir.run("check", &[]);
    assert_eq!(res.code(), Some(78), "{}", res.text());
    assert!(
        res.text().contains("`app_column` belongs to WECHAT_OPENID"),
        "{}",
        res.text()
    );
}

/// Phone numbers as CRM exports write them, with the number each platform must receive
/// (E.164; `None`: not a phone) and whether it is a Chinese mobile number (Tencent's only kind).
const PHONES: &[(&str, Option<&str>, bool)] = &[
    ("+86 138 0013 8001", Some("+8613800138001"), true),
    ("+86-138-0013-8002", Some("+8613800138002"), true),
    ("(+86)13800138003", Some("+8613800138003"), true),
    ("(+86) 138 0013 8004", Some("+8613800138004"), true),
    ("0086-138-0013-8005", Some("+8613800138005"), true),
    ("0086 13800138006", Some("+8613800138006"), true),
    ("86 138 0013 8007", Some("+8613800138007"), true),
    ("8613800138008", Some("+8613800138008"), true),
    ("138.0013.8009", Some("+8613800138009"), true),
    ("138 0013 8010", Some("+8613800138010"), true),
    ("13800138011", Some("+8613800138011"), true),
    ("013800138012", Some("+8613800138012"), true),
    (" 138-0013-8013 ", Some("+8613800138013"), true),
    ("+86 (138) 0013-8014", Some("+8613800138014"), true),
    ("+44 20 7183 8750", Some("+442071838750"), false),
    ("(+1) 650-253-0001", Some("+16502530001"), false),
    ("0044 20 7946 0018", Some("+442079460018"), false),
    ("+86 10 6552 9988", Some("+861065529988"), false),
    ("", None, false),
    ("n/a", None, false),
    ("123", None, false),
    ("+86", None, false),
    ("+1234567890123456789", None, false),
    ("phone: none", None, false),
    ("0", None, false),
    ("12345", None, false),
];

#[test]
fn every_written_form_of_a_phone_reaches_each_platform_as_it_expects() {
    let mut csv = String::from("user_id,phone\n");
    for (i, (form, _, _)) in PHONES.iter().enumerate() {
        let quoted = if form.contains(',') || form.contains(' ') {
            format!("\"{form}\"")
        } else {
            form.to_string()
        };
        csv.push_str(&format!("p{i:02},{quoted}\n"));
    }
    let exports = "[[export]]\nsegments = [\"all\"]\nformat = \"meta_custom_audience\"\nfields = { phone = \"phone\" }\ncountry_code = \"86\"\nmin_size = 1
[[export]]\nsegments = [\"all\"]\nformat = \"google_customer_match\"\nfields = { phone = \"phone\" }\ncountry_code = \"86\"\nmin_size = 1
[[export]]\nsegments = [\"all\"]\nformat = \"tiktok_custom_audience\"\nfields = { phone = \"phone\" }\ncountry_code = \"86\"\nmin_size = 1
[[export]]\nsegments = [\"all\"]\nto = \"tencent_md5\"\nformat = \"tencent_ads\"\nids = [{ type = \"HASH_MOBILE_PHONE\", column = \"phone\" }]\ncompress = \"none\"\nmin_size = 1
[[export]]\nsegments = [\"all\"]\nto = \"tencent_sha256\"\nformat = \"tencent_ads\"\nids = [{ type = \"SHA256_MOBILE_PHONE\", column = \"phone\" }]\ncompress = \"none\"\nmin_size = 1
";
    let dir = with_exports(&csv, ALL, exports);
    let run = dir.run("run", &[]).published("undated");
    let e164: Vec<&str> = PHONES.iter().filter_map(|p| p.1).collect();
    let china: Vec<&str> = PHONES
        .iter()
        .filter(|p| p.2)
        .map(|p| &p.1.unwrap()[3..])
        .collect();
    let lines = |rel: &str| -> Vec<String> {
        std::fs::read_to_string(run.join(rel))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    };
    let expect = |header: Option<&str>, values: Vec<String>| -> Vec<String> {
        header
            .map(str::to_string)
            .into_iter()
            .chain(values)
            .collect()
    };
    // Meta: digits with the country code, no `+`, SHA-256.
    assert_eq!(
        lines("meta_custom_audience/all/target/all_part000.csv"),
        expect(Some("phone"), e164.iter().map(|p| sha(&p[1..])).collect())
    );
    // Google and TikTok: E.164 with `+`, SHA-256.
    assert_eq!(
        lines("google_customer_match/all/target/all_part000.csv"),
        expect(Some("Phone"), e164.iter().map(|p| sha(p)).collect())
    );
    assert_eq!(
        lines("tiktok_custom_audience/all/target/all_part000.csv"),
        expect(Some("Phone_SHA256"), e164.iter().map(|p| sha(p)).collect())
    );
    // Tencent: the 11 digits of a Chinese mobile number, MD5 or SHA-256.
    assert_eq!(
        lines("tencent_md5/all/target/all_hash_mobile_phone_part000.txt"),
        china.iter().map(|p| md5(p)).collect::<Vec<_>>()
    );
    assert_eq!(
        lines("tencent_sha256/all/target/all_sha256_mobile_phone_part000.txt"),
        china.iter().map(|p| sha(p)).collect::<Vec<_>>()
    );
    // What is not a phone (for Tencent: not a Chinese mobile) is dropped and counted.
    let m = manifest(&run);
    let dropped: Vec<u64> = m["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["segments"][0]["dropped_invalid"].as_u64().unwrap())
        .collect();
    let invalid = (PHONES.len() - e164.len()) as u64;
    let not_china = (PHONES.len() - china.len()) as u64;
    assert_eq!(dropped, [invalid, invalid, invalid, not_china, not_china]);
}

/// `n` users with an email each, the first `phones` of them also a phone and a device id.
fn users(n: usize, phones: usize) -> String {
    let mut csv = String::from("user_id,email,phone,gaid\n");
    for i in 0..n {
        let (p, g) = if i < phones {
            (
                format!("+86 139 0000 {i:04}"),
                format!("38400000-8cf0-11bd-b23e-10b96e{i:06}"),
            )
        } else {
            (String::new(), String::new())
        };
        csv.push_str(&format!("u{i:04},user{i}@example.com,{p},{g}\n"));
    }
    csv
}

#[test]
fn platform_floors_hold_back_small_file_sets_when_asked() {
    let csv = users(150, 90);
    let exports = "[[export]]\nsegments = [\"all\"]\nformat = \"meta_custom_audience\"\nfields = { phone = \"phone\" }\nplatform_floor = true\nmin_size = 1
[[export]]\nsegments = [\"all\"]\nformat = \"google_customer_match\"\nfields = { email = \"email\", mobile_device_id = \"gaid\" }\napp_id = \"com.example.shop\"\nplatform_floor = true\nmin_size = 1
[[export]]\nsegments = [\"all\"]\nformat = \"tencent_ads\"\nids = [{ type = \"HASH_MOBILE_PHONE\", column = \"phone\" }]\nplatform_floor = true\nmin_size = 1
";
    let dir = with_exports(&csv, ALL, exports);
    let ran = dir.run("run", &[]);
    let text = ran.text();
    let run = ran.published("undated");
    // Meta: 90 valid phones, below 100: held back, said, nothing written.
    assert!(
        text.contains("90 valid rows, below the platform's minimum of 100"),
        "{text}"
    );
    assert!(!run
        .join("meta_custom_audience/all/target/all_part000.csv")
        .exists());
    // Google: 150 emails pass; the 90 device ids are held back, the contact set is kept.
    let g = run.join("google_customer_match/all/target");
    assert!(g.join("all_contact_part000.csv").exists());
    assert!(!g.join("all_mobile_device_id_part000.csv").exists());
    assert!(
        text.contains("MOBILE_DEVICE_ID: 90 valid rows, below the platform's minimum of 100"),
        "{text}"
    );
    // Tencent: a lookalike seed needs 2,000 users.
    assert!(text.contains("minimum of 2000"), "{text}");
    let m = manifest(&run);
    let ex = m["exports"].as_array().unwrap();
    assert_eq!(ex[0]["platform_floor"], 100);
    assert_eq!(ex[0]["segments"][0]["exported"], false);
    assert_eq!(ex[1]["segments"][0]["exported"], true);
    assert_eq!(
        ex[1]["segments"][0]["file_sets"].as_array().unwrap().len(),
        1
    );
    assert_eq!(ex[2]["platform_floor"], 2000);

    // With `required`, a set below the floor fails the run (exit 65) and publishes nothing new.
    let out = dir.path().join("out");
    let before = publication_of(&out, "undated");
    assert!(before.is_some());
    let strict = exports.replacen(
        "platform_floor = true\n",
        "platform_floor = true\nrequired = true\n",
        1,
    );
    write(
        &dir.job(),
        &std::fs::read_to_string(dir.job())
            .unwrap()
            .replace(exports, &strict),
    );
    let res = dir.run("run", &[]);
    assert_eq!(res.code(), Some(65), "{}", res.text());
    assert!(
        res.text().contains("below the platform's minimum of 100"),
        "{}",
        res.text()
    );
    assert_eq!(publication_of(&out, "undated"), before);

    // Without `platform_floor` the same small sets are written.
    let dir = with_exports(&csv, ALL, &exports.replace("platform_floor = true\n", ""));
    let run = dir.run("run", &[]).published("undated");
    assert_eq!(
        std::fs::read_to_string(run.join("meta_custom_audience/all/target/all_part000.csv"))
            .unwrap()
            .lines()
            .count(),
        91
    );
}
