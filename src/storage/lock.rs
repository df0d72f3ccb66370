//! The overlap lock: one run per job and date. The lock is an object created with a conditional
//! create (`PutMode::Create`: an exclusive create on local disk, `If-None-Match: *` on S3), so
//! two runs can never both hold it. A lock whose holder is gone (same host, process not running)
//! or that is older than the timeout is stale and is taken over with a warning.

use std::time::Duration;

use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::Location;
use crate::error::{Error, Result};

/// What the lock object says about its holder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Start time (UTC, RFC 3339).
    pub started_at: String,
    /// Run id.
    pub run_id: String,
}

/// A held lock; call [`Lock::release`] when the run ends.
#[derive(Debug)]
pub struct Lock {
    loc: Location,
    run_id: String,
}

fn host() -> String {
    sysinfo::System::host_name().unwrap_or_else(|| "unknown-host".into())
}

fn alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

impl Lock {
    /// Takes the lock at `loc` for run `run_id`, or fails with exit 75 naming the holder.
    pub async fn acquire(loc: &Location, run_id: &str, timeout: Duration) -> Result<Lock> {
        let me = Holder {
            host: host(),
            pid: std::process::id(),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            run_id: run_id.to_string(),
        };
        let body = serde_json::to_vec_pretty(&me).map_err(Error::unexpected)?;
        for attempt in 0..2 {
            let opts = PutOptions::from(PutMode::Create);
            match loc
                .store
                .put_opts(&loc.path, PutPayload::from(body.clone()), opts)
                .await
            {
                Ok(_) => {
                    return Ok(Lock {
                        loc: loc.clone(),
                        run_id: run_id.to_string(),
                    })
                }
                Err(object_store::Error::AlreadyExists { .. }) if attempt == 0 => {
                    let (holder, age) = read_holder(loc).await?;
                    // Our own create reached the store but its response was lost, and the
                    // retry found the object: the lock is ours.
                    if holder.as_ref().is_some_and(|h| h.run_id == run_id) {
                        tracing::debug!(lock = %loc.display(), "the lock found is this run's own");
                        return Ok(Lock {
                            loc: loc.clone(),
                            run_id: run_id.to_string(),
                        });
                    }
                    let stale = match &holder {
                        Some(h) if h.host == me.host && !alive(h.pid) => Some(format!(
                            "its holder (pid {} on {}) is no longer running",
                            h.pid, h.host
                        )),
                        _ if age > timeout => Some(format!(
                            "it is {} minutes old, past the {} minute timeout",
                            age.as_secs() / 60,
                            timeout.as_secs() / 60
                        )),
                        _ => None,
                    };
                    match stale {
                        Some(why) => {
                            tracing::warn!(lock = %loc.display(), "taking over a stale lock: {why}");
                            match loc.store.delete(&loc.path).await {
                                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                                Err(e) => {
                                    return Err(super::classify_write("lock", &loc.display(), e))
                                }
                            }
                        }
                        None => {
                            let who = match holder {
                                Some(h) => format!(
                                    "host {}, pid {}, started {} (run {})",
                                    h.host, h.pid, h.started_at, h.run_id
                                ),
                                None => "an unreadable holder".to_string(),
                            };
                            return Err(Error::Temporary {
                                context: Some(format!("lock {}", loc.display())),
                                message: format!(
                                    "another run of this job and date is in progress: {who}"
                                ),
                            });
                        }
                    }
                }
                Err(object_store::Error::AlreadyExists { .. }) => {
                    if let Ok((Some(h), _)) = read_holder(loc).await {
                        if h.run_id == run_id {
                            return Ok(Lock {
                                loc: loc.clone(),
                                run_id: run_id.to_string(),
                            });
                        }
                    }
                    return Err(Error::Temporary {
                        context: Some(format!("lock {}", loc.display())),
                        message: "another run took the lock at the same moment".into(),
                    });
                }
                Err(e) => return Err(super::classify_write("lock", &loc.display(), e)),
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Releases the lock if this run still holds it.
    pub async fn release(self) {
        if let Ok((Some(h), _)) = read_holder(&self.loc).await {
            if h.run_id == self.run_id {
                let _ = self.loc.store.delete(&self.loc.path).await;
            }
        }
    }
}

async fn read_holder(loc: &Location) -> Result<(Option<Holder>, Duration)> {
    match loc.store.get(&loc.path).await {
        Ok(got) => {
            let modified = got.meta.last_modified;
            let bytes = got
                .bytes()
                .await
                .map_err(|e| super::classify("lock", &loc.display(), e))?;
            let age = (chrono::Utc::now() - modified).to_std().unwrap_or_default();
            Ok((serde_json::from_slice(&bytes).ok(), age))
        }
        Err(object_store::Error::NotFound { .. }) => Ok((None, Duration::ZERO)),
        Err(e) => Err(super::classify("lock", &loc.display(), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location() -> Location {
        super::super::locate("memory:///lock-test-own-run/lock.json").unwrap()
    }

    #[tokio::test]
    async fn a_lock_holding_this_runs_id_is_this_runs_own() {
        // What a lost response leaves: our create reached the store, the retry saw the object.
        let loc = location();
        let first = Lock::acquire(&loc, "run-a", Duration::from_secs(3600))
            .await
            .unwrap();
        let again = Lock::acquire(&loc, "run-a", Duration::from_secs(3600))
            .await
            .expect("the run's own lock");
        // Another run is refused while the lock is held, naming the holder.
        let err = Lock::acquire(&loc, "run-b", Duration::from_secs(3600))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("run run-a"), "{err}");
        again.release().await;
        drop(first);
        Lock::acquire(&loc, "run-b", Duration::from_secs(3600))
            .await
            .expect("released");
    }
}
