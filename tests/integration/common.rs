//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use datafusion::arrow::array::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `audiences` binary, started in the repository root, with quiet logs.
pub fn bin() -> Command {
    let mut c = Command::cargo_bin("audiences").expect("binary built");
    c.current_dir(repo());
    c.env("RUST_LOG", "audiences=warn");
    c.env("AUDIENCES_MEMORY_LIMIT", "2GiB");
    c
}

/// Generates a small demo dataset (in-process) and returns its folder.
pub fn demo_data(dir: &Path, users: usize) -> PathBuf {
    let data = dir.join("data");
    audiences::demo::generate(&audiences::demo::DemoConfig {
        users,
        dir: data.clone(),
        as_of: chrono::NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
        seed: 7,
    })
    .expect("demo data generated");
    data
}

/// Reads every batch of a Parquet file.
pub fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

/// Total rows of batches.
pub fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

/// Writes a file, creating parent folders.
pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// stdout + stderr of a finished command as text.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Column of a batch by name, downcast.
pub fn column<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> &'a T {
    b.column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| {
            panic!(
                "column {name} has type {}",
                b.column_by_name(name).unwrap().data_type()
            )
        })
}

/// The run folder published for `date` below the output folder `out` (follows `current.json`).
pub fn published_at(out: &Path, date: &str) -> PathBuf {
    let ptr = out.join(date).join("current.json");
    let text = std::fs::read_to_string(&ptr)
        .unwrap_or_else(|e| panic!("no publication at {}: {e}", ptr.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    out.join(v["run"].as_str().unwrap())
}

/// The run folder published below `out`, which must hold exactly one published date.
pub fn published(out: &Path) -> PathBuf {
    let dates: Vec<String> = std::fs::read_dir(out)
        .unwrap_or_else(|e| panic!("read {}: {e}", out.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("current.json").exists())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        dates.len(),
        1,
        "expected one published date in {}: {dates:?}",
        out.display()
    );
    published_at(out, &dates[0])
}

/// The published run of `date` below the output folder `out`: the pointer and every file of the
/// run folder it names (`None` when nothing is published), to compare a publication byte for byte.
pub fn publication_of(
    out: &std::path::Path,
    date: &str,
) -> Option<std::collections::BTreeMap<String, Vec<u8>>> {
    let ptr = std::fs::read(out.join(date).join("current.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&ptr).unwrap();
    let run = out.join(v["run"].as_str().unwrap());
    let mut files = snapshot(&run)
        .into_iter()
        .map(|(p, b)| (p.display().to_string(), b))
        .collect::<std::collections::BTreeMap<_, _>>();
    files.insert("current.json".into(), ptr);
    Some(files)
}

/// Every file below `dir` with its bytes.
pub fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

/// A job folder of a test's own: `jobs/j.toml`, the files it names, and `out/` for its runs.
/// Relative paths in the job file are relative to `jobs/`, so `../in/t.csv` is `in/t.csv` here.
pub struct JobDir {
    dir: tempfile::TempDir,
}

/// A finished command of a [`JobDir`].
pub struct Ran {
    /// What the process printed and how it ended.
    pub output: std::process::Output,
    /// The output folder it wrote below.
    pub out: PathBuf,
}

impl JobDir {
    /// A job folder holding `job` as `jobs/j.toml` (its `output` defaults to `../out`).
    pub fn new(job: &str) -> JobDir {
        let dir = tempfile::tempdir().unwrap();
        let text = if job.contains("\noutput =") || job.starts_with("output =") {
            job.to_string()
        } else {
            // `output` is a top-level key: it goes before the first table.
            match job.find("\n[") {
                Some(i) => format!("{}\noutput = \"../out\"{}", &job[..i], &job[i..]),
                None => format!("{job}\noutput = \"../out\"\n"),
            }
        };
        write(&dir.path().join("jobs/j.toml"), &text);
        JobDir { dir }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The job file.
    pub fn job(&self) -> PathBuf {
        self.path().join("jobs/j.toml")
    }

    /// Writes `text` at `rel` below the folder.
    pub fn file(self, rel: &str, text: &str) -> JobDir {
        write(&self.path().join(rel), text);
        self
    }

    /// Runs `audiences <command> jobs/j.toml <args>`.
    pub fn run(&self, command: &str, args: &[&str]) -> Ran {
        let output = bin()
            .arg(command)
            .arg(self.job())
            .args(args)
            .output()
            .unwrap();
        Ran {
            output,
            out: self.path().join("out"),
        }
    }
}

impl Ran {
    /// The exit code.
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    /// stdout + stderr.
    pub fn text(&self) -> String {
        output_text(&self.output)
    }

    /// The run folder published for `date` (`undated` for a job without `as_of`).
    pub fn published(&self, date: &str) -> PathBuf {
        assert_eq!(self.code(), Some(0), "{}", self.text());
        published_at(&self.out, date)
    }
}

/// The demo job's window rollup steps (`orders_90d` .. `reach_90d`), SQL paths made absolute,
/// for test jobs that reuse `sql/demo/user_features.sql`.
pub fn demo_rollup_steps() -> String {
    let demo = std::fs::read_to_string(repo().join("jobs/demo.toml")).unwrap();
    let start = demo.find("[[step]]\nname = \"orders_90d\"").unwrap();
    let end = demo.find("[[step]]\nname = \"user_features\"").unwrap();
    demo[start..end].replace("\"../sql/", &format!("\"{}/sql/", repo().display()))
}
