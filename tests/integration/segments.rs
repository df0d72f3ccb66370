//! Segments and their files: platform formats byte for byte on known inputs (including the
//! platforms' published examples), holdouts, priority lists, suppression, size floors.

use md5::{Digest, Md5};
use sha2::Sha256;

use crate::common::*;

fn md5(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

fn sha(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Five users with every kind of identifier, tidy and untidy.
const IDENTITIES: &str = "user_id,imei,oaid,idfa,mac,phone,email,first_name,last_name,country,zip,gaid
u1,A000002C9060F7,,,,+86 138-0013-8000, Test.Email@Gmail.com ,Mary-Ann,O'Neil,us,94043 ,
u2,,,FF1999CD-7177-4937-A474-74937A102630,02:00:00:00:00:00,13900139000,someone+ads@example.com,Li,Wang,CN,100000,
u3,,1fa8b2c4-0000-4d1c-9a2b-aabbccddeeff,,,,,,,,,38400000-8CF0-11BD-B23E-10B96E40000D
u4,123,,00000000-0000-0000-0000-000000000000,,12345,not-an-email,,,,,
u5,a000002c9060f7,,,,,,,,,,
";

fn formats_job(dir: &std::path::Path, exports: &str) -> std::path::PathBuf {
    write(&dir.join("in/ids.csv"), IDENTITIES);
    let job = dir.join("jobs/f.toml");
    write(
        &job,
        &format!(
            r#"name = "f"
[sources]
ids = {{ url = "../in/ids.csv", format = "csv", schema = "user_id string, imei string, oaid string, idfa string, mac string, phone string, email string, first_name string, last_name string, country string, zip string, gaid string" }}
[[segment]]
name = "all"
query = "SELECT user_id FROM ids"
[publish]
identities = "ids"
{exports}
"#
        ),
    );
    job
}

fn run_ok(job: &std::path::Path) -> (String, std::path::PathBuf) {
    let res = bin().arg("run").arg(job).output().unwrap();
    let text = output_text(&res);
    assert!(res.status.success(), "{text}");
    let out = job.parent().unwrap().parent().unwrap().join("out");
    let name = std::fs::read_dir(&out)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    (text, published(&out.join(name)))
}

fn manifest(run: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn tencent_ads_files_match_the_published_examples() {
    let tmp = tempfile::tempdir().unwrap();
    let job = formats_job(
        tmp.path(),
        r#"
[[export]]
segments = ["all"]
format = "tencent_ads"
to = "tencent_a"
ids = [{ type = "HASH_IMEI", column = "imei" }, { type = "HASH_IDFA", column = "idfa" }, { type = "HASH_MAC", column = "mac" }, { type = "HASH_OAID", column = "oaid" }]
compress = "none"
min_size = 1

[[export]]
segments = ["all"]
format = "tencent_ads"
to = "tencent_b"
ids = [{ type = "HASH_MAC", column = "mac" }, { type = "SHA256_MOBILE_PHONE", column = "phone" }]
min_size = 1
"#,
    );
    let (_, run) = run_ok(&job);
    let read = |p: &str| std::fs::read_to_string(run.join(p)).unwrap();
    // Tencent's own examples: IMEI a000002c9060f7 (here written upper-case, and again
    // lower-case by u5: one line), IDFA FF1999CD-..., MAC 02:00:00:00:00:00.
    assert_eq!(
        read("tencent_a/all/target/all_hash_imei_part000.txt"),
        "f2d5a650733ca8c27d502b1c08da14e5\n"
    );
    assert_eq!(
        read("tencent_a/all/target/all_hash_idfa_part000.txt"),
        "2c010ed96aef2fc34983e1e7e9176b7e\n"
    );
    assert_eq!(
        read("tencent_a/all/target/all_hash_oaid_part000.txt"),
        format!("{}\n", md5("1fa8b2c4-0000-4d1c-9a2b-aabbccddeeff"))
    );
    assert!(
        !run.join("tencent_a/all/target/all_hash_mac_part000.txt")
            .exists(),
        "u2 has an IDFA, preferred over its MAC"
    );
    let m = manifest(&run);
    let seg = &m["exports"][0]["segments"][0];
    assert_eq!(seg["dropped_invalid"], 1, "u4: every id malformed: {seg}");
    assert_eq!(seg["duplicates"], 1, "u5 repeats u1's IMEI: {seg}");
    assert_eq!(seg["rows"]["target"], 3);
    // The second export: MAC first, then the phone as SHA-256 of the 11 digits; zipped.
    let zip = run.join("tencent_b/all/target/all_hash_mac_part000.zip");
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&zip).unwrap()).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut archive.by_index(0).unwrap(), &mut text).unwrap();
    assert_eq!(text, "e3f5536a141811db40efd6400f1d0a4e\n");
    let zip = run.join("tencent_b/all/target/all_sha256_mobile_phone_part000.zip");
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&zip).unwrap()).unwrap();
    let entry = archive.by_index(0).unwrap();
    assert_eq!(entry.name().unwrap(), "all_sha256_mobile_phone_part000.txt");
    drop(entry);
    let mut text = String::new();
    std::io::Read::read_to_string(&mut archive.by_index(0).unwrap(), &mut text).unwrap();
    assert_eq!(
        text,
        format!("{}\n", sha("13800138000")),
        "+86 and separators removed"
    );
    // Every file is in the manifest with its true size and SHA-256.
    for set in m["exports"][1]["segments"][0]["file_sets"]
        .as_array()
        .unwrap()
    {
        for f in set["files"].as_array().unwrap() {
            let bytes = std::fs::read(run.join(f["path"].as_str().unwrap())).unwrap();
            assert_eq!(f["bytes"], bytes.len() as u64);
            assert_eq!(f["sha256"], hex::encode(Sha256::digest(&bytes)));
        }
    }
}

