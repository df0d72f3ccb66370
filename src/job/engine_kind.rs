//! Where a job's SQL runs, as the job file, `--engine` or `AUDIENCES_ENGINE` say it.

/// Where the SQL of a run executes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EngineKind {
    /// In-process DataFusion (the default).
    #[default]
    Local,
    /// A Ballista scheduler and one executor started inside this process: the distributed
    /// code path on one machine (tests, trying a job before a cluster exists).
    Standalone,
    /// A Ballista scheduler at `host:port`.
    Ballista {
        /// Scheduler host.
        host: String,
        /// Scheduler port (Ballista's default is 50050).
        port: u16,
    },
}

impl EngineKind {
    /// Parses `local`, `standalone` / `ballista://standalone`, or `ballista://HOST[:PORT]`.
    pub fn parse(text: &str) -> std::result::Result<EngineKind, String> {
        let t = text.trim();
        match t {
            "local" | "" => return Ok(EngineKind::Local),
            "standalone" | "ballista://standalone" | "ballista-standalone" => {
                return Ok(EngineKind::Standalone)
            }
            _ => {}
        }
        let rest = t.strip_prefix("ballista://").ok_or_else(|| {
            format!("`{t}` is not an engine: use `local`, `standalone` or `ballista://HOST:PORT`")
        })?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse::<u16>()
                    .map_err(|_| format!("`{t}`: `{p}` is not a port number"))?,
            ),
            None => (rest.to_string(), 50050),
        };
        if host.is_empty() {
            return Err(format!(
                "`{t}` names no scheduler host (ballista://HOST:PORT)"
            ));
        }
        Ok(EngineKind::Ballista { host, port })
    }

    /// True for the Ballista engines.
    pub fn is_distributed(&self) -> bool {
        !matches!(self, EngineKind::Local)
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineKind::Local => write!(f, "local"),
            EngineKind::Standalone => write!(f, "ballista://standalone"),
            EngineKind::Ballista { host, port } => write!(f, "ballista://{host}:{port}"),
        }
    }
}
