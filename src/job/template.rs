//! `{name}` templates in URLs: `{as_of}`, `{data}`, `{job}`, any param. `{{` and `}}` are
//! literal braces. Only URLs are templated; SQL gets typed `$name` parameters instead.

use std::collections::BTreeMap;

/// Replaces every `{name}` in `text` with `vars[name]`; an unknown name is an error naming it.
pub fn render(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let c = rest.as_bytes()[i];
        let after = &rest[i + 1..];
        if c == b'{' && after.starts_with('{') {
            out.push('{');
            rest = &after[1..];
        } else if c == b'}' && after.starts_with('}') {
            out.push('}');
            rest = &after[1..];
        } else if c == b'{' {
            let end = after
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in `{text}`"))?;
            let name = after[..end].trim();
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    let known: Vec<_> = vars.keys().map(|k| format!("{{{k}}}")).collect();
                    return Err(format!(
                        "`{{{name}}}` in `{text}` is not a param of this job (known: {})",
                        known.join(", ")
                    ));
                }
            }
            rest = &after[end + 1..];
        } else {
            return Err(format!(
                "stray `}}` in `{text}` (write `}}}}` for a literal brace)"
            ));
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_params_and_escapes() {
        let vars = BTreeMap::from([
            ("as_of".to_string(), "2026-11-24".to_string()),
            ("data".to_string(), "/d".to_string()),
        ]);
        assert_eq!(
            render("{data}/orders/dt={as_of}/", &vars).unwrap(),
            "/d/orders/dt=2026-11-24/"
        );
        assert_eq!(render("a{{b}}", &vars).unwrap(), "a{b}");
        assert!(render("{nope}/x", &vars).unwrap_err().contains("`{nope}`"));
        assert!(render("{data", &vars).is_err());
    }
}