#[test]
fn meta_and_google_csv_are_normalised_and_hashed() {
    let tmp = tempfile::tempdir().unwrap();
    let job = formats_job(
        tmp.path(),
        r#"
[[export]]
segments = ["all"]
format = "meta_custom_audience"
fields = { email = "email", phone = "phone", fn = "first_name", ln = "last_name", country = "country", zip = "zip", madid = "gaid" }
country_code = "86"
min_size = 1

[[export]]
segments = ["all"]
format = "google_customer_match"
fields = { Email = "email", Phone = "phone", "First Name" = "first_name", "Last Name" = "last_name", Country = "country", Zip = "zip" }
country_code = "86"
min_size = 1
"#,
    );
    let (_, run) = run_ok(&job);
    let meta = std::fs::read_to_string(run.join("meta_custom_audience/all/target/all_part000.csv"))
        .unwrap();
    let expected = format!(
        "email,phone,madid,fn,ln,zip,country\n{},{},,{},{},{},{}\n{},{},,{},{},{},{}\n,,38400000-8cf0-11bd-b23e-10b96e40000d,,,,\n",
        sha("test.email@gmail.com"), sha("8613800138000"), sha("maryann"), sha("oneil"), sha("94043"), sha("us"),
        sha("someone+ads@example.com"), sha("8613900139000"), sha("li"), sha("wang"), sha("100000"), sha("cn"),
    );
    assert_eq!(meta, expected);
    let google =
        std::fs::read_to_string(run.join("google_customer_match/all/target/all_part000.csv"))
            .unwrap();
    let expected = format!(
        "Email,Phone,First Name,Last Name,Country,Zip\n{},{},{},{},US,94043\n{},{},{},{},CN,100000\n",
        sha("testemail@gmail.com"), sha("+8613800138000"), sha("maryann"), sha("oneil"),
        sha("someone+ads@example.com"), sha("+8613900139000"), sha("li"), sha("wang"),
    );
    assert_eq!(
        google, expected,
        "gmail dots removed, E.164 phones, country and zip unhashed"
    );
    let m = manifest(&run);
    assert_eq!(
        m["exports"][1]["segments"][0]["dropped_invalid"], 3,
        "u3 has only a device id; u4 and u5 nothing valid"
    );
}

