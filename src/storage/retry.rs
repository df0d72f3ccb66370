//! Retries with exponential backoff around an object store, for the stores that have no retry
//! of their own (local disks, including network mounts, and `memory://`); the cloud stores use
//! object_store's HTTP retry with the same policy ([`super::retry_config`]).
//!
//! Only errors that can be transient are retried: not "not found", "already exists", failed
//! preconditions or refused permissions, which a retry cannot change. A listing is retried as a
//! whole, so a retry never yields an entry twice.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// An object store whose calls are retried on transient errors.
#[derive(Debug)]
pub struct RetryingStore {
    inner: Arc<dyn ObjectStore>,
    retries: usize,
    timeout: Duration,
    init_backoff: Duration,
    max_backoff: Duration,
}

impl std::fmt::Display for RetryingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Retrying({})", self.inner)
    }
}

impl RetryingStore {
    /// Wraps `inner` with the engine's retry policy.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        let cfg = super::retry_config();
        RetryingStore {
            inner,
            retries: cfg.max_retries,
            timeout: cfg.retry_timeout,
            // Local disks and mounts recover (or not) quickly: start shorter than over HTTP.
            init_backoff: cfg.backoff.init_backoff / 5,
            max_backoff: cfg.backoff.max_backoff,
        }
    }

    async fn retry<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let start = Instant::now();
        let mut backoff = self.init_backoff;
        let mut attempt = 0;
        loop {
            match call().await {
                Ok(v) => return Ok(v),
                Err(e)
                    if transient(&e)
                        && attempt < self.retries
                        && start.elapsed() < self.timeout =>
                {
                    attempt += 1;
                    tracing::debug!(operation = what, attempt, error = %e, "storage call failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.max_backoff);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Whether a retry can help: not for errors of the request itself, and not for a disk that is
/// full or read-only (it will not have changed a second later).
pub fn transient(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull
                    | std::io::ErrorKind::QuotaExceeded
                    | std::io::ErrorKind::ReadOnlyFilesystem
            ) {
                return false;
            }
        }
        cause = c.source();
    }
    !matches!(
        e,
        E::NotFound { .. }
            | E::AlreadyExists { .. }
            | E::Precondition { .. }
            | E::NotModified { .. }
            | E::NotImplemented { .. }
            | E::NotSupported { .. }
            | E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::InvalidPath { .. }
            | E::UnknownConfigurationKey { .. }
    )
}

#[async_trait]
impl ObjectStore for RetryingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.retry("put", || {
            self.inner.put_opts(location, payload.clone(), opts.clone())
        })
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.retry("put_multipart", || {
            self.inner.put_multipart_opts(location, opts.clone())
        })
        .await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.retry("get", || self.inner.get_opts(location, options.clone()))
            .await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.retry("get_ranges", || self.inner.get_ranges(location, ranges))
            .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let this = self.clone_handle();
        let prefix = prefix.cloned();
        futures::stream::once(async move {
            this.retry("list", || {
                this.inner.list(prefix.as_ref()).try_collect::<Vec<_>>()
            })
            .await
        })
        .map_ok(|v| futures::stream::iter(v.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let this = self.clone_handle();
        let (prefix, offset) = (prefix.cloned(), offset.clone());
        futures::stream::once(async move {
            this.retry("list", || {
                this.inner
                    .list_with_offset(prefix.as_ref(), &offset)
                    .try_collect::<Vec<_>>()
            })
            .await
        })
        .map_ok(|v| futures::stream::iter(v.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.retry("list", || self.inner.list_with_delimiter(prefix))
            .await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.retry("copy", || self.inner.copy_opts(from, to, options.clone()))
            .await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.retry("rename", || {
            self.inner.rename_opts(from, to, options.clone())
        })
        .await
    }
}

impl RetryingStore {
    fn clone_handle(&self) -> Arc<RetryingStore> {
        Arc::new(RetryingStore {
            inner: self.inner.clone(),
            retries: self.retries,
            timeout: self.timeout,
            init_backoff: self.init_backoff,
            max_backoff: self.max_backoff,
        })
    }
}

/// A function wrapping every store the engine opens, below the retry layer: how tests inject
/// faults into real stores.
/// It receives the URL the store was opened for.
pub type StoreLayer = dyn Fn(&url::Url, Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> + Send + Sync;

type Layers = Vec<(u64, Arc<StoreLayer>)>;

static LAYERS: std::sync::RwLock<Layers> = std::sync::RwLock::new(Vec::new());
static NEXT_LAYER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// An installed layer; dropping it removes the layer.
#[must_use = "the layer is removed when this is dropped"]
pub struct StoreLayerGuard(u64);

impl Drop for StoreLayerGuard {
    fn drop(&mut self) {
        LAYERS
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(id, _)| *id != self.0);
    }
}

/// Installs a layer around every store opened from now on, beneath the retries, until the
/// guard is dropped. Layers compose (each sees what the one installed before it returned), so
/// tests running at once can each wrap their own locations. For fault-injection tests.
pub fn add_store_layer(layer: Arc<StoreLayer>) -> StoreLayerGuard {
    let id = NEXT_LAYER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    LAYERS
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .push((id, layer));
    StoreLayerGuard(id)
}

/// Applies the installed layers, if any.
pub(crate) fn layered(url: &url::Url, store: Arc<dyn ObjectStore>) -> (Arc<dyn ObjectStore>, bool) {
    let layers = LAYERS.read().unwrap_or_else(|e| e.into_inner());
    let injected = !layers.is_empty();
    let store = layers.iter().fold(store, |s, (_, l)| l(url, s));
    (store, injected)
}
