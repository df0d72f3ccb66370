//! A view of a store that leaves some objects out: how a source reads its folder without the
//! files `bad_files = "skip"` set aside. Listings omit them and reads of them find nothing;
//! everything else passes through.

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// A store without the objects at `hidden`.
#[derive(Debug)]
pub struct HidingStore {
    inner: Arc<dyn ObjectStore>,
    hidden: Arc<BTreeSet<Path>>,
}

impl HidingStore {
    /// `inner` without the objects at `hidden`.
    pub fn new(inner: Arc<dyn ObjectStore>, hidden: BTreeSet<Path>) -> Self {
        HidingStore {
            inner,
            hidden: Arc::new(hidden),
        }
    }

    fn check(&self, location: &Path) -> Result<()> {
        if self.hidden.contains(location) {
            return Err(object_store::Error::NotFound {
                path: location.to_string(),
                source: "left out of the source (bad_files = \"skip\")".into(),
            });
        }
        Ok(())
    }
}

impl std::fmt::Display for HidingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hiding({} objects of {})", self.hidden.len(), self.inner)
    }
}

#[async_trait]
impl ObjectStore for HidingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.check(location)?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.check(location)?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let hidden = self.hidden.clone();
        self.inner
            .list(prefix)
            .filter(move |m| {
                let keep = !matches!(m, Ok(m) if hidden.contains(&m.location));
                futures::future::ready(keep)
            })
            .boxed()
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let hidden = self.hidden.clone();
        self.inner
            .list_with_offset(prefix, offset)
            .filter(move |m| {
                let keep = !matches!(m, Ok(m) if hidden.contains(&m.location));
                futures::future::ready(keep)
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut res = self.inner.list_with_delimiter(prefix).await?;
        res.objects.retain(|m| !self.hidden.contains(&m.location));
        Ok(res)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.check(from)?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.check(from)?;
        self.inner.rename_opts(from, to, options).await
    }
}
