//! Job files fuzzed: the demo job and its SQL, mutated, given to the parser and to `check`. They
//! never panic or hang, every problem in a job or SQL file names file:line:col, and a job that
//! parses parses to the same job after a round trip through a TOML printer.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use audiences::error::Error;
use proptest::prelude::*;

use crate::common::*;

/// Small demo data, generated once for every case.
fn data() -> &'static Path {
    static DATA: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, p) = DATA.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let p = demo_data(tmp.path(), 300);
        (tmp, p)
    });
    p
}

/// The demo job with its SQL paths absolute, so it can be written anywhere.
fn demo_job() -> String {
    std::fs::read_to_string(repo().join("jobs/demo.toml"))
        .unwrap()
        .replace("\"../sql/", &format!("\"{}/sql/", repo().display()))
}

/// One edit of a text.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, String),
    Duplicate(usize, usize),
    Replace(usize, char),
}

fn edit() -> impl Strategy<Value = Edit> {
    let piece = prop_oneof![
        Just("\"".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just(" = ".to_string()),
        Just("\n".to_string()),
        Just("[[step]]\nname = \"s\"\n".to_string()),
        Just("[[segment]]\n".to_string()),
        Just("$as_of".to_string()),
        Just("$nope".to_string()),
        Just("SELECT ".to_string()),
        Just("(".to_string()),
        Just(",".to_string()),
        Just("'".to_string()),
        Just("é中".to_string()),
        Just("\u{0}".to_string()),
        Just("-- ".to_string()),
        "[a-z_]{1,10}",
        "[0-9.e-]{1,6}",
    ];
    prop_oneof![
        (any::<usize>(), 1..40usize).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), piece).prop_map(|(a, s)| Edit::Insert(a, s)),
        (any::<usize>(), 1..120usize).prop_map(|(a, n)| Edit::Duplicate(a, n)),
        (any::<usize>(), any::<char>()).prop_map(|(a, c)| Edit::Replace(a, c)),
    ]
}

fn apply(text: String, e: &Edit) -> String {
    let floor = |mut i: usize| {
        i = i.min(text.len());
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let at = |a: usize| floor(a % (text.len() + 1));
    match e {
        Edit::Delete(a, n) => {
            let s = at(*a);
            let mut t = (s + n).min(text.len());
            while !text.is_char_boundary(t) {
                t += 1;
            }
            format!("{}{}", &text[..s], &text[t..])
        }
        Edit::Insert(a, piece) => {
            let s = at(*a);
            format!("{}{piece}{}", &text[..s], &text[s..])
        }
        Edit::Duplicate(a, n) => {
            let s = at(*a);
            let t = floor(s + n);
            format!("{}{}", &text[..t], &text[s..])
        }
        Edit::Replace(a, c) => {
            let s = at(*a);
            match text[s..].chars().next() {
                Some(old) => format!("{}{c}{}", &text[..s], &text[s + old.len_utf8()..]),
                None => text.clone(),
            }
        }
    }
}

/// Parses and checks a job file's text; fails on a panic, a hang, or a problem in `file` (a
/// job file or SQL file) that does not say where it is.
fn parse_and_check(
    text: &str,
    dir: &Path,
    file: &str,
) -> Result<Option<audiences::job::Job>, TestCaseError> {
    let job_file = dir.join("jobs/demo.toml");
    std::fs::create_dir_all(job_file.parent().unwrap()).unwrap();
    std::fs::write(&job_file, text).unwrap();
    let loaded = std::panic::catch_unwind(|| audiences::job::Job::load(&job_file));
    let Ok(loaded) = loaded else {
        return Err(TestCaseError::fail(format!("loading panicked on:\n{text}")));
    };
    let job = match loaded {
        Ok(job) => job,
        Err(Error::Job(problems)) => {
            for p in &problems {
                prop_assert!(
                    p.location
                        .as_ref()
                        .is_some_and(|l| l.line >= 1 && l.column >= 1),
                    "no file:line:col in `{p}`"
                );
            }
            return Ok(None);
        }
        Err(e) => {
            return Err(TestCaseError::fail(format!(
                "loading gave an error of another kind than a job problem: {e}"
            )))
        }
    };
    let opts = audiences::pipeline::RunOptions {
        date: audiences::job::params::parse_date("2026-11-24").ok(),
        params: vec![format!("data={}", data().display())],
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(120),
                audiences::pipeline::check(&job, &opts),
            )
            .await
        })
    }));
    let Ok(checked) = checked else {
        return Err(TestCaseError::fail(format!("check panicked on:\n{text}")));
    };
    let Ok(checked) = checked else {
        return Err(TestCaseError::fail(format!(
            "check did not end in 120 s on:\n{text}"
        )));
    };
    match checked {
        Ok(report) => {
            for p in report.problems.iter().filter(|p| {
                // Source problems are about the data (a missing folder after a mutated URL).
                !p.step.as_deref().is_some_and(|s| s.starts_with("source "))
            }) {
                prop_assert!(p.location.is_some(), "no file:line:col in `{p}` ({file})");
            }
        }
        Err(Error::Job(problems)) => {
            for p in &problems {
                prop_assert!(p.location.is_some(), "no file:line:col in `{p}`");
            }
        }
        // A param default that does not parse as its type is a usage error naming the param.
        Err(Error::Usage(m)) => prop_assert!(m.contains("param"), "{m}"),
        Err(e) => {
            return Err(TestCaseError::fail(format!(
                "check gave an unexpected error: {e}"
            )))
        }
    }
    Ok(Some(job))
}