#[test]
fn tencent_v3_id_types_and_a_renamed_type() {
    let tmp = tempfile::tempdir().unwrap();
    let job = formats_job(
        tmp.path(),
        r#"
[[export]]
segments = ["all"]
format = "tencent_ads"
ids = [{ type = "MD5_SHA256_IMEI", column = "imei" }, { type = "MD5_SHA256_IDFA", column = "idfa" }, { type = "SHA256_HASH_OAID", column = "oaid" }, { type = "WX_UNIONID", column = "email" }, { type = "CAID", column = "gaid" }]
compress = "none"
min_size = 1
"#,
    );
    let (text, run) = run_ok(&job);
    assert!(
        text.contains("`SHA256_HASH_OAID` is now called `MD5_SHA256_OAID`"),
        "{text}"
    );
    let read =
        |p: &str| std::fs::read_to_string(run.join("tencent_ads/all/target").join(p)).unwrap();
    // SHA-256 of the lower-case hex MD5, over Tencent's own examples.
    assert_eq!(
        read("all_md5_sha256_imei_part000.txt"),
        format!("{}\n", sha(&md5("a000002c9060f7")))
    );
    assert_eq!(
        read("all_md5_sha256_idfa_part000.txt"),
        format!("{}\n", sha("2c010ed96aef2fc34983e1e7e9176b7e"))
    );
    assert_eq!(
        read("all_md5_sha256_oaid_part000.txt"),
        format!("{}\n", sha(&md5("1fa8b2c4-0000-4d1c-9a2b-aabbccddeeff")))
    );
    let types: Vec<String> = manifest(&run)["exports"][0]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        types,
        [
            "MD5_SHA256_IMEI",
            "MD5_SHA256_IDFA",
            "MD5_SHA256_OAID",
            "WX_UNIONID",
            "CAID"
        ]
    );
}

#[test]
fn verify_names_a_changed_byte_line_and_header() {
    let tmp = tempfile::tempdir().unwrap();
    let job = formats_job(
        tmp.path(),
        r#"
[[export]]
segments = ["all"]
format = "tencent_ads"
ids = [{ type = "HASH_IMEI", column = "imei" }]
compress = "none"
min_size = 1

[[export]]
segments = ["all"]
format = "meta_custom_audience"
fields = { email = "email", phone = "phone" }
country_code = "86"
min_size = 1

[[export]]
segments = ["all"]
format = "parquet"
min_size = 1
"#,
    );
    let (_, run) = run_ok(&job);
    let verify = |at: &std::path::Path| {
        let res = bin().arg("verify").arg(at).output().unwrap();
        (res.status.code(), output_text(&res))
    };
    // A good run, by its folder or by its date's pointer.
    for at in [
        run.clone(),
        run.parent().unwrap().parent().unwrap().to_path_buf(),
    ] {
        let (code, text) = verify(&at);
        assert_eq!(code, Some(0), "{text}");
        assert!(text.contains("ok: every file matches"), "{text}");
    }
    let tencent = run.join("tencent_ads/all/target/all_hash_imei_part000.txt");
    let meta = run.join("meta_custom_audience/all/target/all_part000.csv");
    let good_tencent = std::fs::read_to_string(&tencent).unwrap();
    let good_meta = std::fs::read_to_string(&meta).unwrap();
    let cases: [(&std::path::Path, String, &[&str]); 4] = [
        (
            &tencent,
            good_tencent.replacen('f', "z", 1),
            &[
                "all_hash_imei_part000.txt: SHA-256 differs",
                "line 1: `HASH_IMEI` is not a md5 hash",
            ],
        ),
        (
            &meta,
            good_meta.replacen(&sha("test.email@gmail.com"), "test.email@gmail.com", 1),
            &[
                "all_part000.csv: SHA-256 differs",
                "line 2: `email` is not a sha256 hash",
            ],
        ),
        (
            &meta,
            good_meta.replacen("email,phone", "Email,phone", 1),
            &["header `Email` is not one of the export's fields"],
        ),
        (&meta, String::new(), &["all_part000.csv: empty file"]),
    ];
    for (file, changed, expect) in cases {
        std::fs::write(file, &changed).unwrap();
        let (code, text) = verify(&run);
        assert_eq!(code, Some(65), "{text}");
        for e in expect {
            assert!(text.contains(e), "expected {e:?} in {text}");
        }
        std::fs::write(&tencent, &good_tencent).unwrap();
        std::fs::write(&meta, &good_meta).unwrap();
    }
    std::fs::remove_file(&tencent).unwrap();
    let (code, text) = verify(&run);
    assert_eq!(code, Some(65), "{text}");
    assert!(
        text.contains("listed in the manifest but missing"),
        "{text}"
    );
}

