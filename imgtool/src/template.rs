//! `--format`: the part of Go's text/template that docker users script
//! with, over JSON values: `{{.Field.Sub}}`, `{{.}}`, `{{json .X}}`,
//! `{{index .X "key"}}`, `{{join .X ", "}}`, `{{lower .X}}`,
//! `{{upper .X}}`, `{{len .X}}`, `{{.Label "key"}}` (`ps`), and docker's
//! `table` prefix and `\t`/`\n` escapes. Values print as Go prints them:
//! `map[k:v]`, `[a b]`, `<no value>` for a missing key.

use serde_json::Value;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    /// `.A.B` (empty: `.`).
    Field(Vec<String>),
    Str(String),
    Num(u64),
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Action {
        func: Option<String>,
        args: Vec<Arg>,
    },
}

/// A parsed `--format`.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
    /// It began with `table`: print a header row and align columns.
    pub table: bool,
}

const FUNCS: &[&str] = &["json", "index", "join", "lower", "upper", "len", "title"];

fn bad(format: &str, why: &str) -> Error {
    Error::invalid("--format", format!("{format:?}: {why}"))
}

/// The words of an action: fields, quoted strings, function names.
fn words(format: &str, action: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = action.trim().chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut s = String::from("\"");
            loop {
                match chars.next() {
                    Some('\\') => match chars.next() {
                        Some('n') => s.push('\n'),
                        Some('t') => s.push('\t'),
                        Some(o) => s.push(o),
                        None => return Err(bad(format, "unterminated string")),
                    },
                    Some('"') => break,
                    Some(o) => s.push(o),
                    None => return Err(bad(format, "unterminated string")),
                }
            }
            out.push(s);
        } else {
            let mut w = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                w.push(c);
                chars.next();
            }
            out.push(w);
        }
    }
    Ok(out)
}

impl Template {
    /// Parses `format`, after docker's own rewriting: a leading `table`
    /// and the escapes `\t` and `\n`.
    pub fn parse(format: &str) -> Result<Template> {
        let mut text = format.replace("\\t", "\t").replace("\\n", "\n");
        let table = text.starts_with("table");
        if table {
            text = text["table".len()..].trim_start().to_string();
        }
        let mut parts = Vec::new();
        let mut rest = text.as_str();
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find("}}")
                .ok_or_else(|| bad(format, "unclosed action"))?;
            let inner = rest[open + 2..open + close].trim_matches('-');
            let ws = words(format, inner)?;
            let (func, args) = match ws.first() {
                Some(f) if FUNCS.contains(&f.as_str()) => (Some(f.clone()), &ws[1..]),
                Some(f) if !f.starts_with('.') && !f.starts_with('"') => {
                    return Err(bad(format, &format!("function {f:?} not defined")))
                }
                _ => (None, &ws[..]),
            };
            if args.is_empty() {
                return Err(bad(format, "missing value"));
            }
            let args = args
                .iter()
                .map(|w| match w.strip_prefix('"') {
                    Some(s) => Ok(Arg::Str(s.to_string())),
                    None if w == "." => Ok(Arg::Field(Vec::new())),
                    None if w.parse::<u64>().is_ok() => Ok(Arg::Num(w.parse().expect("a number"))),
                    None if w.starts_with('.') => {
                        Ok(Arg::Field(w[1..].split('.').map(str::to_string).collect()))
                    }
                    None => Err(bad(format, &format!("unexpected {w:?}"))),
                })
                .collect::<Result<Vec<_>>>()?;
            parts.push(Part::Action { func, args });
            rest = &rest[open + close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts, table })
    }

    /// The template applied to `data`.
    pub fn render(&self, data: &Value) -> Result<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Action { func, args } => out.push_str(&self.action(func, args, data)?),
            }
        }
        Ok(out)
    }

    fn action(&self, func: &Option<String>, args: &[Arg], data: &Value) -> Result<String> {
        let value = |a: &Arg| -> Option<Value> {
            match a {
                Arg::Str(s) => Some(Value::String(s.clone())),
                Arg::Num(n) => Some(Value::from(*n)),
                Arg::Field(path) => lookup(data, path).cloned(),
            }
        };
        let err = |why: String| Error::invalid("--format", why);
        match func.as_deref() {
            None => {
                // `.Label "key"`: docker's method on ps rows.
                if let [Arg::Field(path), Arg::Str(key)] = args {
                    if path.last().map(String::as_str) == Some("Label") {
                        // A map, or docker's `k=v,k2=v2` string.
                        return Ok(match lookup(data, &["Labels".to_string()]) {
                            Some(Value::Object(m)) => {
                                m.get(key).map_or_else(String::new, go_string)
                            }
                            Some(Value::String(s)) => s
                                .split(',')
                                .find_map(|kv| {
                                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                                    (k == key).then(|| v.to_string())
                                })
                                .unwrap_or_default(),
                            _ => String::new(),
                        });
                    }
                }
                match args {
                    [a] => Ok(value(a).map_or("<no value>".into(), |v| go_string(&v))),
                    _ => Err(err("a value takes no arguments".into())),
                }
            }
            Some("json") => {
                let v = args.first().and_then(value).unwrap_or(Value::Null);
                Ok(serde_json::to_string(&v).expect("JSON"))
            }
            Some("index") => {
                let mut v = args.first().and_then(value).unwrap_or(Value::Null);
                for k in &args[1..] {
                    v = match (&v, value(k)) {
                        (Value::Object(m), Some(Value::String(k))) => {
                            m.get(&k).cloned().unwrap_or(Value::Null)
                        }
                        (Value::Array(a), Some(Value::Number(n))) => n
                            .as_u64()
                            .and_then(|i| a.get(i as usize).cloned())
                            .unwrap_or(Value::Null),
                        (Value::Array(a), Some(Value::String(s))) => s
                            .parse::<usize>()
                            .ok()
                            .and_then(|i| a.get(i).cloned())
                            .unwrap_or(Value::Null),
                        _ => Value::Null,
                    };
                }
                Ok(match v {
                    Value::Null => "<no value>".into(),
                    v => go_string(&v),
                })
            }
            Some("join") => {
                let (Some(list), Some(Value::String(sep))) =
                    (args.first().and_then(value), args.get(1).and_then(value))
                else {
                    return Err(err("join takes a list and a separator".into()));
                };
                let items: Vec<String> = match list {
                    Value::Array(a) => a.iter().map(go_string).collect(),
                    other => vec![go_string(&other)],
                };
                Ok(items.join(&sep))
            }
            Some("len") => {
                let v = args.first().and_then(value).unwrap_or(Value::Null);
                Ok(match v {
                    Value::Array(a) => a.len(),
                    Value::Object(m) => m.len(),
                    Value::String(s) => s.len(),
                    _ => 0,
                }
                .to_string())
            }
            Some(f) => {
                let s = args
                    .first()
                    .and_then(value)
                    .map_or(String::new(), |v| go_string(&v));
                Ok(match f {
                    "lower" => s.to_lowercase(),
                    "upper" => s.to_uppercase(),
                    _ => {
                        let mut c = s.chars();
                        c.next()
                            .map(|f| f.to_uppercase().chain(c).collect())
                            .unwrap_or_default()
                    }
                })
            }
        }
    }
}