/// Names of what a job defines, to compare a job with its round trip.
fn shape(job: &audiences::job::Job) -> String {
    format!(
        "{:?} | {:?} | {:?} | {}",
        job.sources
            .iter()
            .map(|s| (&s.name, &s.url))
            .collect::<Vec<_>>(),
        job.steps.iter().map(|s| &s.name).collect::<Vec<_>>(),
        job.segments.iter().map(|s| &s.name).collect::<Vec<_>>(),
        job.exports.len(),
    )
}

proptest! {
    // A fixed seed: the same cases on every run, so CI is repeatable; change it to explore more.
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, rng_seed: proptest::test_runner::RngSeed::Fixed(20261202), ..ProptestConfig::default() })]

    #[test]
    fn mutated_job_files_get_located_problems_and_survive_a_round_trip(edits in prop::collection::vec(edit(), 1..4)) {
        let tmp = tempfile::tempdir().unwrap();
        let text = edits.iter().fold(demo_job(), apply);
        if let Some(job) = parse_and_check(&text, tmp.path(), "demo.toml")? {
            // What parsed, printed again by a TOML printer, parses to the same job.
            let value: toml::Value = toml::from_str(&text).unwrap();
            let printed = toml::to_string(&value).unwrap();
            let again = tmp.path().join("again/jobs/demo.toml");
            std::fs::create_dir_all(again.parent().unwrap()).unwrap();
            std::fs::write(&again, &printed).unwrap();
            let reparsed = audiences::job::Job::load(&again);
            prop_assert!(reparsed.is_ok(), "the printed job does not parse: {:?}\n{printed}", reparsed.err().map(|e| e.to_string()));
            prop_assert_eq!(shape(&job), shape(&reparsed.unwrap()));
        }
    }

    #[test]
    fn mutated_sql_gets_located_problems(edits in prop::collection::vec(edit(), 1..4), which in 0..4usize) {
        let file = ["user_features.sql", "customer_summary.sql", "orders_daily.sql", "customer_purchases.sql"][which];
        let tmp = tempfile::tempdir().unwrap();
        let sql = std::fs::read_to_string(repo().join("sql/demo").join(file)).unwrap();
        let mutated = edits.iter().fold(sql, apply);
        let path = tmp.path().join("sql").join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &mutated).unwrap();
        let text = demo_job().replace(
            &format!("\"{}/sql/demo/{file}\"", repo().display()),
            &format!("\"{}\"", path.display()),
        );
        parse_and_check(&text, tmp.path(), file)?;
    }
}
