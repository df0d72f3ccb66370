//! A real S3-protocol server on loopback (s3s + s3s-fs serving a temp folder).

use std::net::SocketAddr;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use s3s_fs::FileSystem;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

pub const ACCESS_KEY: &str = "test-access-key";
pub const SECRET_KEY: &str = "test-secret-key";

/// A running server; each bucket is a folder under `root`.
pub struct TestS3 {
    pub endpoint: String,
    _root: tempfile::TempDir,
    stop_tx: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestS3 {
    pub async fn start(buckets: &[&str]) -> Self {
        let root = tempfile::tempdir().unwrap();
        for b in buckets {
            std::fs::create_dir(root.path().join(b)).unwrap();
        }
        Self::serve(root).await
    }

    /// The folder holding the buckets (one subfolder each, objects as files).
    pub fn root(&self) -> &std::path::Path {
        self._root.path()
    }

    /// Stops the server and starts a new one over the same buckets (on a new port).
    pub async fn restart(self) -> Self {
        let mut old = self;
        old.stop().await;
        let root = std::mem::replace(&mut old._root, tempfile::tempdir().unwrap());
        Self::serve(root).await
    }

    async fn serve(root: tempfile::TempDir) -> Self {
        let fs = FileSystem::new(root.path()).unwrap();
        let service = {
            let mut b = S3ServiceBuilder::new(fs);
            b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            b.build()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut stop_rx => break,
                    res = listener.accept() => {
                        let Ok((sock, _)) = res else { continue };
                        let conn = http.serve_connection(TokioIo::new(sock), service.clone()).into_owned();
                        conns.spawn(async move { let _ = conn.await; });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
            drop(listener);
            conns.shutdown().await;
        });
        TestS3 {
            endpoint: format!("http://{addr}"),
            _root: root,
            stop_tx: Some(stop_tx),
            task: Some(task),
        }
    }

    /// Stops the server; later connections are refused.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// Environment for a process that talks to this server through the standard AWS variables.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AUDIENCES_STORAGE_RETRIES", "1".into()),
            ("AUDIENCES_STORAGE_RETRY_TIMEOUT_SECS", "3".into()),
        ]
    }

    /// An object-store client for a bucket.
    pub fn client(&self, bucket: &str) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(bucket)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .build()
            .unwrap()
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}
