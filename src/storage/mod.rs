//! Object storage: turning job URLs into object stores (local, `s3://`, `gs://`, `az://`,
//! `memory://`), registering them with the SQL engine, and writing output objects.
//!
//! Credentials and endpoints come only from the standard environment variables of each cloud
//! (`AWS_*`, `GOOGLE_*`, `AZURE_*`), never from the job file, so a job can be committed safely.

pub mod hidden;
pub mod history;
pub mod lock;
pub mod publish;
pub mod retry;
pub mod write;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};
use url::Url;

use crate::error::{BoxError, Error, Result, StorageFailure};

/// A location in some object store: the store, the key (path) inside it, and the URL it came from.
#[derive(Debug, Clone)]
pub struct Location {
    /// The full URL (`file:///abs/path`, `s3://bucket/key`, ...).
    pub url: Url,
    /// `scheme://host/`: the key under which the store is registered with the SQL engine.
    pub store_url: Url,
    /// Path of the object or prefix inside the store.
    pub path: ObjectPath,
    /// The store itself.
    pub store: Arc<dyn ObjectStore>,
}

impl Location {
    /// A location below this one.
    pub fn child(&self, rel: &str) -> Result<Location> {
        let mut text = self.url.to_string();
        if !text.ends_with('/') {
            text.push('/');
        }
        text.push_str(rel.trim_start_matches('/'));
        let url = Url::parse(&text).map_err(|e| Error::internal(format!("bad URL {text}: {e}")))?;
        Ok(Location {
            path: path_of(&url)?,
            store_url: self.store_url.clone(),
            store: self.store.clone(),
            url,
        })
    }

    /// The URL as shown to users: a plain path for local files.
    pub fn display(&self) -> String {
        if self.url.scheme() == "file" {
            self.url.path().to_string()
        } else {
            self.url.to_string()
        }
    }
}

/// The objects under `folder`, none when it cannot be listed (for best-effort cleaning up).
pub async fn objects_in(folder: &Location) -> Vec<object_store::ObjectMeta> {
    use futures::TryStreamExt;
    folder
        .store
        .list(Some(&folder.path))
        .try_collect()
        .await
        .unwrap_or_default()
}

/// Deletes every object under `loc` (a folder); on local disk also the emptied folders.
/// Returns how many objects were removed.
pub async fn delete_prefix(loc: &Location) -> Result<usize> {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let err = |e: object_store::Error| classify_write("cleanup", &loc.display(), e);
    let objects: Vec<_> = match loc.store.list(Some(&loc.path)).try_collect().await {
        Ok(v) => v,
        Err(object_store::Error::NotFound { .. }) => return Ok(0),
        Err(e) => return Err(err(e)),
    };
    let n = objects.len();
    for o in objects {
        match loc.store.delete(&o.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(err(e)),
        }
    }
    if loc.url.scheme() == "file" {
        // Object stores have no folders; on local disk remove the empty ones left behind.
        let _ = std::fs::remove_dir_all(loc.url.path());
    }
    Ok(n)
}

/// Parses a URL or absolute local path (as produced by `Job::render_url`) into a URL.
pub fn parse_url(text: &str) -> Result<Url> {
    if text.contains("://") {
        Url::parse(text)
            .map_err(|e| Error::job_msg(None, format!("`{text}` is not a valid URL: {e}"), None))
    } else {
        let p = std::path::absolute(text)
            .map_err(|e| Error::internal(format!("cannot resolve {text}: {e}")))?;
        let mut s = Url::from_file_path(&p)
            .map_err(|_| Error::internal(format!("cannot turn {} into a URL", p.display())))?
            .to_string();
        if text.ends_with('/') && !s.ends_with('/') {
            s.push('/');
        }
        Url::parse(&s).map_err(|e| Error::internal(format!("bad URL {s}: {e}")))
    }
}

fn path_of(url: &Url) -> Result<ObjectPath> {
    ObjectPath::from_url_path(url.path()).map_err(|e| {
        Error::job_msg(
            None,
            format!("`{url}` holds an invalid object path: {e}"),
            None,
        )
    })
}

