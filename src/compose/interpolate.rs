//! Compose variable interpolation: `${V}`, `${V:-d}`, `${V-d}`, `${V:?e}`, `${V?e}`, `${V:+a}`, `${V+a}`, `$$`.
//!
//! [`substitute`] is a pure function over one string and a lookup closure; it follows Compose v2
//! (compose-go's `template` package): `$V` and `${V}` name a variable (`[_A-Za-z][_A-Za-z0-9]*`), the text after
//! an operator is itself interpolated — eagerly, so an error in an unused default still fails, as in Compose —
//! and may nest (`${A:-${B:-x}}`), `$$` is a literal `$`, and a `$` not followed by a name or `{` stays as is.
//! [`interpolate_value`] applies it to every string value of a YAML tree (never to keys), the way Compose
//! interpolates a whole file, `x-*` extensions included.

use std::path::Path;

use serde_norway::Value;

use super::ComposeError;

/// The result of substituting one template.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Substituted {
    /// The interpolated text.
    pub value: String,
    /// Variables referenced without a default (`$V`, `${V}`) that are not set, in order of appearance; Compose
    /// replaces them with an empty string and warns.
    pub unset: Vec<String>,
}

/// Why a template could not be substituted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `${V:?message}` / `${V?message}` with `V` missing (or empty for `:?`).
    #[error("required variable `{name}` is missing a value: {message}")]
    Missing { name: String, message: String },
    /// Malformed syntax such as `${`, `${}`, `${1}`, `${A B}` or `${A=x}`.
    #[error("invalid interpolation format: {0}")]
    Invalid(String),
}

impl TemplateError {
    /// The loader's error for this failure in `value`, found at `location` (a dotted YAML path) of `path`.
    pub fn into_compose_error(self, path: &Path, location: &str, value: &str) -> ComposeError {
        match self {
            TemplateError::Missing { name, message } => {
                ComposeError::MissingVariable { name, message }
            }
            TemplateError::Invalid(message) => ComposeError::Interpolation {
                path: path.to_path_buf(),
                value: value.to_string(),
                message: if location.is_empty() {
                    message
                } else {
                    format!("{message} (at `{location}`)")
                },
            },
        }
    }
}

/// The warning Compose prints for a variable that is used but not set.
pub fn unset_warning(name: &str) -> String {
    format!("The \"{name}\" variable is not set. Defaulting to a blank string.")
}

/// The operator after a braced variable name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `:-` default when unset or empty.
    DefaultIfEmpty,
    /// `-` default when unset.
    DefaultIfUnset,
    /// `:?` error when unset or empty.
    RequiredNonEmpty,
    /// `?` error when unset.
    Required,
    /// `:+` alternative when set and non-empty.
    AltIfNonEmpty,
    /// `+` alternative when set.
    AltIfSet,
}

impl Op {
    /// The operator at the start of `s` and its length in bytes.
    fn parse(s: &str) -> Option<(Op, usize)> {
        let b = s.as_bytes();
        match (b.first(), b.get(1)) {
            (Some(b':'), Some(b'-')) => Some((Op::DefaultIfEmpty, 2)),
            (Some(b':'), Some(b'?')) => Some((Op::RequiredNonEmpty, 2)),
            (Some(b':'), Some(b'+')) => Some((Op::AltIfNonEmpty, 2)),
            (Some(b'-'), _) => Some((Op::DefaultIfUnset, 1)),
            (Some(b'?'), _) => Some((Op::Required, 1)),
            (Some(b'+'), _) => Some((Op::AltIfSet, 1)),
            _ => None,
        }
    }
}

/// Length in bytes of the variable name at the start of `s` (`[_A-Za-z][_A-Za-z0-9]*`), 0 when there is none.
fn name_len(s: &str) -> usize {
    let b = s.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {}
        _ => return 0,
    }
    b.iter()
        .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
        .unwrap_or(b.len())
}

/// Index of the `}` that closes a braced expression whose body starts at `s[0]`, counting every `${` inside
/// as a nested opening (as Compose does).
fn closing_brace(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut depth = 1usize;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && b.get(i + 1) == Some(&b'{') {
            depth += 1;
            i += 2;
            continue;
        }
        if b[i] == b'}' {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
        i += 1;
    }
    None
}