fn lookup<'v>(data: &'v Value, path: &[String]) -> Option<&'v Value> {
    let mut v = data;
    for k in path {
        v = v.get(k)?;
    }
    Some(v)
}

/// A value as Go's `fmt` prints it with `%v`.
pub fn go_string(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(go_string).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", go_string(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

/// Lines of cells separated by tabs, aligned as Go's tabwriter aligns
/// docker's tables: each column as wide as its widest cell plus
/// `padding`, at least `min_width`; a line's last cell is not padded.
pub fn tabwriter(lines: &[String], min_width: usize, padding: usize) -> String {
    let rows: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let columns = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for r in &rows {
        for (i, cell) in r.iter().enumerate().take(r.len().saturating_sub(1)) {
            widths[i] = widths[i].max((cell.chars().count() + padding).max(min_width));
        }
    }
    let mut out = String::new();
    for r in &rows {
        for (i, cell) in r.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < r.len() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                out.push_str(&" ".repeat(pad));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(format: &str, data: &Value) -> String {
        Template::parse(format).unwrap().render(data).unwrap()
    }

    #[test]
    fn fields_functions_and_go_printing() {
        let d = json!({
            "Names": "web", "State": {"Status": "running", "Running": true, "Pid": 42},
            "Ports": {"80/tcp": [{"HostPort": "8080"}]}, "Labels": {"tier": "front"},
            "Env": ["A=1", "B=2"], "Nil": null
        });
        assert_eq!(render("{{.Names}}", &d), "web");
        assert_eq!(render("{{.State.Status}} {{.State.Pid}}", &d), "running 42");
        assert_eq!(render("{{.State.Running}}", &d), "true");
        assert_eq!(render("{{json .State.Status}}", &d), "\"running\"");
        assert_eq!(
            render("{{index .Ports \"80/tcp\" 0 \"HostPort\"}}", &d),
            "8080"
        );
        assert_eq!(render("{{join .Env \",\"}}", &d), "A=1,B=2");
        assert_eq!(render("{{.Env}}", &d), "[A=1 B=2]");
        assert_eq!(render("{{.Labels}}", &d), "map[tier:front]");
        assert_eq!(render("{{.Label \"tier\"}}", &d), "front");
        let row = json!({"Labels": "a=1,tier=back"});
        assert_eq!(render("{{.Label \"tier\"}}", &row), "back");
        assert_eq!(render("{{.Missing}}", &d), "<no value>");
        assert_eq!(render("{{.Nil}}", &d), "<nil>");
        assert_eq!(render("{{upper .Names}}", &d), "WEB");
        assert_eq!(render("{{len .Env}}", &d), "2");
        assert_eq!(render("a\\tb", &d), "a\tb");
        let t = Template::parse("table {{.Names}}\\t{{.State.Status}}").unwrap();
        assert!(t.table);
        assert_eq!(t.render(&d).unwrap(), "web\trunning");
        assert!(Template::parse("{{nope .X}}").is_err());
        assert!(Template::parse("{{.X").is_err());
    }

    #[test]
    fn tables_align_like_tabwriter() {
        let lines = vec!["CONTAINER ID\tNAMES".to_string(), "abc\tweb".to_string()];
        assert_eq!(
            tabwriter(&lines, 10, 3),
            "CONTAINER ID   NAMES\nabc            web\n"
        );
    }
}
