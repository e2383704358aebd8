//! `${VAR}` in compose files, and the `.env` files that set variables, as
//! docker compose v2 reads them (compose-go's `template` and `dotenv`):
//!
//! - `$VAR`, `${VAR}`: the value, or "" with a warning when unset;
//! - `${VAR:-default}` when unset or empty, `${VAR-default}` when unset;
//! - `${VAR:?message}`, `${VAR?message}`: an error naming the variable;
//! - `${VAR:+other}`, `${VAR+other}`: `other` when set (and not empty);
//! - `$$`: a literal `$`; defaults may hold `${...}` themselves.
//!
//! The variables are the process environment over the project's `.env`
//! (the environment wins, as in compose).

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Context, Error, Result};

/// The variables a compose file is interpolated with.
#[derive(Clone, Debug, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl Environment {
    /// The process environment over the `.env` file at `dotenv` (when it
    /// exists).
    pub fn load(dotenv: &Path) -> Result<Environment> {
        let process: BTreeMap<String, String> = std::env::vars().collect();
        let mut vars = BTreeMap::new();
        if dotenv.is_file() {
            let text =
                std::fs::read_to_string(dotenv).context(|| format!("read {}", dotenv.display()))?;
            let base = Environment {
                vars: process.clone(),
            };
            for (k, v) in parse_env_file(&text, &dotenv.display().to_string(), &base)? {
                vars.insert(k, v);
            }
        }
        vars.extend(process);
        Ok(Environment { vars })
    }

    /// Only these variables (for tests and callers that set them all).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Environment {
        Environment {
            vars: vars.into_iter().collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `s` with its variables replaced; the error says which variable or
/// which part of the template was wrong.
pub fn interpolate(s: &str, env: &Environment) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let next = after.chars().next();
        match next {
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('{') => {
                let end = closing_brace(after)
                    .ok_or_else(|| format!("invalid template: {s:?}: unclosed \"${{\""))?;
                out.push_str(&braced(&after[1..end], env)?);
                rest = &after[end + 1..];
            }
            Some(c) if is_name_start(c) => {
                let len = after.find(|c| !is_name_char(c)).unwrap_or(after.len());
                let name = &after[..len];
                out.push_str(&value_or_warn(name, env));
                rest = &after[len..];
            }
            _ => {
                return Err(format!(
                    "invalid template: {s:?}: a lone \"$\" (write \"$$\")"
                ))
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The index in `s` (which starts with `{`) of the brace closing it.
fn closing_brace(s: &str) -> Option<usize> {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn value_or_warn(name: &str, env: &Environment) -> String {
    match env.get(name) {
        Some(v) => v.to_string(),
        None => {
            tracing::warn!("the {name} variable is not set, defaulting to a blank string");
            String::new()
        }
    }
}

/// What is inside `${...}`.
fn braced(inner: &str, env: &Environment) -> std::result::Result<String, String> {
    let len = inner.find(|c| !is_name_char(c)).unwrap_or(inner.len());
    let (name, op) = inner.split_at(len);
    if name.is_empty() || !name.starts_with(is_name_start) {
        return Err(format!(
            "invalid template: \"${{{inner}}}\": not a variable name"
        ));
    }
    let value = env.get(name);
    let set_and_not_empty = value.is_some_and(|v| !v.is_empty());
    let word = |w: &str| interpolate(w, env);
    if op.is_empty() {
        return Ok(value_or_warn(name, env));
    }
    if let Some(default) = op.strip_prefix(":-") {
        return if set_and_not_empty {
            Ok(value.unwrap_or_default().to_string())
        } else {
            word(default)
        };
    }
    if let Some(default) = op.strip_prefix('-') {
        return match value {
            Some(v) => Ok(v.to_string()),
            None => word(default),
        };
    }
    if let Some(message) = op.strip_prefix(":?") {
        return if set_and_not_empty {
            Ok(value.unwrap_or_default().to_string())
        } else {
            Err(format!(
                "required variable {name} is missing a value: {}",
                word(message)?
            ))
        };
    }
    if let Some(message) = op.strip_prefix('?') {
        return match value {
            Some(v) => Ok(v.to_string()),
            None => Err(format!(
                "required variable {name} is missing a value: {}",
                word(message)?
            )),
        };
    }
    if let Some(other) = op.strip_prefix(":+") {
        return if set_and_not_empty {
            word(other)
        } else {
            Ok(String::new())
        };
    }
    if let Some(other) = op.strip_prefix('+') {
        return match value {
            Some(_) => word(other),
            None => Ok(String::new()),
        };
    }
    Err(format!("invalid template: \"${{{inner}}}\""))
}

/// Parses an env file (`.env`, a service's `env_file`) as compose does:
/// `KEY=VALUE` lines, an optional `export `, `#` comments (after
/// whitespace on a value's line too), `'literal'` and `"escaped"` values,
/// unquoted and double-quoted values interpolated with the variables set
/// so far over `env`; a bare `KEY` takes its value from `env`, or is left
/// out. Errors name the file and line.
pub fn parse_env_file(text: &str, file: &str, env: &Environment) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, raw)) = lines.next() {
        let bad = |why: String| Error::Other(format!("{file}:{}: {why}", n + 1));
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim_start())),
            None => (line, None),
        };
        if key.is_empty() || !key.starts_with(is_name_start) || !key.chars().all(is_name_char) {
            return Err(bad(format!("{key:?} is not a variable name")));
        }
        let Some(value) = value else {
            if let Some(v) = lookup(&out, env, key) {
                out.push((key.to_string(), v));
            }
            continue;
        };
        let scope = Environment {
            vars: env
                .vars
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .chain(out.iter().cloned())
                .collect(),
        };
        let value = if let Some(body) = value.strip_prefix('\'') {
            let mut text = body.to_string();
            // A quoted value may go on over lines.
            while !text.trim_end().ends_with('\'') {
                let (_, more) = lines.next().ok_or_else(|| bad("unclosed '".into()))?;
                text.push('\n');
                text.push_str(more);
            }
            let text = text.trim_end();
            text[..text.len() - 1].to_string()
        } else if let Some(body) = value.strip_prefix('"') {
            let mut text = body.to_string();
            while !ends_with_unescaped_quote(text.trim_end()) {
                let (_, more) = lines.next().ok_or_else(|| bad("unclosed \"".into()))?;
                text.push('\n');
                text.push_str(more);
            }
            let text = text.trim_end();
            let unescaped = unescape(&text[..text.len() - 1]);
            interpolate(&unescaped, &scope).map_err(bad)?
        } else {
            let cut = value
                .char_indices()
                .find(|(i, c)| *c == '#' && *i > 0 && value[..*i].ends_with([' ', '\t']))
                .map_or(value.len(), |(i, _)| i);
            interpolate(value[..cut].trim_end(), &scope).map_err(bad)?
        };
        out.retain(|(k, _)| k != key);
        out.push((key.to_string(), value));
    }
    Ok(out)
}