/// Retry policy for cloud stores: a few retries with exponential backoff. Tunable with
/// `AUDIENCES_STORAGE_RETRIES` and `AUDIENCES_STORAGE_RETRY_TIMEOUT_SECS` (for example so that
/// tests against a stopped server fail fast).
pub fn retry_config() -> RetryConfig {
    let max_retries = std::env::var("AUDIENCES_STORAGE_RETRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let timeout = std::env::var("AUDIENCES_STORAGE_RETRY_TIMEOUT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    RetryConfig {
        max_retries,
        retry_timeout: Duration::from_secs(timeout),
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
    }
}

fn memory_store() -> Arc<dyn ObjectStore> {
    // One in-memory store per process, so tests and `sql` sessions can share `memory://` data.
    static MEM: OnceLock<Arc<dyn ObjectStore>> = OnceLock::new();
    MEM.get_or_init(|| Arc::new(InMemory::new())).clone()
}

/// Opens the store behind a URL (or absolute local path).
pub fn locate(text: &str) -> Result<Location> {
    let url = parse_url(text)?;
    let host = url.host_str().unwrap_or_default().to_string();
    let cloud_err = |kind: &str, e: object_store::Error| {
        Error::job_msg(
            None,
            format!("cannot set up {kind} storage for {url}: {e}"),
            Some(format!(
                "credentials and endpoints come from the standard {kind} environment variables"
            )),
        )
    };
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "file" => Arc::new(LocalFileSystem::new()),
        "memory" => memory_store(),
        "s3" | "s3a" => Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(&host)
                .with_retry(retry_config())
                .build()
                .map_err(|e| cloud_err("AWS", e))?,
        ),
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(&host)
                .with_retry(retry_config())
                .build()
                .map_err(|e| cloud_err("Google Cloud", e))?,
        ),
        "az" | "abfs" | "abfss" => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_container_name(&host)
                .with_retry(retry_config())
                .build()
                .map_err(|e| cloud_err("Azure", e))?,
        ),
        other => {
            return Err(Error::job_msg(
                None,
                format!("unsupported URL scheme `{other}` in {url}"),
                Some("use a local path, file://, s3://, gs://, az:// or memory://".into()),
            ))
        }
    };
    // Local and in-memory stores get the engine's retries; cloud stores retry in their HTTP
    // client. An injected test layer sits beneath the retries wherever it is installed.
    let (store, injected) = retry::layered(&url, store);
    let store: Arc<dyn ObjectStore> = if injected || matches!(url.scheme(), "file" | "memory") {
        Arc::new(retry::RetryingStore::new(store))
    } else {
        store
    };
    let store_url = Url::parse(&format!("{}://{}/", url.scheme(), host))
        .map_err(|e| Error::internal(format!("bad store URL for {url}: {e}")))?;
    Ok(Location {
        path: path_of(&url)?,
        url,
        store_url,
        store,
    })
}

/// Classifies a failed read or listing: nothing there is a missing source (exit 66), permission
/// denied or unauthenticated 77, what a retry can fix (unreachable, timed out, throttled, server
/// errors) 75; an input that can never be read as asked (an invalid path) counts as missing.
pub fn classify(context: &str, url: &str, e: object_store::Error) -> Error {
    match failure_of(&e, false) {
        StorageFailure::Missing => Error::SourceMissing {
            source_name: context.to_string(),
            url: url.to_string(),
            detail: "nothing there".into(),
            cause: Some(Box::new(e)),
        },
        failure => Error::Storage {
            context: context.to_string(),
            url: url.to_string(),
            failure,
            source: Box::new(e),
        },
    }
}

/// Classifies a failed write: permission denied 77, an output that cannot be created (a file
/// where a folder should be, a read-only or full disk, an invalid path) 73, what a retry can fix
/// 75. The cause is kept for the message's "caused by" lines.
pub fn classify_write(context: &str, url: &str, e: impl Into<BoxError>) -> Error {
    let source: BoxError = e.into();
    Error::Storage {
        context: context.to_string(),
        url: url.to_string(),
        failure: failure_of(&*source, true),
        source,
    }
}