/// Substitutes the variables of `template`, looking values up with `lookup` (`None`: not set).
///
/// ```
/// use docker_persist::compose::interpolate::substitute;
/// let env = |k: &str| (k == "TAG").then(|| "16".to_string());
/// assert_eq!(substitute("postgres:${TAG:-15}", &env).unwrap().value, "postgres:16");
/// assert_eq!(substitute("$${TAG}", &env).unwrap().value, "${TAG}");
/// ```
pub fn substitute<F>(template: &str, lookup: &F) -> Result<Substituted, TemplateError>
where
    F: Fn(&str) -> Option<String> + ?Sized,
{
    let mut out = Substituted::default();
    substitute_into(template, template, lookup, &mut out)?;
    Ok(out)
}

fn substitute_into<F>(
    whole: &str,
    template: &str,
    lookup: &F,
    out: &mut Substituted,
) -> Result<(), TemplateError>
where
    F: Fn(&str) -> Option<String> + ?Sized,
{
    let invalid = || {
        TemplateError::Invalid(format!(
            "`{whole}`; you may need to escape any `$` with another `$`"
        ))
    };
    let mut rest = template;
    while let Some(pos) = rest.find('$') {
        out.value.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        match after.as_bytes().first() {
            Some(b'$') => {
                out.value.push('$');
                rest = &after[1..];
            }
            Some(b'{') => {
                let body = &after[1..];
                let n = name_len(body);
                if n == 0 {
                    return Err(invalid());
                }
                let name = &body[..n];
                let tail = &body[n..];
                if let Some(stripped) = tail.strip_prefix('}') {
                    match lookup(name) {
                        Some(v) => out.value.push_str(&v),
                        None => out.unset.push(name.to_string()),
                    }
                    rest = stripped;
                    continue;
                }
                let (op, op_len) = Op::parse(tail).ok_or_else(invalid)?;
                let arg_and_rest = &tail[op_len..];
                let close = closing_brace(arg_and_rest).ok_or_else(invalid)?;
                let raw_arg = &arg_and_rest[..close];
                rest = &arg_and_rest[close + 1..];

                // The argument is interpolated first, whether it is used or not (Compose does the same).
                let mut arg = Substituted::default();
                substitute_into(whole, raw_arg, lookup, &mut arg)?;
                out.unset.extend(arg.unset);
                let arg = arg.value;

                let value = lookup(name);
                let set_non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
                let text = match op {
                    Op::DefaultIfEmpty => {
                        if set_non_empty {
                            value.unwrap_or_default()
                        } else {
                            arg
                        }
                    }
                    Op::DefaultIfUnset => value.unwrap_or(arg),
                    Op::RequiredNonEmpty | Op::Required => {
                        let ok = if op == Op::Required {
                            value.is_some()
                        } else {
                            set_non_empty
                        };
                        if !ok {
                            return Err(TemplateError::Missing {
                                name: name.to_string(),
                                message: arg,
                            });
                        }
                        value.unwrap_or_default()
                    }
                    Op::AltIfNonEmpty => {
                        if set_non_empty {
                            arg
                        } else {
                            String::new()
                        }
                    }
                    Op::AltIfSet => {
                        if value.is_some() {
                            arg
                        } else {
                            String::new()
                        }
                    }
                };
                out.value.push_str(&text);
            }
            _ => {
                let n = name_len(after);
                if n == 0 {
                    // A lone `$` (end of text, `$ `, `$1`, `$-`…) is kept literally.
                    out.value.push('$');
                    rest = after;
                    continue;
                }
                let name = &after[..n];
                match lookup(name) {
                    Some(v) => out.value.push_str(&v),
                    None => out.unset.push(name.to_string()),
                }
                rest = &after[n..];
            }
        }
    }
    out.value.push_str(rest);
    Ok(())
}

