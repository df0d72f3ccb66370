//! The `[params]` section.

use std::collections::BTreeMap;

use toml::Spanned;

use super::{valid_table_name, Ctx};
use crate::job::spec::ParamSpec;
use crate::job::{ParamDecl, ParamValue};

/// Checks every declared param and types its default.
pub(super) fn check(ctx: &mut Ctx, raw: &BTreeMap<String, Spanned<ParamSpec>>) -> Vec<ParamDecl> {
    let mut params = Vec::new();
    for (pname, p) in raw {
        let spec = p.get_ref();
        if !valid_table_name(pname) {
            ctx.problem(
                p.span().start,
                None,
                format!("param name `{pname}` must be letters, digits and `_`, not starting with a digit"),
                None,
            );
        }
        let default = match &spec.default {
            None => None,
            Some(v) => match ParamValue::from_toml(spec.ty, v, ctx.dir) {
                Ok(v) => Some(v),
                Err(e) => {
                    ctx.problem(p.span().start, None, format!("param `{pname}`: {e}"), None);
                    None
                }
            },
        };
        params.push(ParamDecl {
            name: pname.clone(),
            ty: spec.ty,
            default,
            description: spec.description.clone(),
        });
    }
    params
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::job::{Job, ParamType, ParamValue};

    #[test]
    fn defaults_are_typed_and_bad_ones_reported() {
        let text = "name = \"x\"\n[params]\nn = { type = \"int\", default = 3 }\nf = { type = \"float\", default = 2 }\n";
        let job = Job::parse(text, "x.toml", Path::new("/tmp")).unwrap();
        assert_eq!(job.params[0].name, "f");
        assert_eq!(job.params[0].default, Some(ParamValue::Float(2.0)));
        assert_eq!(job.params[1].ty, ParamType::Int);
        let bad = "name = \"x\"\n[params]\nn = { type = \"int\", default = \"three\" }\n1x = { type = \"int\" }\n";
        let msg = Job::parse(bad, "x.toml", Path::new("/tmp"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("param `n`"), "{msg}");
        assert!(msg.contains("param name `1x`"), "{msg}");
    }
}