/// A job over 100 users, each with an IMEI and a phone, all in one segment `all`, with `rest`
/// (the `[publish]` table's other keys, then the exports).
fn hundred_users(rest: &str) -> JobDir {
    let mut ids = String::from("user_id,imei,phone\n");
    for i in 0..100 {
        ids.push_str(&format!("u{i:03},8600000000{i:05},1380013{i:04}\n"));
    }
    JobDir::new(&format!(
        "name = \"cap\"\n[sources]\nids = {{ url = \"../in/ids.csv\", format = \"csv\", schema = \"user_id string, imei string, phone string\" }}\n[[segment]]\nname = \"all\"\nquery = \"SELECT user_id FROM ids\"\n[publish]\nidentities = \"ids\"\n{rest}"
    ))
    .file("in/ids.csv", &ids)
}

#[test]
fn verify_names_a_line_in_target_and_control_and_a_part_over_its_cap() {
    let dir = hundred_users("holdout = \"30%\"\n[[export]]\nsegments = [\"all\"]\nformat = \"tencent_ads\"\nids = [{ type = \"HASH_IMEI\", column = \"imei\" }]\ncompress = \"none\"\nmax_bytes_per_file = 2000\nmin_size = 1\n");
    let run = dir.run("run", &[]).published("undated");
    let verify = || {
        let res = bin().arg("verify").arg(&run).output().unwrap();
        (res.status.code(), output_text(&res))
    };
    assert_eq!(verify().0, Some(0), "{}", verify().1);
    let target = run.join("tencent_ads/all/target/all_hash_imei_part000.txt");
    let control = run.join("tencent_ads/all/control/all_hash_imei_part000.txt");
    let (t, c) = (
        std::fs::read_to_string(&target).unwrap(),
        std::fs::read_to_string(&control).unwrap(),
    );
    std::fs::write(&control, format!("{c}{}\n", t.lines().next().unwrap())).unwrap();
    let (code, text) = verify();
    assert_eq!(code, Some(65), "{text}");
    assert!(
        text.contains("tencent_ads/all: 1 lines in both the target and the control files"),
        "{text}"
    );
    std::fs::write(&control, &c).unwrap();
    std::fs::write(&target, t.repeat(3)).unwrap();
    let (code, text) = verify();
    assert_eq!(code, Some(65), "{text}");
    assert!(text.contains("bytes, over the cap of 2000"), "{text}");
}

#[test]
fn a_byte_cap_splits_file_sets_into_parts_within_it() {
    let dir = hundred_users("[[export]]\nsegments = [\"all\"]\nformat = \"tencent_ads\"\nids = [{ type = \"HASH_IMEI\", column = \"imei\" }]\nmax_bytes_per_file = 1500\nmin_size = 1\n[[export]]\nsegments = [\"all\"]\nformat = \"meta_custom_audience\"\nfields = { phone = \"phone\" }\ncountry_code = \"86\"\nmax_bytes_per_file = 700\nmin_size = 1\n");
    let run = dir.run("run", &[]).published("undated");
    let m = manifest(&run);
    for (ex, cap, per_part) in [(0, 1500, 14), (1, 700, 10)] {
        let export = &m["exports"][ex];
        assert_eq!(export["max_bytes_per_file"], cap);
        let set = &export["segments"][0]["file_sets"][0];
        let files = set["files"].as_array().unwrap();
        // Tencent: 33-byte lines in zips (1,024 bytes kept for the archive's headers); Meta:
        // 65-byte lines under a 6-byte header.
        let rows: Vec<u64> = files.iter().map(|f| f["rows"].as_u64().unwrap()).collect();
        assert!(rows.iter().all(|r| *r <= per_part), "{rows:?}");
        // Split exactly at the cap: every part but the last is as full as the cap allows.
        assert!(
            rows[..rows.len() - 1].iter().all(|r| *r == per_part),
            "{rows:?}"
        );
        assert_eq!(rows.iter().sum::<u64>(), 100, "{rows:?}");
        assert!(files.len() >= 100 / per_part as usize, "{rows:?}");
        for f in files {
            let bytes = std::fs::metadata(run.join(f["path"].as_str().unwrap()))
                .unwrap()
                .len();
            assert!(bytes <= cap, "{f}");
        }
    }
    let res = bin().arg("verify").arg(&run).output().unwrap();
    assert_eq!(res.status.code(), Some(0), "{}", output_text(&res));
    // Above the platform's own cap: refused.
    let text = std::fs::read_to_string(dir.job()).unwrap().replace(
        "max_bytes_per_file = 1500",
        "max_bytes_per_file = 200000000",
    );
    write(&dir.job(), &text);
    let ran = dir.run("check", &[]);
    assert_eq!(ran.code(), Some(78), "{}", ran.text());
    assert!(
        ran.text()
            .contains("over the platform's cap of 104857600 bytes"),
        "{}",
        ran.text()
    );
}

