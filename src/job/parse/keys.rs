//! Key applicability: every key written on a step or an export checked against the kinds the
//! key table (`job::keys`) says it applies to.

use super::Ctx;
use crate::job::keys::{export_kind, kinds_of, EXPORT_KEYS, STEP_KEYS, STEP_KINDS};
use crate::job::spec::JobSpec;

fn plural(kinds: &[&str], noun: &str) -> String {
    let list = kinds.join(", ");
    format!("{list} {noun}")
}

/// Where `key` is written inside `span` of the job text (the item's start when not found).
fn key_offset(text: &str, span: std::ops::Range<usize>, key: &str) -> usize {
    let end = span.end.min(text.len()).max(span.start);
    let body = &text[span.start..end];
    for (i, _) in body.match_indices(key) {
        let before_ok = body[..i]
            .chars()
            .next_back()
            .is_none_or(|c| c.is_whitespace() || c == '{' || c == ',');
        let after_ok = body[i + key.len()..]
            .trim_start_matches([' ', '\t'])
            .starts_with('=');
        if before_ok && after_ok {
            return span.start + i;
        }
    }
    span.start
}

/// The keys written in each `[[step]]` and each `[[export]]`, in file order.
fn written_keys(text: &str, array: &str) -> Vec<Vec<String>> {
    let Ok(doc) = toml::from_str::<toml::Table>(text) else {
        return Vec::new();
    };
    let Some(toml::Value::Array(items)) = doc.get(array) else {
        return Vec::new();
    };
    items
        .iter()
        .map(|item| match item {
            toml::Value::Table(t) => t.keys().cloned().collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// Reports every key written on a step or export of a kind it does not apply to.
pub(super) fn check(ctx: &mut Ctx, raw: &JobSpec) {
    let step_keys = written_keys(ctx.text, "step");
    for (st, keys) in raw.steps.iter().zip(&step_keys) {
        let spec = st.get_ref();
        let kind = spec.kind.as_deref().unwrap_or("sql");
        if !STEP_KINDS.contains(&kind) {
            continue; // reported as an unknown kind
        }
        for key in keys {
            let Some(kinds) = kinds_of(STEP_KEYS, key) else {
                continue;
            };
            if !kinds.contains(&kind) {
                let at = key_offset(ctx.text, st.span(), key);
                ctx.problem(
                    at,
                    Some(&spec.name),
                    format!(
                        "`{key}` does not apply to a {kind} step; it applies to {}",
                        plural(kinds, "steps")
                    ),
                    Some(format!(
                        "remove `{key}`, or set it on a step of kind {}",
                        kinds.join(" or ")
                    )),
                );
            }
        }
    }
    let export_keys = written_keys(ctx.text, "export");
    for (n, (ex, keys)) in raw.exports.iter().zip(&export_keys).enumerate() {
        let Some(kind) = export_kind(ex.get_ref()) else {
            continue; // reported by the exports pass
        };
        for key in keys {
            let Some(kinds) = kinds_of(EXPORT_KEYS, key) else {
                continue;
            };
            if !kinds.contains(&kind) {
                let at = key_offset(ctx.text, ex.span(), key);
                let what = if kind == "table" {
                    "the export of a table".to_string()
                } else {
                    format!("an export of {kind}")
                };
                ctx.problem(
                    at,
                    Some(&format!("export {}", n + 1)),
                    format!(
                        "`{key}` does not apply to {what}; it applies to {}",
                        plural(kinds, "exports")
                    ),
                    Some(format!("remove `{key}`")),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_found_on_its_own_line_or_inline() {
        let text = "[[step]]\nname = \"a\"\nk = 3\nkk = 4\n";
        assert_eq!(
            key_offset(text, 0..text.len(), "k"),
            text.find("k = 3").unwrap()
        );
        assert_eq!(
            key_offset(text, 0..text.len(), "kk"),
            text.find("kk =").unwrap()
        );
        let inline = "x = { a = 1, b = 2 }";
        assert_eq!(
            key_offset(inline, 0..inline.len(), "b"),
            inline.find("b =").unwrap()
        );
    }
}