fn lookup(set: &[(String, String)], env: &Environment, key: &str) -> Option<String> {
    set.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .or_else(|| env.get(key).map(str::to_string))
}

fn ends_with_unescaped_quote(s: &str) -> bool {
    let Some(body) = s.strip_suffix('"') else {
        return false;
    };
    let backslashes = body.chars().rev().take_while(|c| *c == '\\').count();
    backslashes % 2 == 0
}

/// A double-quoted value's escapes: `\n`, `\t`, `\"`, `\\`, `\$`.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            // `\$` stays an escaped dollar for the interpolation after.
            Some('$') => out.push_str("$$"),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment {
        Environment::from_vars([
            ("SET".to_string(), "value".to_string()),
            ("EMPTY".to_string(), String::new()),
            ("PORT".to_string(), "8080".to_string()),
        ])
    }

    fn i(s: &str) -> String {
        interpolate(s, &env()).unwrap()
    }

    #[test]
    fn every_form_of_variable() {
        assert_eq!(i("plain"), "plain");
        assert_eq!(i("$SET/${SET}"), "value/value");
        assert_eq!(i("a${UNSET}b$UNSET"), "ab");
        assert_eq!(
            i("${UNSET:-def}|${EMPTY:-def}|${SET:-def}"),
            "def|def|value"
        );
        assert_eq!(i("${UNSET-def}|${EMPTY-def}|${SET-def}"), "def||value");
        assert_eq!(
            i("${SET:+alt}|${EMPTY:+alt}|${EMPTY+alt}|${UNSET+alt}"),
            "alt||alt|"
        );
        assert_eq!(i("$$SET costs $$5"), "$SET costs $5");
        assert_eq!(i("127.0.0.1:${PORT:-80}:80"), "127.0.0.1:8080:80");
        assert_eq!(i("${UNSET:-${PORT}-x}"), "8080-x");
        assert_eq!(i("${UNSET:-a b {c}}"), "a b {c}");
        assert_eq!(i("${SET?}"), "value");
        let e = interpolate("${UNSET:?the port is needed}", &env()).unwrap_err();
        assert_eq!(
            e,
            "required variable UNSET is missing a value: the port is needed"
        );
        assert!(interpolate("${EMPTY:?x}", &env()).is_err());
        assert_eq!(i("${EMPTY?x}"), "");
        for bad in ["${", "${UNSET", "$1", "${1A}", "${SET%x}", "a $ b"] {
            assert!(
                interpolate(bad, &env())
                    .unwrap_err()
                    .starts_with("invalid template"),
                "{bad}"
            );
        }
    }

    #[test]
    fn env_files_as_compose_reads_them() {
        let text = "\
# a comment
PLAIN=one
export EXPORTED = two
SPACED=three # a comment
HASH=a#b
SINGLE='${SET} $x # kept'
DOUBLE=\"line\\nnext \\\"q\\\" ${PLAIN}\"
MULTI=\"first
second\"
REF=${PLAIN}-${SET}
SET
UNSET_BARE
EMPTY=
PLAIN=again
";
        let vars = parse_env_file(text, ".env", &env()).unwrap();
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PLAIN"), Some("again"));
        assert_eq!(get("EXPORTED"), Some("two"));
        assert_eq!(get("SPACED"), Some("three"));
        assert_eq!(get("HASH"), Some("a#b"));
        assert_eq!(get("SINGLE"), Some("${SET} $x # kept"));
        assert_eq!(get("DOUBLE"), Some("line\nnext \"q\" one"));
        assert_eq!(get("MULTI"), Some("first\nsecond"));
        assert_eq!(get("REF"), Some("one-value"));
        assert_eq!(get("SET"), Some("value"));
        assert_eq!(get("UNSET_BARE"), None);
        assert_eq!(get("EMPTY"), Some(""));
        let e = parse_env_file("OK=1\nnot a key=2\n", "app.env", &env()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "app.env:2: \"not a key\" is not a variable name"
        );
        let e = parse_env_file("A=\"open\n", "x.env", &env()).unwrap_err();
        assert!(e.to_string().starts_with("x.env:1: unclosed"), "{e}");
    }

    #[test]
    fn the_environment_wins_over_dotenv() {
        let dir = std::env::temp_dir().join(format!("berth-dotenv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join(".env");
        std::fs::write(&f, "PATH=from-dotenv\nBERTH_DOTENV_ONLY=kept\n").unwrap();
        let env = Environment::load(&f).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(env.get("BERTH_DOTENV_ONLY"), Some("kept"));
        assert_eq!(env.get("PATH"), std::env::var("PATH").ok().as_deref());
    }
}