#[test]
fn google_lists_hold_one_key_type_and_device_ids_name_their_app() {
    let tmp = tempfile::tempdir().unwrap();
    let google = |fields: &str, app: &str| {
        format!("[[export]]\nsegments = [\"all\"]\nformat = \"google_customer_match\"\nfields = {{ {fields} }}\n{app}\nmin_size = 1\n")
    };
    for (fields, app, expect) in [
        ("mobile_device_id = \"gaid\"", "", "say `app_id"),
        (
            "mobile_device_id = \"gaid\"",
            "app_id = \"shop\"",
            "app_id `shop` is neither",
        ),
        (
            "Email = \"email\"",
            "app_id = \"123456789\"",
            "app_id belongs to a `Mobile Device ID` list",
        ),
    ] {
        let job = formats_job(tmp.path(), &google(fields, app));
        let res = bin().arg("check").arg(&job).output().unwrap();
        let text = output_text(&res);
        assert_eq!(res.status.code(), Some(78), "{fields} {app}: {text}");
        assert!(text.contains(expect), "{fields} {app}: {text}");
        assert!(text.contains("f.toml:"), "located: {text}");
    }
    // A list of device ids only, for one app: its own file, the app in the manifest.
    let job = formats_job(
        tmp.path(),
        &google("mobile_device_id = \"gaid\"", "app_id = \"123456789\""),
    );
    let (_, run) = run_ok(&job);
    let file =
        std::fs::read_to_string(run.join("google_customer_match/all/target/all_part000.csv"))
            .unwrap();
    assert_eq!(
        file,
        "Mobile Device ID\n38400000-8cf0-11bd-b23e-10b96e40000d\n"
    );
    assert_eq!(manifest(&run)["exports"][0]["app_id"], "123456789");
}

