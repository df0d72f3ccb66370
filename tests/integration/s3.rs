//! A real S3-protocol server on loopback (s3s + s3s-fs serving a temp folder).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
        Self::serve(root, None).await
    }

    /// A server whose calls fail as `faults` decides (see [`Faults`]).
    pub async fn start_with_faults(buckets: &[&str], faults: Arc<Faults>) -> Self {
        let root = tempfile::tempdir().unwrap();
        for b in buckets {
            std::fs::create_dir(root.path().join(b)).unwrap();
        }
        Self::serve(root, Some(faults)).await
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
        Self::serve(root, None).await
    }

    async fn serve(root: tempfile::TempDir, faults: Option<Arc<Faults>>) -> Self {
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
                        match &faults {
                            None => {
                                let conn = http.serve_connection(TokioIo::new(sock), service.clone()).into_owned();
                                conns.spawn(async move { let _ = conn.await; });
                            }
                            Some(f) => {
                                let svc = Faulty { inner: service.clone(), faults: f.clone() };
                                let conn = http.serve_connection(TokioIo::new(sock), svc).into_owned();
                                conns.spawn(async move { let _ = conn.await; });
                            }
                        }
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

/// What a faulty server does to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 500 before the server acts.
    Error500,
    /// HTTP 503 `SlowDown` (throttling) before the server acts.
    Throttle503,
    /// The connection is reset before the server acts.
    ResetBefore,
    /// The server acts (a PUT is stored), then answers 500: the response is lost.
    LostAfter500,
    /// The server acts, then the connection is reset before any response.
    ResetAfter,
    /// The response's body is cut off halfway and the connection reset.
    ResetMidBody,
    /// The answer comes late (250 ms), as from a slow store.
    Slow,
}

impl Fault {
    /// Every kind, in the order the counts are kept.
    pub const ALL: [Fault; 7] = [
        Fault::Error500,
        Fault::Throttle503,
        Fault::ResetBefore,
        Fault::LostAfter500,
        Fault::ResetAfter,
        Fault::ResetMidBody,
        Fault::Slow,
    ];
}

/// A share of calls that fail, drawn from a seeded generator; counts what it injected.
pub struct Faults {
    per_mille: AtomicU64,
    rng: Mutex<rand_chacha::ChaCha8Rng>,
    /// Calls served, then faults injected per kind (in [`Fault::ALL`] order).
    pub calls: AtomicU64,
    pub injected: [AtomicU64; 7],
}

impl Faults {
    /// Fails `rate` (0..1) of the calls, from `seed`.
    pub fn new(rate: f64, seed: u64) -> Arc<Self> {
        use rand::SeedableRng;
        Arc::new(Faults {
            per_mille: AtomicU64::new((rate * 1000.0).round() as u64),
            rng: Mutex::new(rand_chacha::ChaCha8Rng::seed_from_u64(seed)),
            calls: AtomicU64::new(0),
            injected: Default::default(),
        })
    }

    /// Changes the share of calls that fail.
    pub fn set_rate(&self, rate: f64) {
        self.per_mille
            .store((rate * 1000.0).round() as u64, Ordering::SeqCst);
    }

    fn draw(&self) -> Option<Fault> {
        use rand::Rng;
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut rng = self.rng.lock().unwrap();
        if rng.random_range(0..1000) >= self.per_mille.load(Ordering::SeqCst) {
            return None;
        }
        let i = rng.random_range(0..Fault::ALL.len());
        self.injected[i].fetch_add(1, Ordering::SeqCst);
        Some(Fault::ALL[i])
    }

    /// Faults injected so far.
    pub fn total(&self) -> u64 {
        self.injected.iter().map(|c| c.load(Ordering::SeqCst)).sum()
    }
}

/// The S3 service behind a fault layer.
#[derive(Clone)]
struct Faulty {
    inner: s3s::service::S3Service,
    faults: Arc<Faults>,
}

fn status(code: u16, body: &str) -> s3s::HttpResponse {
    let mut r = s3s::HttpResponse::new(s3s::Body::from(body.to_string()));
    *r.status_mut() = code.try_into().unwrap();
    r
}

fn reset() -> s3s::HttpError {
    s3s::HttpError::new(Box::new(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "fault layer: connection reset",
    )))
}

/// A body that yields its first half, then fails: the connection is cut mid-body.
struct CutBody {
    first: Option<bytes::Bytes>,
    full: usize,
}

impl futures::Stream for CutBody {
    type Item = Result<bytes::Bytes, s3s::StdError>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(Some(match self.first.take() {
            Some(b) => Ok(b),
            None => Err(Box::new(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "fault layer: cut mid-body",
            ))),
        }))
    }
}

impl s3s::stream::ByteStream for CutBody {
    fn remaining_length(&self) -> s3s::stream::RemainingLength {
        s3s::stream::RemainingLength::new_exact(self.full)
    }
}

const SLOW_DOWN: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
const INTERNAL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>";

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for Faulty {
    type Response = s3s::HttpResponse;
    type Error = s3s::HttpError;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn call(&self, req: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        let inner = self.inner.clone();
        let fault = self.faults.draw();
        Box::pin(async move {
            let act = |req| hyper::service::Service::call(&inner, req);
            match fault {
                None => act(req).await,
                Some(Fault::Error500) => Ok(status(500, INTERNAL)),
                Some(Fault::Throttle503) => Ok(status(503, SLOW_DOWN)),
                Some(Fault::ResetBefore) => Err(reset()),
                Some(Fault::LostAfter500) => {
                    let _ = act(req).await;
                    Ok(status(500, INTERNAL))
                }
                Some(Fault::ResetAfter) => {
                    let _ = act(req).await;
                    Err(reset())
                }
                Some(Fault::ResetMidBody) => {
                    let mut resp = act(req).await?;
                    let Ok(bytes) = resp.body_mut().store_all_limited(1 << 30).await else {
                        return Err(reset());
                    };
                    if bytes.len() < 2 {
                        return Err(reset());
                    }
                    let full = bytes.len();
                    let body = CutBody {
                        first: Some(bytes.slice(..full / 2)),
                        full,
                    };
                    *resp.body_mut() =
                        s3s::Body::from(Box::pin(body) as s3s::stream::DynByteStream);
                    Ok(resp)
                }
                Some(Fault::Slow) => {
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    act(req).await
                }
            }
        })
    }
}
