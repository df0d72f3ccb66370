//! The `[publish]` table.

use toml::Spanned;

use super::{pattern_matches, Ctx};
use crate::hint::did_you_mean;
use crate::job::spec::PublishSpec;
use crate::job::Publish;

/// Checks the publication settings against the job's tables and segments.
pub(super) fn check(
    ctx: &mut Ctx,
    raw: Option<&Spanned<PublishSpec>>,
    table_names: &[String],
    segment_names: &[String],
) -> Publish {
    let mut publish = Publish::default();
    if let Some(p) = raw {
        let offset = p.span().start;
        let spec = p.get_ref();
        if let Some(id) = &spec.id {
            publish.id = id.clone();
        }
        for t in spec.identities.iter().chain(spec.suppress.iter()) {
            if !table_names.iter().any(|n| n == t) {
                let hint = did_you_mean(t, table_names);
                ctx.problem(
                    offset,
                    None,
                    format!(
                        "[publish] names unknown table `{t}` (known: {})",
                        table_names.join(", ")
                    ),
                    hint,
                );
            }
        }
        publish.identities = spec.identities.clone();
        publish.suppress = spec.suppress.clone();
        let mut seen: Vec<String> = Vec::new();
        for group in &spec.priority {
            for pat in group {
                if !pattern_matches(pat, segment_names) {
                    ctx.problem(
                        offset,
                        None,
                        format!(
                            "priority list names unknown segment `{pat}` (segments: {})",
                            segment_names.join(", ")
                        ),
                        did_you_mean(pat, segment_names),
                    );
                }
                if seen.contains(pat) {
                    ctx.problem(
                        offset,
                        None,
                        format!("segment `{pat}` appears in more than one priority list"),
                        Some("a segment can take part in one priority list only".into()),
                    );
                }
                seen.push(pat.clone());
            }
        }
        publish.priority = spec.priority.clone();
        if let Some(k) = spec.keep_runs {
            if k == 0 {
                ctx.problem(
                    offset,
                    None,
                    "keep_runs must be at least 1 (the run just published)".into(),
                    None,
                );
            }
            publish.keep_runs = k.max(1);
        }
        if let Some(m) = spec.lock_timeout_minutes {
            publish.lock_timeout = std::time::Duration::from_secs(m * 60);
        }
    }

    publish
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::job::Job;

    fn parse(publish: &str) -> Result<Job, String> {
        let text = format!("name = \"x\"\n[sources]\nusers = {{ url = \"u/\", format = \"parquet\" }}\n[[segment]]\nname = \"vip\"\nquery = \"SELECT 1\"\n[[segment]]\nname = \"cluster\"\nfrom = \"users\"\nby = \"c\"\n[publish]\n{publish}");
        Job::parse(&text, "x.toml", Path::new("/tmp")).map_err(|e| e.to_string())
    }

    #[test]
    fn publication_settings() {
        let job = parse("identities = \"users\"\npriority = [[\"vip\", \"cluster_*\"]]\nkeep_runs = 3\nlock_timeout_minutes = 5\n").unwrap();
        assert_eq!(job.publish.identities.as_deref(), Some("users"));
        assert_eq!(job.publish.keep_runs, 3);
        assert_eq!(job.publish.lock_timeout.as_secs(), 300);
        assert_eq!(job.publish.id, "user_id");
    }

    #[test]
    fn publication_problems_reported_together() {
        let msg = parse(
            "identities = \"usres\"\npriority = [[\"vip\", \"vpi\"], [\"vip\"]]\nkeep_runs = 0\n",
        )
        .unwrap_err();
        assert!(
            msg.contains("[publish] names unknown table `usres`"),
            "{msg}"
        );
        assert!(msg.contains("did you mean `users`?"), "{msg}");
        assert!(
            msg.contains("priority list names unknown segment `vpi`"),
            "{msg}"
        );
        assert!(
            msg.contains("segment `vip` appears in more than one priority list"),
            "{msg}"
        );
        assert!(msg.contains("keep_runs must be at least 1"), "{msg}");
    }
}