/// Why a storage operation failed, from the first object-store or I/O error of the cause chain.
pub fn failure_of(e: &(dyn std::error::Error + 'static), writing: bool) -> StorageFailure {
    use std::io::ErrorKind as K;
    let absent = if writing {
        StorageFailure::CannotCreate
    } else {
        StorageFailure::Missing
    };
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(os) = c.downcast_ref::<object_store::Error>() {
            match os {
                object_store::Error::NotFound { .. } => return absent,
                object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. } => {
                    return StorageFailure::PermissionDenied
                }
                // A generic error says more in its causes (an I/O error, an HTTP failure).
                object_store::Error::Generic { .. } => {}
                other if !retry::transient(other) => return absent,
                _ => {}
            }
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            match io.kind() {
                K::PermissionDenied => return StorageFailure::PermissionDenied,
                K::NotFound => return absent,
                K::ReadOnlyFilesystem
                | K::StorageFull
                | K::NotADirectory
                | K::IsADirectory
                | K::InvalidFilename
                | K::FileTooLarge
                | K::AlreadyExists => return StorageFailure::CannotCreate,
                _ => {}
            }
            // An I/O error may wrap the store's own error (buffered writers do).
            if let Some(inner) = io.get_ref() {
                let inner: &(dyn std::error::Error + 'static) = inner;
                if inner.downcast_ref::<std::io::Error>().is_none() {
                    let f = failure_of(inner, writing);
                    if f != StorageFailure::Temporary {
                        return f;
                    }
                }
            }
        }
        // Some stores report a refusal only as a generic error whose HTTP status is in the text.
        let text = c.to_string();
        if text.contains("status code: 403") || text.contains("status code: 401") {
            return StorageFailure::PermissionDenied;
        }
        cause = c.source();
    }
    StorageFailure::Temporary
}

/// Reads a whole object.
pub async fn read_bytes(loc: &Location) -> Result<Vec<u8>> {
    use object_store::ObjectStoreExt;
    let got = loc
        .store
        .get(&loc.path)
        .await
        .map_err(|e| classify("read", &loc.display(), e))?;
    let bytes = got
        .bytes()
        .await
        .map_err(|e| classify("read", &loc.display(), e))?;
    Ok(bytes.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExitCode;
    use std::io::{Error as IoError, ErrorKind};

    fn generic(kind: ErrorKind) -> object_store::Error {
        object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(IoError::new(kind, "os error")),
        }
    }

    #[test]
    fn each_storage_failure_gets_its_code() {
        let code = |e: Error| e.exit_code();
        // Reads.
        let missing = object_store::Error::NotFound {
            path: "x".into(),
            source: "gone".into(),
        };
        assert_eq!(
            code(classify("orders", "s3://b/x", missing)),
            ExitCode::NoInput
        );
        let denied = object_store::Error::PermissionDenied {
            path: "x".into(),
            source: "403".into(),
        };
        assert_eq!(
            code(classify("orders", "s3://b/x", denied)),
            ExitCode::NoPerm
        );
        let refused = object_store::Error::Generic {
            store: "S3",
            source: "Server returned non-2xx status code: 403 Forbidden".into(),
        };
        assert_eq!(
            code(classify("orders", "s3://b/x", refused)),
            ExitCode::NoPerm
        );
        let down = generic(ErrorKind::ConnectionRefused);
        assert_eq!(
            code(classify("orders", "s3://b/x", down)),
            ExitCode::TempFail
        );
        // Writes.
        for (kind, want) in [
            (ErrorKind::PermissionDenied, ExitCode::NoPerm),
            (ErrorKind::NotADirectory, ExitCode::CantCreate),
            (ErrorKind::ReadOnlyFilesystem, ExitCode::CantCreate),
            (ErrorKind::StorageFull, ExitCode::CantCreate),
            (ErrorKind::TimedOut, ExitCode::TempFail),
            (ErrorKind::ConnectionReset, ExitCode::TempFail),
        ] {
            let e = classify_write("write", "/out/x", generic(kind));
            assert_eq!(e.exit_code(), want, "{kind:?}");
        }
        // An I/O error wrapping the store's own error (a buffered writer's).
        let wrapped = IoError::other(object_store::Error::PermissionDenied {
            path: "x".into(),
            source: "no".into(),
        });
        assert_eq!(
            code(classify_write("write", "/out/x", wrapped)),
            ExitCode::NoPerm
        );
    }

    #[test]
    fn the_cause_is_kept_and_printed() {
        let e = classify_write("write", "/out/x", generic(ErrorKind::NotADirectory));
        let text = crate::error::with_causes(&e);
        assert!(
            text.starts_with("cannot create output (write) at /out/x"),
            "{text}"
        );
        assert!(
            text.contains("caused by: Generic LocalFileSystem error"),
            "{text}"
        );
        assert!(text.contains("os error"), "{text}");
    }
}