#[test]
fn tiktok_csv_and_its_opt_in_minimum() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ids = String::from("user_id,email,phone,gaid\n");
    for i in 0..1200 {
        ids.push_str(&format!(
            "p{i:05},First.Last+{i}@Example.com,+1 415 555 {:04},\n",
            i
        ));
    }
    write(&tmp.path().join("in/ids.csv"), &ids);
    let job = tmp.path().join("jobs/t.toml");
    let body = |limit: &str| {
        format!(
            r#"name = "t"
[sources]
ids = {{ url = "../in/ids.csv", format = "csv", schema = "user_id string, email string, phone string, gaid string" }}
[[segment]]
name = "all"
query = "SELECT user_id FROM ids {limit}"
[publish]
identities = "ids"
[[export]]
segments = ["all"]
format = "tiktok_custom_audience"
fields = {{ email = "email", phone = "phone" }}
min_size = 1
{{floor}}
"#
        )
    };
    let floor = "platform_floor = true";
    let body = |limit: &str| body(limit).replace("{floor}", floor);
    write(&job, &body(""));
    let (_, run) = run_ok(&job);
    let text =
        std::fs::read_to_string(run.join("tiktok_custom_audience/all/target/all_part000.csv"))
            .unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("Phone_SHA256,Email_SHA256"));
    assert_eq!(
        lines.next().unwrap(),
        format!("{},{}", sha("+14155550000"), sha("firstlast@example.com"))
    );
    assert_eq!(text.lines().count(), 1201);
    // Below TikTok's 1,000-row minimum the segment is held back, with a warning, when the
    // export opts in; without `platform_floor` the 900 rows are written.
    std::fs::remove_dir_all(tmp.path().join("out")).unwrap();
    write(&job, &body("WHERE user_id < 'p00900'").replace(floor, ""));
    let (_, run) = run_ok(&job);
    let text =
        std::fs::read_to_string(run.join("tiktok_custom_audience/all/target/all_part000.csv"))
            .unwrap();
    assert_eq!(text.lines().count(), 901);
    std::fs::remove_dir_all(tmp.path().join("out")).unwrap();
    write(&job, &body("WHERE user_id < 'p00900'"));
    let (text, run) = run_ok(&job);
    assert!(
        text.contains("900 valid rows, below the platform's minimum of 1000"),
        "{text}"
    );
    assert!(!run
        .join("tiktok_custom_audience/all/target/all_part000.csv")
        .exists());
    assert_eq!(
        manifest(&run)["exports"][0]["segments"][0]["exported"],
        false
    );
}

#[test]
fn holdout_is_a_salted_hash_and_stable() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ids = String::from("user_id\n");
    for i in 0..20000 {
        ids.push_str(&format!("id{i}\n"));
    }
    write(&tmp.path().join("in/ids.csv"), &ids);
    let job = tmp.path().join("jobs/h.toml");
    write(
        &job,
        r#"name = "h"
[sources]
ids = { url = "../in/ids.csv", format = "csv", schema = "user_id string" }
[[segment]]
name = "a"
query = "SELECT user_id FROM ids"
holdout = "10%"
[[segment]]
name = "b"
query = "SELECT user_id FROM ids WHERE user_id LIKE 'id1%'"
holdout = "10%"
[[segment]]
name = "c"
query = "SELECT user_id FROM ids"
holdout = "10%"
salt = "a"
"#,
    );
    let (_, run) = run_ok(&job);
    let mut control: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    let mut n = 0;
    for b in read_parquet(&run.join("segments.parquet")) {
        let seg = b
            .column(0)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .unwrap();
        let uid = b
            .column(1)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .unwrap();
        let grp = b
            .column(2)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .unwrap();
        for i in 0..b.num_rows() {
            n += 1;
            // The documented rule, computed independently.
            let salt = if seg.value(i) == "c" {
                "a"
            } else {
                seg.value(i)
            };
            let h = &md5(&format!("{salt}:{}", uid.value(i)))[..8];
            let expect = u64::from_str_radix(h, 16).unwrap() < 429496730;
            assert_eq!(
                grp.value(i) == "control",
                expect,
                "{} in {}",
                uid.value(i),
                seg.value(i)
            );
            if grp.value(i) == "control" {
                control
                    .entry(seg.value(i).to_string())
                    .or_default()
                    .insert(uid.value(i).to_string());
            }
        }
    }
    assert_eq!(n, 20000 + 11111 + 20000);
    let share = control["a"].len() as f64 / 20000.0;
    assert!((0.09..0.11).contains(&share), "control share {share}");
    assert_eq!(
        control["a"], control["c"],
        "the same salt gives the same split"
    );
    let a_within_b: std::collections::BTreeSet<String> = control["a"]
        .iter()
        .filter(|u| u.starts_with("id1"))
        .cloned()
        .collect();
    assert_ne!(a_within_b, control["b"], "another salt, another split");
    let m = manifest(&run);
    assert_eq!(m["segments"][0]["control"], control["a"].len());
}

