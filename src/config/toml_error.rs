//! A TOML or type error of the configuration file turned into one line that names the line,
//! the dotted key and the fix, instead of the parser's multi-line report.

use std::ops::Range;

/// Where and what: the 1-based line, the dotted key (`sources.oifde.timeout_secs`, empty
/// when the error is not about a key), the problem and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TomlProblem {
    pub(super) line: usize,
    pub(super) key: String,
    pub(super) problem: String,
    pub(super) fix: String,
}

/// Explains `err`, raised while reading `text`.
pub(super) fn explain(text: &str, err: &toml::de::Error) -> TomlProblem {
    let message = err.message().trim().replace('\n', " ");
    let span = err.span().unwrap_or(0..0);
    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
    let (table, key) = locate(text, &span);
    let dotted = |name: &str| join(&table, name);
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let (name, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
        let name = name.trim_matches('`');
        let known = expected.trim_start_matches("one of ").replace('`', "");
        return TomlProblem {
            line,
            key: dotted(name),
            problem: format!("unknown key '{name}'"),
            fix: format!("remove it or correct its spelling; the keys here are: {known}"),
        };
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        let name = rest.trim_matches('`');
        return TomlProblem {
            line,
            key: dotted(name),
            problem: "is required but missing".into(),
            fix: format!("add {name} = ... to [{table}]"),
        };
    }
    let wrong_value =
        ["invalid type", "invalid value", "invalid length"].iter().any(|p| message.starts_with(p));
    if let Some((found, expected)) = message.split_once(", expected ").filter(|_| wrong_value) {
        return TomlProblem {
            line,
            key: key.map(|k| dotted(&k)).unwrap_or(table),
            problem: found.to_string(),
            fix: format!("write {} there", readable(expected)),
        };
    }
    TomlProblem {
        line,
        key: key.map(|k| dotted(&k)).unwrap_or_default(),
        problem: format!("not valid TOML: {message}"),
        fix: format!("correct line {line} (strings in double quotes, one key = value a line)"),
    }
}

/// The table header in force at `span` and the key written on its line, if any.
fn locate(text: &str, span: &Range<usize>) -> (String, Option<String>) {
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = text[line_start..line_end].trim();
    let header = |l: &str| {
        let l = l.trim();
        (l.starts_with('[') && l.ends_with(']'))
            .then(|| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
    };
    if let Some(table) = header(line) {
        return (table, None);
    }
    let table = text[..line_start].lines().rev().find_map(header).unwrap_or_default();
    let key = line.split_once('=').map(|(k, _)| k.trim().trim_matches('"').to_string());
    (table, key.filter(|k| !k.is_empty()))
}

fn join(table: &str, key: &str) -> String {
    if table.is_empty() {
        key.to_string()
    } else {
        format!("{table}.{key}")
    }
}

/// Serde's type names in words an operator knows.
fn readable(expected: &str) -> String {
    match expected.trim() {
        "usize" | "u64" | "u32" | "u16" | "u8" => "a whole number of 0 or more".into(),
        "i64" | "i32" => "a whole number".into(),
        "f64" | "f32" => "a number".into(),
        "a boolean" => "true or false".into(),
        "a string" => "a string in double quotes".into(),
        other => other.replace('`', "'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::ConfigFile;

    const HEAD: &str = "tenant_id = \"t\"\n[destination]\nurl = \"file:///lake\"\n[sources.a]\n";

    /// The problem with `source_lines` written in `[sources.a]` (line 5 onwards).
    fn problem(source_lines: &str) -> TomlProblem {
        let text = format!("{HEAD}{source_lines}");
        explain(&text, &toml::from_str::<ConfigFile>(&text).unwrap_err())
    }

    /// Unknown keys, wrong types and missing keys are named by their dotted path and line,
    /// with a fix.
    #[test]
    fn keys_are_named_with_their_table() {
        let p = problem("base_url = \"x\"\nbogus = 1\n");
        assert_eq!((p.line, p.key.as_str()), (6, "sources.a.bogus"));
        assert!(p.fix.contains("max_concurrency"), "{p:?}");

        let p = problem("base_url = \"x\"\nmax_concurrency = \"four\"\n");
        assert_eq!(p.key, "sources.a.max_concurrency");
        assert!(p.problem.contains("\"four\"") && p.fix.contains("whole number"), "{p:?}");

        let p = problem("insecure_skip_verify = \"yes\"\nbase_url = \"x\"\n");
        assert_eq!(p.key, "sources.a.insecure_skip_verify");
        assert!(p.fix.contains("true or false"), "{p:?}");

        let text = format!("{HEAD}base_url = \"x\"\n").replacen("\"t\"", "5", 1);
        let p = explain(&text, &toml::from_str::<ConfigFile>(&text).unwrap_err());
        assert_eq!((p.line, p.key.as_str()), (1, "tenant_id"));

        let p = problem("max_concurrency = 1\n");
        assert_eq!(p.key, "sources.a.base_url");
        assert!(p.fix.contains("add base_url"), "{p:?}");

        let p = problem("base_url = \"x\n");
        assert!(p.problem.starts_with("not valid TOML") && p.fix.contains("line 5"), "{p:?}");
    }
}