/// Interpolates every string value of `value` in place (mapping keys are left alone), as Compose does for a
/// whole file. `location` is the dotted path of `value` in the file (empty for the root), used in errors;
/// unset variables are appended to `unset`.
pub fn interpolate_value<F>(
    value: &mut Value,
    file: &Path,
    location: &str,
    lookup: &F,
    unset: &mut Vec<String>,
) -> Result<(), ComposeError>
where
    F: Fn(&str) -> Option<String> + ?Sized,
{
    match value {
        Value::String(s) => {
            if s.contains('$') {
                let done =
                    substitute(s, lookup).map_err(|e| e.into_compose_error(file, location, s))?;
                unset.extend(done.unset);
                *s = done.value;
            }
        }
        Value::Sequence(seq) => {
            for (i, item) in seq.iter_mut().enumerate() {
                let loc = join_location(location, &i.to_string());
                interpolate_value(item, file, &loc, lookup, unset)?;
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                let loc = join_location(location, &key_display(key));
                interpolate_value(item, file, &loc, lookup, unset)?;
            }
        }
        Value::Tagged(tagged) => {
            interpolate_value(&mut tagged.value, file, location, lookup, unset)?
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

fn join_location(base: &str, part: &str) -> String {
    if base.is_empty() {
        part.to_string()
    } else {
        format!("{base}.{part}")
    }
}

/// A mapping key as text, for locations and names (`5` for a number key).
pub fn key_display(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_string(),
        _ => "?".to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sub(template: &str, pairs: &[(&str, &str)]) -> Result<Substituted, TemplateError> {
        let env = env(pairs);
        substitute(template, &|k: &str| env.get(k).cloned())
    }

    fn val(template: &str, pairs: &[(&str, &str)]) -> String {
        sub(template, pairs).unwrap().value
    }

    #[test]
    fn plain_forms_substitute_and_report_unset() {
        assert_eq!(val("$A-${A}/$A.b", &[("A", "x")]), "x-x/x.b");
        let s = sub("a${B}c$C", &[]).unwrap();
        assert_eq!(s.value, "ac");
        assert_eq!(s.unset, vec!["B".to_string(), "C".to_string()]);
        assert_eq!(val("$Ab-c", &[("Ab", "1")]), "1-c");
        assert_eq!(val("${lower_1}", &[("lower_1", "ok")]), "ok");
    }

    #[test]
    fn default_when_unset_or_empty() {
        assert_eq!(val("${A:-d}", &[]), "d");
        assert_eq!(val("${A:-d}", &[("A", "")]), "d");
        assert_eq!(val("${A:-d}", &[("A", "v")]), "v");
        assert_eq!(val("${A:-}", &[]), "");
        assert!(sub("${A:-d}", &[]).unwrap().unset.is_empty());
    }

    #[test]
    fn default_only_when_unset() {
        assert_eq!(val("${A-d}", &[]), "d");
        assert_eq!(val("${A-d}", &[("A", "")]), "");
        assert_eq!(val("${A-d}", &[("A", "v")]), "v");
        assert_eq!(val("${VERSION-master}", &[]), "master");
    }

    #[test]
    fn alternative_forms() {
        assert_eq!(val("${A:+alt}", &[("A", "v")]), "alt");
        assert_eq!(val("${A:+alt}", &[("A", "")]), "");
        assert_eq!(val("${A:+alt}", &[]), "");
        assert_eq!(val("${A+alt}", &[("A", "")]), "alt");
        assert_eq!(val("${A+alt}", &[]), "");
    }

    #[test]
    fn required_non_empty_fails_with_the_message() {
        let err = sub("${PG_PASS:?database password required}", &[("PG_PASS", "")]).unwrap_err();
        assert_eq!(
            err,
            TemplateError::Missing {
                name: "PG_PASS".into(),
                message: "database password required".into()
            }
        );
        assert_eq!(val("${A:?m}", &[("A", "v")]), "v");
        let err = sub("${A:?}", &[]).unwrap_err();
        assert_eq!(
            err,
            TemplateError::Missing {
                name: "A".into(),
                message: String::new()
            }
        );
    }

    #[test]
    fn required_fails_only_when_unset() {
        assert_eq!(val("${A?m}", &[("A", "")]), "");
        let err = sub("${A?x-y}", &[]).unwrap_err();
        assert_eq!(
            err,
            TemplateError::Missing {
                name: "A".into(),
                message: "x-y".into()
            }
        );
    }

    #[test]
    fn message_is_interpolated() {
        let err = sub("${A:?must set $HOME}", &[("HOME", "/root")]).unwrap_err();
        assert_eq!(
            err,
            TemplateError::Missing {
                name: "A".into(),
                message: "must set /root".into()
            }
        );
    }

    #[test]
    fn nesting_resolves_inner_first() {
        assert_eq!(val("${A:-${B:-x}}", &[]), "x");
        assert_eq!(val("${A:-${B:-x}}", &[("B", "b")]), "b");
        assert_eq!(val("${A:-${B:-x}}", &[("A", "a")]), "a");
        assert_eq!(val("pre${A:-${B:-${C:-deep}}}post", &[]), "predeeppost");
        assert_eq!(val("${A:-a${B:-b}c}d", &[]), "abcd");
        assert_eq!(val("${A:+${B:-q}}", &[("A", "1")]), "q");
        let s = sub("${A:-${B}}z", &[]).unwrap();
        assert_eq!(s.value, "z");
        assert_eq!(s.unset, vec!["B".to_string()]);
    }

    #[test]
    fn defaults_are_evaluated_eagerly_like_compose() {
        // Compose interpolates the default before looking at the variable, so this fails even when A is set.
        let err = sub("${A:-${B?nob}}", &[("A", "1")]).unwrap_err();
        assert_eq!(
            err,
            TemplateError::Missing {
                name: "B".into(),
                message: "nob".into()
            }
        );
    }

    #[test]
    fn dollar_dollar_is_a_literal_dollar() {
        assert_eq!(val("$$", &[]), "$");
        assert_eq!(val("$$A", &[("A", "x")]), "$A");
        assert_eq!(val("$${A}", &[("A", "x")]), "${A}");
        assert_eq!(val("$$$A", &[("A", "x")]), "$x");
        assert_eq!(val("echo $${!}", &[]), "echo ${!}");
        assert_eq!(val("${A:-$$}", &[]), "$");
    }

    #[test]
    fn lone_dollar_is_kept() {
        assert_eq!(val("$", &[]), "$");
        assert_eq!(val("a$ b", &[]), "a$ b");
        assert_eq!(val("$1 $-", &[]), "$1 $-");
    }

    #[test]
    fn braces_after_the_expression_stay_literal() {
        assert_eq!(val("${A:-x}}", &[]), "x}");
        assert_eq!(val("${A:-{x}", &[]), "{x");
        assert_eq!(val("${A:-a}b}", &[]), "ab}");
    }

    #[test]
    fn operator_is_the_one_after_the_name() {
        assert_eq!(val("${A-x:?y}", &[]), "x:?y");
        assert_eq!(val("${A:-x?y}", &[]), "x?y");
    }

    #[test]
    fn invalid_syntax_is_an_error() {
        for bad in [
            "${",
            "${A",
            "${}",
            "${1}",
            "${A B}",
            "${ A}",
            "${A=x}",
            "${A:=x}",
            "${A:x}",
            "${-x}",
            "${A:-x",
            "${A:-${B}",
        ] {
            match sub(bad, &[("A", "1")]) {
                Err(TemplateError::Invalid(msg)) => assert!(msg.contains(bad), "{bad}: {msg}"),
                other => panic!("{bad}: expected an invalid-format error, got {other:?}"),
            }
        }
    }

    #[test]
    fn non_ascii_text_passes_through() {
        assert_eq!(val("ü/${A}/é$", &[("A", "ß")]), "ü/ß/é$");
    }

    #[test]
    fn interpolate_value_walks_values_not_keys() {
        let mut v: Value =
            serde_norway::from_str("x-a:\n  $K: ${A}\n  list: [\"${A}\", 3, true]\nb: !tag ${A}\n")
                .unwrap();
        let e = env(&[("A", "v")]);
        let mut unset = Vec::new();
        interpolate_value(
            &mut v,
            Path::new("f.yml"),
            "",
            &|k: &str| e.get(k).cloned(),
            &mut unset,
        )
        .unwrap();
        assert_eq!(v["x-a"]["$K"], Value::String("v".into()));
        assert_eq!(v["x-a"]["list"][0], Value::String("v".into()));
        assert_eq!(v["x-a"]["list"][1], Value::Number(3.into()));
        match &v["b"] {
            Value::Tagged(t) => assert_eq!(t.value, Value::String("v".into())),
            other => panic!("expected a tagged value, got {other:?}"),
        }
        assert!(unset.is_empty());
    }

    #[test]
    fn interpolate_value_names_file_value_and_location() {
        let mut v: Value = serde_norway::from_str("services:\n  a:\n    image: \"x${\"\n").unwrap();
        let err = interpolate_value(
            &mut v,
            Path::new("/p/compose.yaml"),
            "",
            &|_: &str| None,
            &mut Vec::new(),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/p/compose.yaml"), "{text}");
        assert!(text.contains("`x${`"), "{text}");
        assert!(text.contains("services.a.image"), "{text}");
    }

    #[test]
    fn interpolate_value_reports_missing_variables() {
        let mut v: Value = serde_norway::from_str("a: ${S:?secret needed}\n").unwrap();
        let err = interpolate_value(&mut v, Path::new("f"), "", &|_: &str| None, &mut Vec::new())
            .unwrap_err();
        match err {
            ComposeError::MissingVariable { name, message } => {
                assert_eq!(name, "S");
                assert_eq!(message, "secret needed");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