#[test]
fn priority_lists_and_suppression() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ids = String::from("user_id,n\n");
    for i in 1..=150 {
        ids.push_str(&format!("u{i:03},{i}\n"));
    }
    write(&tmp.path().join("in/ids.csv"), &ids);
    write(
        &tmp.path().join("in/optout.csv"),
        "user_id\nu001\nu002\nu003\nu004\nu005\nu006\nu007\nu008\nu009\nu010\nu999\n",
    );
    let job = tmp.path().join("jobs/p.toml");
    write(
        &job,
        r#"name = "p"
[sources]
ids = { url = "../in/ids.csv", format = "csv", schema = "user_id string, n int" }
optout = { url = "../in/optout.csv", format = "csv", schema = "user_id string" }
[[segment]]
name = "a"
query = "SELECT user_id FROM ids WHERE n <= 100"
[[segment]]
name = "b"
query = "SELECT user_id FROM ids WHERE n >= 50"
[[segment]]
name = "c"
query = "SELECT user_id FROM ids"
[publish]
suppress = ["optout"]
priority = [["a", "b"]]
[[export]]
segments = ["*"]
format = "csv"
min_size = 1
"#,
    );
    let (_, run) = run_ok(&job);
    let m = manifest(&run);
    let seg = |name: &str| {
        m["segments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(seg("a")["target"], 90, "{}", seg("a"));
    assert_eq!(seg("a")["suppressed"], 10);
    assert_eq!(seg("b")["removed_by_priority"], 51, "50..=100 stay in a");
    assert_eq!(seg("b")["target"], 50);
    assert_eq!(seg("c")["target"], 140, "c is in no priority list");
    assert_eq!(m["suppression_ids"], 11);
    let b = std::fs::read_to_string(run.join("csv/b/target/b_part000.csv")).unwrap();
    let expected: String = std::iter::once("user_id\n".to_string())
        .chain((101..=150).map(|i| format!("u{i:03}\n")))
        .collect();
    assert_eq!(b, expected);
    let a = std::fs::read_to_string(run.join("csv/a/target/a_part000.csv")).unwrap();
    assert!(
        !a.contains("u001") && a.contains("u011"),
        "opt-outs removed"
    );
}

#[test]
fn small_segments_are_held_back_and_required_ones_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let job = formats_job(
        tmp.path(),
        r#"
[[export]]
segments = ["all"]
format = "tencent_ads"
ids = [{ type = "HASH_IMEI", column = "imei" }]
"#,
    );
    let (text, run) = run_ok(&job);
    assert!(text.contains("below min_size 1000"), "{text}");
    assert!(!run.join("tencent_ads").exists(), "nothing written for it");
    let m = manifest(&run);
    assert_eq!(m["exports"][0]["segments"][0]["exported"], false);
    assert!(m["warnings"][0].as_str().unwrap().contains("min_size"));

    let tmp = tempfile::tempdir().unwrap();
    let job = formats_job(
        tmp.path(),
        r#"
[[export]]
segments = ["all"]
format = "tencent_ads"
ids = [{ type = "HASH_IMEI", column = "imei" }]
required = true
"#,
    );
    let res = bin().arg("run").arg(&job).output().unwrap();
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(65), "{text}");
    assert!(
        text.contains("segment `all`") && text.contains("required = true"),
        "{text}"
    );
    assert!(
        !tmp.path().join("out/f/undated/current.json").exists(),
        "nothing published"
    );
}

#[test]
fn segment_and_export_mistakes_are_job_errors() {
    let cases = [
        (
            "[[export]]\nsegments = [\"all\"]\nformat = \"tencent_ads\"\nids = [{ type = \"HASH_IMIE\", column = \"imei\" }]\n",
            "unknown Tencent id type `HASH_IMIE`",
        ),
        (
            "[[export]]\nsegments = [\"all\"]\nformat = \"tencent_ads\"\nids = [{ type = \"IMEI\", column = \"imei\" }]\n",
            "hash = \"none\"",
        ),
        (
            "[[export]]\nsegments = [\"al\"]\nformat = \"csv\"\n",
            "unknown segment `al`",
        ),
        (
            "[[export]]\nsegments = [\"all\"]\nformat = \"meta_custom_audience\"\nfields = { mail = \"email\" }\n",
            "field `mail`",
        ),
        (
            "[[segment]]\nname = \"../escape\"\nquery = \"SELECT 1\"\n",
            "may only hold letters, digits",
        ),
        (
            "[[segment]]\nname = \"x\"\nquery = \"SELECT user_id FROM ids\"\nholdout = \"150%\"\n",
            "below 100%",
        ),
        (
            "[[export]]\nsegments = [\"all\"]\nformat = \"csv\"\nmax_rows = 5\n",
            "unknown field `max_rows`",
        ),
    ];
    for (extra, expect) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let job = formats_job(tmp.path(), extra);
        let res = bin().arg("check").arg(&job).output().unwrap();
        let text = output_text(&res);
        assert_eq!(res.status.code(), Some(78), "{extra}: {text}");
        assert!(
            text.contains(expect),
            "{extra}: expected {expect:?} in {text}"
        );
        assert!(
            text.contains("f.toml:"),
            "names the job file and line: {text}"
        );
    }
}

#[test]
fn a_per_value_segment_with_an_unsafe_value_is_bad_data() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        &tmp.path().join("in/ids.csv"),
        "user_id,grp\nu1,ok\nu2,../x\n",
    );
    let job = tmp.path().join("jobs/v.toml");
    write(
        &job,
        r#"name = "v"
[sources]
ids = { url = "../in/ids.csv", format = "csv", schema = "user_id string, grp string" }
[[segment]]
name = "g"
from = "ids"
by = "grp"
"#,
    );
    let res = bin().arg("run").arg(&job).output().unwrap();
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(65), "{text}");
    assert!(
        text.contains("g_../x") && text.contains("segment `g`"),
        "{text}"
    );
}

#[test]
fn files_split_at_max_rows_and_gzip_is_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ids = String::from("user_id,imei\n");
    for i in 0..150 {
        ids.push_str(&format!("u{i:03},86{i:013}\n"));
    }
    write(&tmp.path().join("in/ids.csv"), &ids);
    let job = tmp.path().join("jobs/s.toml");
    write(
        &job,
        r#"name = "s"
[sources]
ids = { url = "../in/ids.csv", format = "csv", schema = "user_id string, imei string" }
[[segment]]
name = "all"
query = "SELECT user_id FROM ids"
[publish]
identities = "ids"
[[export]]
segments = ["all"]
format = "tencent_ads"
ids = [{ type = "HASH_IMEI", column = "imei" }]
max_rows_per_file = 40
compress = "gzip"
min_size = 1
"#,
    );
    let mut runs = Vec::new();
    for _ in 0..2 {
        let (_, run) = run_ok(&job);
        let dir = run.join("tencent_ads/all/target");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        assert_eq!(
            names,
            (0..4)
                .map(|p| format!("all_hash_imei_part{p:03}.txt.gz"))
                .collect::<Vec<_>>()
        );
        let mut all = Vec::new();
        let mut sizes = Vec::new();
        let mut bytes = Vec::new();
        for n in &names {
            let b = std::fs::read(dir.join(n)).unwrap();
            let mut text = String::new();
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&b[..]), &mut text)
                .unwrap();
            sizes.push(text.lines().count());
            all.extend(text.lines().map(str::to_string));
            bytes.push(b);
        }
        assert_eq!(sizes, vec![40, 40, 40, 30]);
        assert_eq!(
            all,
            (0..150)
                .map(|i| md5(&format!("86{i:013}")))
                .collect::<Vec<_>>(),
            "lines in user order"
        );
        runs.push(bytes);
    }
    assert_eq!(runs[0], runs[1], "the same inputs give the same bytes");
}

#[test]
fn check_plans_segment_queries_and_export_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let job = formats_job(
        tmp.path(),
        r#"
[[segment]]
name = "bad"
query = "SELECT user_idd FROM ids"

[[export]]
segments = ["all"]
format = "tencent_ads"
ids = [{ type = "HASH_IMEI", column = "imie" }]
"#,
    );
    let res = bin().arg("check").arg(&job).output().unwrap();
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(78), "{text}");
    assert!(
        text.contains("segment bad") && text.contains("user_idd"),
        "{text}"
    );
    assert!(
        text.contains("no column `imie`") && text.contains("imei"),
        "{text}"
    );
}
