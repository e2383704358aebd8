//! Dockerfile parser and variable expansion for `berth-img build`.
//!
//! This follows BuildKit's Dockerfile frontend rather than a grammar of our own: the
//! quirks (exec form only for valid JSON, legacy `ENV key value`, comment lines inside
//! continuations, heredoc detection) are what existing Dockerfiles rely on. Parsing runs
//! in BuildKit's two passes, so when a file has several errors the one reported is the
//! one `docker build` would report first:
//!
//! 1. physical lines become instructions: parser directives, continuations, comments
//!    and heredoc bodies are handled and each instruction's arguments are split;
//! 2. every instruction's flags and arguments are checked and grouped into stages.
//!
//! Values are kept as written (quotes included) wherever BuildKit expands them at build
//! time; the builder runs them through [`expand`] with the environment of that moment.

use std::collections::HashMap;

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// Parser directives from the top of the file.
    pub directives: Directives,
    /// `ARG`s declared before the first `FROM`: usable only in `FROM` lines unless a
    /// stage declares them again.
    pub args_before_from: Vec<Arg>,
    /// Build stages, in file order.
    pub stages: Vec<Stage>,
}

/// Parser directives (`# escape=`, `# syntax=`, `# check=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// Escape and line-continuation character: `\` unless `# escape=` chose `` ` ``.
    pub escape: char,
    /// The frontend named by `# syntax=`; recorded only, this parser is always used.
    pub syntax: Option<String>,
    /// The build-check settings of `# check=`; recorded only.
    pub check: Option<String>,
}

/// One build stage: a `FROM` and the instructions up to the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// The image word of `FROM`, unexpanded (it may use `args_before_from`).
    pub base: String,
    /// The `AS` name, lowercased.
    pub name: Option<String>,
    /// The `--platform=` value, unexpanded.
    pub platform: Option<String>,
    /// 1-based line of the `FROM` keyword.
    pub line: usize,
    /// The stage's instructions, in order.
    pub instructions: Vec<Instruction>,
}

/// One instruction of a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line of the instruction keyword.
    pub line: usize,
    /// The instruction as written, continuations joined and comment lines dropped,
    /// followed by each heredoc body and terminator (as BuildKit records `ONBUILD`
    /// triggers), so it can serve as the build-cache key and in messages.
    pub original: String,
    /// What the instruction does.
    pub kind: Kind,
}

/// The instructions. String values are as written (quotes included) unless said
/// otherwise; the builder expands them with [`expand`] (or [`expand_words`] for
/// `EXPOSE`, [`expand_heredoc`] for heredoc bodies that have `expand` set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `RUN`.
    Run {
        /// The command. With heredocs: when the command was nothing but one heredoc
        /// (`RUN <<EOF`) it is `Shell` holding that body, which BuildKit writes to a
        /// file and executes directly instead when it starts with `#!`; otherwise it
        /// is the command line followed by each body and terminator, so the shell
        /// itself feeds them to the command (`RUN python3 <<EOF`).
        cmd: Command,
        /// The raw `--mount=` values, in order.
        mounts: Vec<String>,
        /// `--network=`: `default`, `none` or `host`.
        network: Option<String>,
        /// The here-documents that followed the line, in order.
        heredocs: Vec<Heredoc>,
    },
    /// `CMD`.
    Cmd(Command),
    /// `ENTRYPOINT`.
    Entrypoint(Command),
    /// `ENV` pairs, names and values unexpanded.
    Env(Vec<(String, String)>),
    /// `ARG` declarations.
    Arg(Vec<Arg>),
    /// `LABEL` pairs, keys and values unexpanded.
    Label(Vec<(String, String)>),
    /// `EXPOSE` port specs, sorted as BuildKit sorts them, each to go through
    /// [`expand_words`].
    Expose(Vec<String>),
    /// `WORKDIR`.
    Workdir(String),
    /// `USER`.
    User(String),
    /// `COPY`.
    Copy(CopyArgs),
    /// `ADD` (`from` is always `None`).
    Add(CopyArgs),
    /// `VOLUME` paths.
    Volume(Vec<String>),
    /// `STOPSIGNAL`.
    StopSignal(String),
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
    /// `SHELL`, from its JSON array; never expanded.
    Shell(Vec<String>),
    /// `ONBUILD`: the trigger, parsed. Its `original` is the text stored in the image
    /// config's `OnBuild` list.
    Onbuild(Box<Instruction>),
    /// `MAINTAINER`.
    Maintainer(String),
}

/// A command of `RUN`, `CMD`, `ENTRYPOINT` or `HEALTHCHECK CMD`. Never expanded by the
/// builder: in shell form the shell does that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Shell form: the text handed to `SHELL` (default `/bin/sh -c`).
    Shell(String),
    /// Exec form: the JSON array.
    Exec(Vec<String>),
}

/// An `ARG` declaration, unexpanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    /// The name.
    pub name: String,
    /// The default value, when given (`ARG a=` gives an empty one).
    pub default: Option<String>,
}

/// Arguments of `COPY` and `ADD`, unexpanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyArgs {
    /// The source paths (heredoc sources are in `heredocs` instead).
    pub sources: Vec<String>,
    /// The destination.
    pub dest: String,
    /// `--from=`.
    pub from: Option<String>,
    /// `--chown=`.
    pub chown: Option<String>,
    /// `--chmod=`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// Files to create from heredocs, each named after its delimiter.
    pub heredocs: Vec<Heredoc>,
}

/// A here-document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter, quotes removed; also the file name for `COPY`/`ADD`.
    pub name: String,
    /// The body with its line endings, leading tabs already removed for `<<-`.
    pub content: String,
    /// False when the delimiter was quoted: the body is then taken literally.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body and the terminator line.
    pub strip_tabs: bool,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    /// `HEALTHCHECK [flags] CMD ...`; durations are Go duration strings, validated.
    Cmd {
        /// The test command.
        test: Command,
        /// `--interval=`.
        interval: Option<String>,
        /// `--timeout=`.
        timeout: Option<String>,
        /// `--start-period=`.
        start_period: Option<String>,
        /// `--start-interval=`.
        start_interval: Option<String>,
        /// `--retries=`, at least 1.
        retries: Option<u32>,
    },
}

/// A Dockerfile error with the 1-based line and column of the offending token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Dockerfile:{line}:{column}: {message}")]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses a Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut directives = DirectiveParser::default();
    let mut nodes = Vec::new();
    let mut next = 0;
    while next < lines.len() {
        let number = next + 1;
        let raw = trim_newline(lines[next]);
        next += 1;
        let body = raw.trim_start();
        directives.feed(body, number)?;
        let escape = directives.found.escape;
        let first = if is_comment(body) { "" } else { body };
        let (first, mut continued) = trim_continuation(first, escape);
        if !continued && first.is_empty() {
            continue;
        }
        let mut logical = Logical::default();
        logical.push(
            first,
            number,
            raw.chars().count() - body.chars().count() + 1,
        );
        while continued && next < lines.len() {
            let line = trim_newline(lines[next]);
            let number = next + 1;
            next += 1;
            if is_comment(line) || line.trim_start().is_empty() {
                continue;
            }
            let (part, more) = trim_continuation(line, escape);
            logical.push(part, number, 1);
            continued = more;
        }
        if logical.text.trim().is_empty() {
            continue;
        }
        let mut node = parse_node(&logical, 0, logical.text.len(), escape)?;
        if node.can_contain_heredoc() && logical.text.contains("<<") {
            let docs = heredocs_in_line(&logical.text).map_err(|e| node.pos.err(e))?;
            for mut doc in docs {
                let mut terminated = false;
                while next < lines.len() {
                    let line = lines[next];
                    next += 1;
                    let mut candidate = trim_newline(line);
                    if doc.strip_tabs {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(line);
                }
                if !terminated {
                    return Err(node.pos.err("unterminated heredoc"));
                }
                node.heredocs.push(doc);
            }
        }
        nodes.push(node);
    }

    let Some(first) = nodes.first() else {
        let end = Pos {
            line: lines.len().max(1),
            col: 1,
        };
        return Err(end.err("file with no instructions"));
    };
    let mut args_before_from = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for node in &nodes {
        match convert(node, &node.heredocs)? {
            Converted::Stage(stage) => stages.push(stage),
            Converted::Instruction(instruction) => match stages.last_mut() {
                Some(stage) => stage.instructions.push(instruction),
                None => match instruction.kind {
                    Kind::Arg(args) => args_before_from.extend(args),
                    _ => return Err(node.pos.err("no build stage in current context")),
                },
            },
        }
    }
    if stages.is_empty() {
        return Err(first.pos.err("dockerfile contains no stages to build"));
    }
    Ok(Dockerfile {
        directives: directives.found,
        args_before_from,
        stages,
    })
}

/// Expands $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:+alt}, ${VAR+alt},
/// ${VAR:?msg}, ${VAR?msg}, ${VAR#pat}, ${VAR##pat}, ${VAR%pat}, ${VAR%%pat},
/// ${VAR/pat/repl} and ${VAR//pat/repl} in one word, and removes quotes and escapes
/// (escape char `escape`; single quotes protect everything), as BuildKit's shell lexer
/// does for ENV, ARG, LABEL, COPY, ADD, WORKDIR, USER, VOLUME, STOPSIGNAL and FROM.
/// Not for RUN, CMD or ENTRYPOINT, whose shell expands. `vars` returns `None` for an
/// unset variable, which the `-`, `+` and `?` forms tell apart from an empty one.
pub fn expand(
    word: &str,
    vars: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<String, String> {
    lex(word, escape, LexOptions::default(), vars).map(|(word, _)| word)
}

/// Like [`expand`], then splits the result into words at whitespace outside quotes
/// (text that came from a variable is split too, quoted text is not), as BuildKit
/// does for each `EXPOSE` argument.
pub fn expand_words(
    word: &str,
    vars: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<Vec<String>, String> {
    lex(word, escape, LexOptions::default(), vars).map(|(_, words)| words)
}

/// Expands variables in a heredoc body whose delimiter was unquoted, as BuildKit does
/// for `COPY`/`ADD` heredocs: quotes are ordinary text there and the escape character
/// is always `\`, whatever `# escape=` says.
pub fn expand_heredoc(
    content: &str,
    vars: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let options = LexOptions {
        skip_quotes: true,
        ..LexOptions::default()
    };
    lex(content, '\\', options, vars).map(|(text, _)| text)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Pos {
    line: usize,
    col: usize,
}

impl Pos {
    fn err(self, message: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line,
            column: self.col,
            message: message.into(),
        }
    }
}

/// One instruction's text with continuations joined, remembering where each byte came
/// from so that errors point into the file rather than into the joined line.
#[derive(Default)]
struct Logical {
    text: String,
    pos: Vec<Pos>,
    end: Pos,
}

impl Logical {
    fn push(&mut self, part: &str, line: usize, first_col: usize) {
        let mut col = first_col;
        for ch in part.chars() {
            self.pos
                .extend(std::iter::repeat_n(Pos { line, col }, ch.len_utf8()));
            self.text.push(ch);
            col += 1;
        }
        self.end = Pos { line, col };
    }

    fn at(&self, offset: usize) -> Pos {
        self.pos.get(offset).copied().unwrap_or(self.end)
    }
}

#[derive(Default)]
struct DirectiveParser {
    done: bool,
    escape_seen: bool,
    found: Directives,
}

impl DirectiveParser {
    /// Looks at a line (leading whitespace removed) while directives may still come:
    /// anything that is not a known directive ends them, as in BuildKit.
    fn feed(&mut self, line: &str, number: usize) -> Result<(), ParseError> {
        if self.done {
            return Ok(());
        }
        let Some((name, value)) = line.strip_prefix('#').and_then(directive) else {
            self.done = true;
            return Ok(());
        };
        let name = name.to_ascii_lowercase();
        let pos = Pos {
            line: number,
            col: 1,
        };
        let seen = match name.as_str() {
            "escape" => self.escape_seen,
            "syntax" => self.found.syntax.is_some(),
            "check" => self.found.check.is_some(),
            _ => {
                self.done = true;
                return Ok(());
            }
        };
        if seen {
            return Err(pos.err(format!("only one {name} parser directive can be used")));
        }
        match name.as_str() {
            "escape" => {
                self.escape_seen = true;
                self.found.escape = match value {
                    "`" => '`',
                    "\\" => '\\',
                    _ => {
                        return Err(pos.err(format!(
                            "invalid escape token '{value}' does not match ` or \\"
                        )))
                    }
                };
            }
            "syntax" => self.found.syntax = Some(value.to_string()),
            _ => self.found.check = Some(value.to_string()),
        }
        Ok(())
    }
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            escape: '\\',
            syntax: None,
            check: None,
        }
    }
}

/// BuildKit's `^\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` on the text after `#`.
fn directive(text: &str) -> Option<(&str, &str)> {
    let is_space = |c: char| matches!(c, '\t' | '\n' | '\u{c}' | '\r' | ' ');
    let text = text.trim_start_matches(is_space);
    if !text.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let name_len = text
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(text.len());
    let (name, rest) = text.split_at(name_len);
    let after = rest.trim_start_matches(is_space).strip_prefix('=')?;
    let value = after.trim_start_matches(is_space);
    let value = match value.trim_end_matches(is_space) {
        // `(.+?)` needs a character, so an all-blank value keeps its last blank.
        "" => after.get(after.len().checked_sub(1)?..)?,
        trimmed => trimmed,
    };
    Some((name, value))
}

fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Removes a trailing escape character (and blanks after it) that continues the line.
/// Like BuildKit's regular expression, an escape preceded by another escape does not
/// continue the line.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    match trimmed.strip_suffix(escape) {
        Some(before) if !before.ends_with(escape) => (before, true),
        _ => (line, false),
    }
}

/// The separators of BuildKit's `[\t\v\f\r ]+`, which splits a keyword from its
/// arguments and whitespace-delimited arguments from each other.
fn is_split_space(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

fn trim_span(text: &str, start: usize, end: usize, pred: fn(char) -> bool) -> (usize, usize) {
    let slice = &text[start..end];
    let from = start + (slice.len() - slice.trim_start_matches(pred).len());
    let to = start + slice.trim_end_matches(pred).len();
    (from, to.max(from))
}

#[derive(Debug, Clone)]
struct Word {
    text: String,
    pos: Pos,
}

/// An instruction after the first pass: arguments split as BuildKit's line parser for
/// the keyword splits them, nothing validated yet.
struct Node {
    keyword: String,
    pos: Pos,
    flags: Vec<Word>,
    args: Vec<Word>,
    json: bool,
    child: Option<Box<Node>>,
    original: String,
    /// Bodies as read, tabs not yet stripped.
    heredocs: Vec<Heredoc>,
}

fn parse_node(src: &Logical, start: usize, end: usize, escape: char) -> Result<Node, ParseError> {
    let (start, end) = trim_span(&src.text, start, end, char::is_whitespace);
    let line = &src.text[start..end];
    let keyword_len = line.find(is_split_space).unwrap_or(line.len());
    let (rest, _) = trim_span(&src.text, start + keyword_len, end, is_split_space);
    let (flags, args_start) = extract_flags(src, rest, end);
    let (s, e) = trim_span(&src.text, args_start, end, char::is_whitespace);
    let mut node = Node {
        keyword: line[..keyword_len].to_string(),
        pos: src.at(start),
        flags,
        args: Vec::new(),
        json: false,
        child: None,
        original: line.to_string(),
        heredocs: Vec::new(),
    };
    match node.keyword.to_ascii_lowercase().as_str() {
        "add" | "copy" | "volume" => (node.args, node.json) = json_or_list(src, s, e)?,
        "cmd" | "entrypoint" | "run" | "shell" => (node.args, node.json) = json_or_text(src, s, e)?,
        "env" | "label" => node.args = name_values(src, s, e, escape, &node.keyword)?,
        "arg" => node.args = quoted_words(src, s, e, escape),
        "expose" | "from" => node.args = split_spaces(src, s, e),
        "healthcheck" => (node.args, node.json) = health_args(src, s, e)?,
        "maintainer" | "stopsignal" | "user" | "workdir" => node.args = whole(src, s, e),
        "onbuild" if s < e => node.child = Some(Box::new(parse_node(src, s, e, escape)?)),
        _ => {}
    }
    Ok(node)
}

impl Node {
    fn can_contain_heredoc(&self) -> bool {
        let node = match &self.child {
            Some(child) if self.keyword.eq_ignore_ascii_case("onbuild") => child,
            _ => self,
        };
        !node.json
            && ["run", "copy", "add"]
                .iter()
                .any(|k| node.keyword.eq_ignore_ascii_case(k))
    }
}

/// BuildKit's `extractBuilderFlags`: leading `--words` (quotes removed, `\` escaping)
/// until the first word that does not start with `--`, or a lone `--`. Returns the
/// flags and where the arguments start.
fn extract_flags(src: &Logical, start: usize, end: usize) -> (Vec<Word>, usize) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let chars: Vec<(usize, char)> = src.text[start..end]
        .char_indices()
        .map(|(i, c)| (start + i, c))
        .collect();
    let mut flags = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut word_pos = Pos::default();
    let mut blank_ok = false;
    let mut i = 0;
    while i < chars.len() {
        let (offset, mut ch) = chars[i];
        match phase {
            Phase::Spaces => {
                if ch.is_whitespace() {
                    i += 1;
                    continue;
                }
                if ch != '-' || chars.get(i + 1).map(|c| c.1) != Some('-') {
                    return (flags, offset);
                }
                // Not advancing: the next round reads this character into the word.
                phase = Phase::Word;
                word_pos = src.at(offset);
            }
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (flags, offset);
                    }
                    if blank_ok || !word.is_empty() {
                        flags.push(Word {
                            text: std::mem::take(&mut word),
                            pos: word_pos,
                        });
                    }
                    blank_ok = false;
                    i += 1;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                    i += 1;
                    continue;
                }
                if ch == '\\' {
                    i += 1;
                    match chars.get(i) {
                        Some(&(_, next)) => ch = next,
                        None => continue,
                    }
                }
                word.push(ch);
                i += 1;
                continue;
            }
            Phase::Quote(quote) => {
                i += 1;
                if ch == quote {
                    phase = Phase::Word;
                    continue;
                }
                if ch == '\\' {
                    match chars.get(i) {
                        Some(&(_, next)) => {
                            ch = next;
                            i += 1;
                        }
                        None => {
                            phase = Phase::Word;
                            continue;
                        }
                    }
                }
                word.push(ch);
                continue;
            }
        }
    }
    if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
        flags.push(Word {
            text: word,
            pos: word_pos,
        });
    }
    (flags, end)
}

fn whole(src: &Logical, s: usize, e: usize) -> Vec<Word> {
    if s == e {
        return Vec::new();
    }
    vec![Word {
        text: src.text[s..e].to_string(),
        pos: src.at(s),
    }]
}

fn split_spaces(src: &Logical, s: usize, e: usize) -> Vec<Word> {
    let mut words = Vec::new();
    let mut start = None;
    for (i, ch) in src.text[s..e].char_indices().chain([(e - s, ' ')]) {
        match (start, is_split_space(ch)) {
            (Some(from), true) => {
                words.push(Word {
                    text: src.text[s + from..s + i].to_string(),
                    pos: src.at(s + from),
                });
                start = None;
            }
            (None, false) => start = Some(i),
            _ => {}
        }
    }
    words
}

const NOT_STRINGS: &str = "when using JSON array syntax, arrays must be comprised of strings only";

/// `parseMaybeJSON`: a JSON array of strings, or else the whole text as one word.
fn json_or_text(src: &Logical, s: usize, e: usize) -> Result<(Vec<Word>, bool), ParseError> {
    if s == e {
        return Ok((Vec::new(), false));
    }
    match json_array(&src.text[s..e]) {
        JsonArray::Strings(items) => Ok((json_words(src, s, items), true)),
        JsonArray::NotStrings => Err(src.at(s).err(NOT_STRINGS)),
        JsonArray::Invalid => Ok((whole(src, s, e), false)),
    }
}

/// `parseMaybeJSONToList`: a JSON array of strings, or else whitespace-separated words
/// (quotes are not special there, exactly as in BuildKit).
fn json_or_list(src: &Logical, s: usize, e: usize) -> Result<(Vec<Word>, bool), ParseError> {
    match json_array(&src.text[s..e]) {
        JsonArray::Strings(items) => Ok((json_words(src, s, items), true)),
        JsonArray::NotStrings => Err(src.at(s).err(NOT_STRINGS)),
        JsonArray::Invalid => Ok((split_spaces(src, s, e), false)),
    }
}

fn json_words(src: &Logical, s: usize, items: Vec<String>) -> Vec<Word> {
    items
        .into_iter()
        .map(|text| Word {
            text,
            pos: src.at(s),
        })
        .collect()
}

/// `HEALTHCHECK`: the type word, then the command as `parseMaybeJSON` reads it.
fn health_args(src: &Logical, s: usize, e: usize) -> Result<(Vec<Word>, bool), ParseError> {
    if s == e {
        return Ok((Vec::new(), false));
    }
    let text = &src.text[s..e];
    let sep = text.find(char::is_whitespace).unwrap_or(text.len());
    let (rest, _) = trim_span(&src.text, s + sep, e, char::is_whitespace);
    let (mut cmd, json) = json_or_text(src, rest, e)?;
    let mut args = whole(src, s, s + sep);
    args.append(&mut cmd);
    Ok((args, json))
}

/// BuildKit's `parseWords`: splits at whitespace outside quotes, keeping quotes and
/// escapes in the words for the later expansion to remove.
fn quoted_words(src: &Logical, s: usize, e: usize, escape: char) -> Vec<Word> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let chars: Vec<(usize, char)> = src.text[s..e]
        .char_indices()
        .map(|(i, c)| (s + i, c))
        .collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut word_pos = Pos::default();
    let mut blank_ok = false;
    let mut i = 0;
    while i < chars.len() {
        let (offset, mut ch) = chars[i];
        i += 1;
        match phase {
            Phase::Spaces if ch.is_whitespace() => continue,
            Phase::Spaces => {
                phase = Phase::Word;
                word_pos = src.at(offset);
            }
            Phase::Word if ch.is_whitespace() => {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(Word {
                        text: std::mem::take(&mut word),
                        pos: word_pos,
                    });
                }
                blank_ok = false;
                continue;
            }
            _ => {}
        }
        match phase {
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                } else if ch == escape && quote != '\'' {
                    let Some(&(_, next)) = chars.get(i) else {
                        phase = Phase::Word;
                        continue;
                    };
                    word.push(ch);
                    ch = next;
                    i += 1;
                }
            }
            _ => {
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                } else if ch == escape {
                    let Some(&(_, next)) = chars.get(i) else {
                        continue;
                    };
                    word.push(ch);
                    ch = next;
                    i += 1;
                }
            }
        }
        word.push(ch);
    }
    if phase != Phase::Spaces && (blank_ok || !word.is_empty()) {
        words.push(Word {
            text: word,
            pos: word_pos,
        });
    }
    words
}

/// `ENV`/`LABEL` arguments as alternating key and value words: `k=v ...`, or the
/// legacy `k value with spaces` when the first word has no `=`.
fn name_values(
    src: &Logical,
    s: usize,
    e: usize,
    escape: char,
    keyword: &str,
) -> Result<Vec<Word>, ParseError> {
    let words = quoted_words(src, s, e, escape);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.text.contains('=') {
        let text = &src.text[s..e];
        let Some(sep) = text.find(is_split_space) else {
            let message = format!("{} must have two arguments", keyword.to_ascii_uppercase());
            return Err(src.at(s).err(message));
        };
        let (value, _) = trim_span(&src.text, s + sep, e, is_split_space);
        return Ok(vec![
            Word {
                text: text[..sep].to_string(),
                pos: src.at(s),
            },
            Word {
                text: src.text[value..e].to_string(),
                pos: src.at(value),
            },
        ]);
    }
    let mut pairs = Vec::new();
    for word in words {
        let Some((key, value)) = word.text.split_once('=') else {
            return Err(word.pos.err(format!(
                "Syntax error - can't find = in {:?}. Must be of the form: name=value",
                word.text
            )));
        };
        pairs.push(Word {
            text: key.to_string(),
            pos: word.pos,
        });
        pairs.push(Word {
            text: value.to_string(),
            pos: word.pos,
        });
    }
    Ok(pairs)
}

/// The heredocs a line introduces, found the way BuildKit finds them: the whole line is
/// split into shell words (escape always `\`) and each `[n]<<[-]WORD` is one.
fn heredocs_in_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let options = LexOptions {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset: true,
        ..LexOptions::default()
    };
    let words = lex(line, '\\', options, &|_| None)
        .map(|(_, words)| words)
        .unwrap_or_default();
    words
        .iter()
        .filter_map(|word| heredoc_word(word).transpose())
        .collect()
}

/// Reads `[n]<<[-]WORD`. The body expands unless some part of WORD is quoted.
fn heredoc_word(word: &str) -> Result<Option<Heredoc>, String> {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let Some(rest) = rest.strip_prefix("<<") else {
        return Ok(None);
    };
    let (strip_tabs, rest) = match rest.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let options = LexOptions {
        skip_unset: true,
        ..LexOptions::default()
    };
    let (_, words) = lex(rest, '\\', options, &|_| None)?;
    let [name] = words.as_slice() else {
        return Ok(None);
    };
    let raw_options = LexOptions {
        raw_quotes: true,
        ..options
    };
    let (_, raw) = lex(rest, '\\', raw_options, &|_| None)?;
    let [raw] = raw.as_slice() else {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    };
    let quotes = |s: &str| s.chars().filter(|c| matches!(c, '\'' | '"')).count();
    Ok(Some(Heredoc {
        name: name.clone(),
        content: String::new(),
        expand: quotes(name) == quotes(raw),
        strip_tabs,
    }))
}

fn strip_leading_tabs(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|line| line.trim_start_matches('\t'))
        .collect()
}

impl Heredoc {
    fn stripped(&self) -> Heredoc {
        let mut doc = self.clone();
        if doc.strip_tabs {
            doc.content = strip_leading_tabs(&doc.content);
        }
        doc
    }
}

fn with_heredocs(text: &str, heredocs: &[Heredoc]) -> String {
    let mut out = text.to_string();
    for doc in heredocs {
        out.push('\n');
        out.push_str(&doc.content);
        out.push_str(&doc.name);
    }
    out
}

enum Converted {
    Stage(Stage),
    Instruction(Instruction),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flag {
    Bool,
    Text,
    List,
    /// A BuildKit flag this builder does not implement: refused by name rather than
    /// as unknown.
    Unsupported,
}

const COPY_FLAGS: &[(&str, Flag)] = &[
    ("from", Flag::Text),
    ("chown", Flag::Text),
    ("chmod", Flag::Text),
    ("link", Flag::Bool),
    ("parents", Flag::Unsupported),
    ("exclude", Flag::Unsupported),
];

const ADD_FLAGS: &[(&str, Flag)] = &[
    ("chown", Flag::Text),
    ("chmod", Flag::Text),
    ("link", Flag::Bool),
    ("keep-git-dir", Flag::Unsupported),
    ("checksum", Flag::Unsupported),
    ("exclude", Flag::Unsupported),
    ("unpack", Flag::Unsupported),
];

const RUN_FLAGS: &[(&str, Flag)] = &[
    ("mount", Flag::List),
    ("network", Flag::Text),
    ("security", Flag::Unsupported),
    ("device", Flag::Unsupported),
];

const HEALTHCHECK_FLAGS: &[(&str, Flag)] = &[
    ("interval", Flag::Text),
    ("timeout", Flag::Text),
    ("start-period", Flag::Text),
    ("start-interval", Flag::Text),
    ("retries", Flag::Text),
];

struct FlagValues(HashMap<&'static str, Vec<String>>);

impl FlagValues {
    /// The last value; an empty one counts as unset, as in BuildKit.
    fn text(&self, name: &str) -> Option<String> {
        self.0
            .get(name)
            .and_then(|values| values.last())
            .filter(|value| !value.is_empty())
            .cloned()
    }

    fn list(&self, name: &str) -> Vec<String> {
        self.0.get(name).cloned().unwrap_or_default()
    }
}

impl Node {
    /// BuildKit's `BFlags.Parse`.
    fn parse_flags(&self, specs: &[(&'static str, Flag)]) -> Result<FlagValues, ParseError> {
        let mut values: HashMap<&'static str, Vec<String>> = HashMap::new();
        for word in &self.flags {
            let arg = word.text.as_str();
            if arg == "--" {
                break;
            }
            let Some(body) = arg.strip_prefix("--") else {
                return Err(word.pos.err(format!("arg should start with -- : {arg}")));
            };
            let (name, value) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (body, None),
            };
            let Some(&(key, kind)) = specs.iter().find(|(spec, _)| *spec == name) else {
                return Err(word.pos.err(format!("unknown flag: --{name}")));
            };
            if kind == Flag::Unsupported {
                let keyword = self.keyword.to_ascii_uppercase();
                return Err(word
                    .pos
                    .err(format!("{keyword} --{name} is not supported by berth-img")));
            }
            let seen = values.entry(key).or_default();
            if !seen.is_empty() && kind != Flag::List {
                return Err(word.pos.err(format!("duplicate flag specified: --{name}")));
            }
            let value = match (kind, value) {
                (Flag::Bool, None) => "true".to_string(),
                (Flag::Bool, Some(value)) if !value.is_empty() => {
                    match value.to_lowercase().as_str() {
                        "true" => "true".to_string(),
                        "false" => "false".to_string(),
                        _ => {
                            return Err(word.pos.err(format!(
                                "expecting boolean value for flag --{name}, not: {value}"
                            )))
                        }
                    }
                }
                (Flag::Text | Flag::List, Some(value)) => value.to_string(),
                _ => return Err(word.pos.err(format!("missing a value on flag: --{name}"))),
            };
            seen.push(value);
        }
        Ok(FlagValues(values))
    }

    fn flag_pos(&self, name: &str) -> Pos {
        let prefix = format!("--{name}");
        self.flags
            .iter()
            .find(|word| word.text.starts_with(&prefix))
            .map_or(self.pos, |word| word.pos)
    }

    fn texts(&self) -> Vec<String> {
        self.args.iter().map(|word| word.text.clone()).collect()
    }

    fn exactly_one(&self, keyword: &str) -> Result<String, ParseError> {
        match self.args.as_slice() {
            [arg] => Ok(arg.text.clone()),
            _ => Err(self
                .pos
                .err(format!("{keyword} requires exactly one argument"))),
        }
    }

    fn at_least_one(&self, keyword: &str) -> Result<(), ParseError> {
        if self.args.is_empty() {
            return Err(self
                .pos
                .err(format!("{keyword} requires at least one argument")));
        }
        Ok(())
    }

    fn command(&self) -> Command {
        if self.json {
            Command::Exec(self.texts())
        } else {
            Command::Shell(self.args.first().map_or(String::new(), |w| w.text.clone()))
        }
    }

    fn pairs(&self, keyword: &str) -> Result<Vec<(String, String)>, ParseError> {
        self.at_least_one(keyword)?;
        if !self.args.len().is_multiple_of(2) {
            let message = format!("Bad input to {keyword}, too many arguments");
            return Err(self.pos.err(message));
        }
        self.args
            .chunks(2)
            .map(|pair| {
                if pair[0].text.is_empty() {
                    return Err(pair[0].pos.err(format!("{keyword} names can not be blank")));
                }
                Ok((pair[0].text.clone(), pair[1].text.clone()))
            })
            .collect()
    }
}

fn convert(node: &Node, heredocs: &[Heredoc]) -> Result<Converted, ParseError> {
    let kind = match node.keyword.to_ascii_lowercase().as_str() {
        "from" => return from_stage(node).map(Converted::Stage),
        "env" => {
            node.parse_flags(&[])?;
            Kind::Env(node.pairs("ENV")?)
        }
        "label" => {
            node.parse_flags(&[])?;
            Kind::Label(node.pairs("LABEL")?)
        }
        "maintainer" => {
            let name = node.exactly_one("MAINTAINER")?;
            node.parse_flags(&[])?;
            Kind::Maintainer(name)
        }
        "workdir" => {
            let dir = node.exactly_one("WORKDIR")?;
            node.parse_flags(&[])?;
            Kind::Workdir(dir)
        }
        "user" => {
            let user = node.exactly_one("USER")?;
            node.parse_flags(&[])?;
            Kind::User(user)
        }
        // BuildKit never parses STOPSIGNAL's or ARG's flags, so it ignores them.
        "stopsignal" => Kind::StopSignal(node.exactly_one("STOPSIGNAL")?),
        "arg" => {
            node.at_least_one("ARG")?;
            Kind::Arg(args(node)?)
        }
        "add" => Kind::Add(copy_args(node, heredocs, "ADD", ADD_FLAGS)?),
        "copy" => Kind::Copy(copy_args(node, heredocs, "COPY", COPY_FLAGS)?),
        "run" => run(node, heredocs)?,
        "cmd" => {
            node.parse_flags(&[])?;
            Kind::Cmd(node.command())
        }
        "entrypoint" => {
            node.parse_flags(&[])?;
            Kind::Entrypoint(node.command())
        }
        "healthcheck" => Kind::Healthcheck(healthcheck(node)?),
        "expose" => {
            node.at_least_one("EXPOSE")?;
            node.parse_flags(&[])?;
            let mut ports = node.texts();
            ports.sort();
            Kind::Expose(ports)
        }
        "volume" => {
            node.at_least_one("VOLUME")?;
            node.parse_flags(&[])?;
            let mut volumes = Vec::new();
            for word in &node.args {
                let volume = word.text.trim();
                if volume.is_empty() {
                    return Err(word.pos.err("VOLUME specified can not be an empty string"));
                }
                volumes.push(volume.to_string());
            }
            Kind::Volume(volumes)
        }
        "shell" => {
            node.parse_flags(&[])?;
            node.at_least_one("SHELL")?;
            if !node.json {
                return Err(node.pos.err(not_json("SHELL", &node.original)));
            }
            Kind::Shell(node.texts())
        }
        "onbuild" => onbuild(node, heredocs)?,
        _ => {
            let message = format!("unknown instruction: {}", node.keyword);
            return Err(node.pos.err(message));
        }
    };
    Ok(Converted::Instruction(Instruction {
        line: node.pos.line,
        original: with_heredocs(&node.original, heredocs),
        kind,
    }))
}

fn from_stage(node: &Node) -> Result<Stage, ParseError> {
    let name = match node.args.as_slice() {
        [_, as_word, name] if as_word.text.eq_ignore_ascii_case("as") => {
            let lowered = name.text.to_lowercase();
            if !valid_stage_name(&lowered) {
                return Err(name.pos.err(format!(
                    "invalid name for build stage: {:?}, name can't start with a number or contain symbols",
                    name.text
                )));
            }
            Some(lowered)
        }
        [_] => None,
        _ => return Err(node.pos.err("FROM requires either one or three arguments")),
    };
    let flags = node.parse_flags(&[("platform", Flag::Text)])?;
    Ok(Stage {
        base: node.args[0].text.clone(),
        name,
        platform: flags.text("platform"),
        line: node.pos.line,
        instructions: Vec::new(),
    })
}

/// `^[a-z][a-z0-9-_.]*$`
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

fn args(node: &Node) -> Result<Vec<Arg>, ParseError> {
    node.args
        .iter()
        .map(|word| match word.text.split_once('=') {
            Some(("", _)) => Err(word.pos.err("ARG names can not be blank")),
            Some((name, value)) => Ok(Arg {
                name: name.to_string(),
                default: Some(value.to_string()),
            }),
            None => Ok(Arg {
                name: word.text.clone(),
                default: None,
            }),
        })
        .collect()
}

fn copy_args(
    node: &Node,
    heredocs: &[Heredoc],
    keyword: &str,
    specs: &[(&'static str, Flag)],
) -> Result<CopyArgs, ParseError> {
    let Some((dest, sources)) = node.args.split_last().filter(|(_, s)| !s.is_empty()) else {
        return Err(node.pos.err(format!(
            "{keyword} requires at least two arguments, but only one was provided. Destination could not be determined"
        )));
    };
    let flags = node.parse_flags(specs)?;
    if let Ok(Some(_)) = heredoc_word(&dest.text) {
        let message = format!("{keyword} cannot accept a heredoc as a destination");
        return Err(dest.pos.err(message));
    }
    // Later bodies with the same name win, as with BuildKit's map.
    let bodies: HashMap<&str, &str> = heredocs
        .iter()
        .map(|doc| (doc.name.as_str(), doc.content.as_str()))
        .collect();
    let mut paths = Vec::new();
    let mut docs = Vec::new();
    for source in sources {
        match heredoc_word(&source.text) {
            Ok(Some(mut doc)) => {
                doc.content = bodies.get(doc.name.as_str()).unwrap_or(&"").to_string();
                docs.push(doc.stripped());
            }
            _ => paths.push(source.text.clone()),
        }
    }
    Ok(CopyArgs {
        sources: paths,
        dest: dest.text.clone(),
        from: flags.text("from"),
        chown: flags.text("chown"),
        chmod: flags.text("chmod"),
        link: flags.text("link").as_deref() == Some("true"),
        heredocs: docs,
    })
}

fn run(node: &Node, heredocs: &[Heredoc]) -> Result<Kind, ParseError> {
    let flags = node.parse_flags(RUN_FLAGS)?;
    // BuildKit would run a bare `sh -c` and fail; failing here says why.
    node.at_least_one("RUN")?;
    let network = flags.text("network");
    if let Some(mode) = &network {
        if !matches!(mode.as_str(), "default" | "none" | "host") {
            let message = format!("invalid network mode {mode:?}");
            return Err(node.flag_pos("network").err(message));
        }
    }
    let cmd = match node.command() {
        Command::Shell(line) if !heredocs.is_empty() => {
            if let Ok(Some(_)) = heredoc_word(&line) {
                Command::Shell(heredocs[0].stripped().content)
            } else {
                Command::Shell(with_heredocs(&line, heredocs))
            }
        }
        cmd => cmd,
    };
    Ok(Kind::Run {
        cmd,
        mounts: flags.list("mount"),
        network,
        heredocs: heredocs.iter().map(Heredoc::stripped).collect(),
    })
}

fn healthcheck(node: &Node) -> Result<Healthcheck, ParseError> {
    node.at_least_one("HEALTHCHECK")?;
    let kind = node.args[0].text.to_uppercase();
    if kind == "NONE" {
        // BuildKit does not look at the flags of HEALTHCHECK NONE.
        if node.args.len() != 1 {
            return Err(node.args[1].pos.err("HEALTHCHECK NONE takes no arguments"));
        }
        return Ok(Healthcheck::None);
    }
    let flags = node.parse_flags(HEALTHCHECK_FLAGS)?;
    if kind != "CMD" {
        let message = format!("Unknown type {kind:?} in HEALTHCHECK (try CMD)");
        return Err(node.args[0].pos.err(message));
    }
    let command = &node.args[1..];
    if command.is_empty() {
        return Err(node.pos.err("Missing command after HEALTHCHECK CMD"));
    }
    let test = if node.json {
        Command::Exec(command.iter().map(|w| w.text.clone()).collect())
    } else {
        Command::Shell(command[0].text.clone())
    };
    let duration = |name: &'static str| -> Result<Option<String>, ParseError> {
        let Some(value) = flags.text(name) else {
            return Ok(None);
        };
        let pos = node.flag_pos(name);
        let nanos = go_duration(&value).map_err(|e| pos.err(e))?;
        if nanos < 1_000_000.0 {
            return Err(pos.err(format!("Interval {name:?} cannot be less than 1ms")));
        }
        Ok(Some(value))
    };
    let retries = match flags.text("retries") {
        None => None,
        Some(value) => {
            let pos = node.flag_pos("retries");
            let retries: i32 = value.parse().map_err(|e: std::num::ParseIntError| {
                let reason = match e.kind() {
                    std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                        "value out of range"
                    }
                    _ => "invalid syntax",
                };
                pos.err(format!("strconv.ParseInt: parsing {value:?}: {reason}"))
            })?;
            if retries < 1 {
                let message = format!("--retries must be at least 1 (not {retries})");
                return Err(pos.err(message));
            }
            Some(retries.unsigned_abs())
        }
    };
    Ok(Healthcheck::Cmd {
        test,
        interval: duration("interval")?,
        timeout: duration("timeout")?,
        start_period: duration("start-period")?,
        start_interval: duration("start-interval")?,
        retries,
    })
}

/// Go's `time.ParseDuration`, in nanoseconds.
fn go_duration(text: &str) -> Result<f64, String> {
    let invalid = || format!("time: invalid duration {text:?}");
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0.0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    let mut total = 0.0;
    while !rest.is_empty() {
        let whole = &rest[..digits(rest)];
        rest = &rest[whole.len()..];
        let mut fraction = "";
        if let Some(after) = rest.strip_prefix('.') {
            fraction = &after[..digits(after)];
            rest = &after[fraction.len()..];
        }
        if whole.is_empty() && fraction.is_empty() {
            return Err(invalid());
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let scale = match unit {
            "" => return Err(format!("time: missing unit in duration {text:?}")),
            "ns" => 1.0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(format!("time: unknown unit {unit:?} in duration {text:?}")),
        };
        let number: f64 = format!("0{whole}.{fraction}0")
            .parse()
            .map_err(|_| invalid())?;
        total += number * scale;
        rest = &rest[unit_len..];
    }
    Ok(if negative { -total } else { total })
}

fn onbuild(node: &Node, heredocs: &[Heredoc]) -> Result<Kind, ParseError> {
    let Some(child) = &node.child else {
        return Err(node.pos.err("ONBUILD requires at least one argument"));
    };
    node.parse_flags(&[])?;
    let trigger = child.keyword.to_ascii_uppercase();
    let refused = |trigger: &str| {
        child
            .pos
            .err(format!("{trigger} isn't allowed as an ONBUILD trigger"))
    };
    match trigger.as_str() {
        "ONBUILD" => {
            let message = "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed";
            return Err(child.pos.err(message));
        }
        "MAINTAINER" | "FROM" => return Err(refused(&trigger)),
        _ => {}
    }
    // BuildKit checks a trigger only when a child image runs it; parsing it now
    // reports a broken trigger in the image that declares it.
    match convert(child, heredocs)? {
        Converted::Instruction(trigger) => Ok(Kind::Onbuild(Box::new(trigger))),
        Converted::Stage(_) => Err(refused("FROM")),
    }
}

/// BuildKit's `errNotJSON`, with its hint for unescaped Windows paths.
fn not_json(keyword: &str, original: &str) -> String {
    let lowered = original
        .to_lowercase()
        .replace(&format!("{} ", keyword.to_lowercase()), "");
    let chars: Vec<char> = lowered.chars().collect();
    let drive_path = chars
        .windows(4)
        .any(|w| w[0] == '"' && w[1].is_ascii_lowercase() && w[2] == ':' && w[3] == '\\');
    let hint = if drive_path
        && !lowered.contains("\\\\")
        && lowered.contains('[')
        && lowered.contains(']')
    {
        format!(
            ". It looks like '{lowered}' includes a file path without an escaped back-slash. JSON requires back-slashes to be escaped such as [\"c:\\\\path\\\\to\\\\file.exe\", \"/parameter\"]"
        )
    } else {
        String::new()
    };
    format!("{keyword} requires the arguments to be in JSON form{hint}")
}

enum JsonArray {
    Strings(Vec<String>),
    NotStrings,
    Invalid,
}

/// Reads the JSON array at the start of `text` the way Go's `json.Decoder` does:
/// text after the first complete value is ignored.
fn json_array(text: &str) -> JsonArray {
    let text = text.trim_start();
    if !text.starts_with('[') {
        return JsonArray::Invalid;
    }
    let mut parser = Json {
        chars: text.chars().collect(),
        pos: 0,
        depth: 0,
    };
    match parser.array() {
        Some(items) => items
            .into_iter()
            .collect::<Option<Vec<String>>>()
            .map_or(JsonArray::NotStrings, JsonArray::Strings),
        None => JsonArray::Invalid,
    }
}

/// A JSON validator that keeps only what the exec form needs: the top-level strings.
/// Every method returns `None` on a syntax error; values that are not strings come
/// back as `Some(None)`.
struct Json {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
}

impl Json {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\n' | '\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: char) -> Option<()> {
        (self.bump()? == c).then_some(())
    }

    fn nest(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= 1000).then_some(())
    }

    fn value(&mut self) -> Option<Option<String>> {
        self.space();
        match self.peek()? {
            '"' => self.string().map(Some),
            '[' => self.array().map(|_| None),
            '{' => self.object().map(|_| None),
            't' => self.literal("true"),
            'f' => self.literal("false"),
            'n' => self.literal("null"),
            _ => self.number(),
        }
    }

    fn literal(&mut self, word: &str) -> Option<Option<String>> {
        for c in word.chars() {
            self.eat(c)?;
        }
        Some(None)
    }

    fn array(&mut self) -> Option<Vec<Option<String>>> {
        self.nest()?;
        self.eat('[')?;
        self.space();
        let mut items = Vec::new();
        if self.peek() == Some(']') {
            self.pos += 1;
        } else {
            loop {
                items.push(self.value()?);
                self.space();
                match self.bump()? {
                    ',' => {}
                    ']' => break,
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(items)
    }

    fn object(&mut self) -> Option<()> {
        self.nest()?;
        self.eat('{')?;
        self.space();
        if self.peek() == Some('}') {
            self.pos += 1;
        } else {
            loop {
                self.space();
                self.string()?;
                self.space();
                self.eat(':')?;
                self.value()?;
                self.space();
                match self.bump()? {
                    ',' => {}
                    '}' => break,
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    fn number(&mut self) -> Option<Option<String>> {
        if self.peek() == Some('-') {
            self.pos += 1;
        }
        match self.bump()? {
            '0' => {}
            '1'..='9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some('.') {
            self.pos += 1;
            self.digit()?;
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some('+' | '-')) {
                self.pos += 1;
            }
            self.digit()?;
        }
        Some(None)
    }

    fn digit(&mut self) -> Option<()> {
        self.bump().filter(char::is_ascii_digit)?;
        self.digits();
        Some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    fn string(&mut self) -> Option<String> {
        self.eat('"')?;
        let mut out = String::new();
        loop {
            match self.bump()? {
                '"' => return Some(out),
                '\\' => match self.bump()? {
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    '/' => out.push('/'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'u' => {
                        let unit = self.hex4()?;
                        out.push(self.utf16(unit));
                    }
                    _ => return None,
                },
                c if (c as u32) < 0x20 => return None,
                c => out.push(c),
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        (0..4).try_fold(0, |acc, _| Some(acc * 16 + self.bump()?.to_digit(16)?))
    }

    /// Decodes a `\u` escape, pairing surrogates; a lone one becomes U+FFFD, as Go does.
    fn utf16(&mut self, unit: u32) -> char {
        if (0xd800..0xdc00).contains(&unit) && self.chars[self.pos..].starts_with(&['\\', 'u']) {
            let save = self.pos;
            self.pos += 2;
            match self.hex4() {
                Some(low) if (0xdc00..0xe000).contains(&low) => {
                    let code = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
                    return char::from_u32(code).unwrap_or('\u{fffd}');
                }
                _ => self.pos = save,
            }
        }
        char::from_u32(unit).unwrap_or('\u{fffd}')
    }
}

const MISSING_BRACE: &str = "syntax error: missing '}'";

#[derive(Clone, Copy, Default)]
struct LexOptions {
    /// Keep quote characters in the result.
    raw_quotes: bool,
    /// Keep escape characters in the result.
    raw_escapes: bool,
    /// Treat quotes as ordinary characters.
    skip_quotes: bool,
    /// Leave references to unset variables as written.
    skip_unset: bool,
}

/// BuildKit's shell lexer (`frontend/dockerfile/shell`).
struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    options: LexOptions,
    raw_escapes: bool,
    vars: &'a dyn Fn(&str) -> Option<String>,
}

/// Returns the processed word and its split into words.
fn lex(
    word: &str,
    escape: char,
    options: LexOptions,
    vars: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Vec<String>), String> {
    let mut lexer = Lexer {
        chars: word.chars().collect(),
        pos: 0,
        escape,
        options,
        raw_escapes: options.raw_escapes,
        vars,
    };
    lexer
        .until(None, options.raw_escapes)
        .map_err(|e| format!("failed to process {word:?}: {e}"))
}

#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if !ch.is_whitespace() {
            self.add_raw_char(ch);
        } else if self.in_word && !self.buf.is_empty() {
            self.words.push(std::mem::take(&mut self.buf));
            self.in_word = false;
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.buf.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, text: &str) {
        text.chars().for_each(|ch| self.add_char(ch));
    }

    fn add_raw_string(&mut self, text: &str) {
        self.buf.push_str(text);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(self.buf);
        }
        self.words
    }
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), String> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let result = self.until_inner(stop);
        self.raw_escapes = saved;
        result
    }

    fn until_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            let quote = !self.options.skip_quotes && (ch == '\'' || ch == '"');
            if ch == '$' {
                let value = self.dollar()?;
                result.push_str(&value);
                words.add_string(&value);
            } else if quote {
                let text = if ch == '\'' {
                    self.single_quoted()?
                } else {
                    self.double_quoted()?
                };
                result.push_str(&text);
                words.add_raw_string(&text);
            } else {
                self.pos += 1;
                let mut ch = ch;
                if ch == self.escape {
                    if self.raw_escapes {
                        words.add_raw_char(ch);
                        result.push(ch);
                    }
                    let Some(next) = self.bump() else {
                        break;
                    };
                    ch = next;
                    words.add_raw_char(ch);
                } else {
                    words.add_char(ch);
                }
                result.push(ch);
            }
        }
        if let Some(stop) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        Ok((result, words.finish()))
    }

    fn single_quoted(&mut self) -> Result<String, String> {
        self.pos += 1;
        let mut out = String::new();
        if self.options.raw_quotes {
            out.push('\'');
        }
        loop {
            match self.bump() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    )
                }
                Some('\'') => {
                    if self.options.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, String> {
        self.pos += 1;
        let mut out = String::new();
        if self.options.raw_quotes {
            out.push('"');
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    )
                }
                Some('"') => {
                    self.pos += 1;
                    if self.options.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let value = self.dollar()?;
                    out.push_str(&value);
                }
                Some(mut ch) => {
                    self.pos += 1;
                    if ch == self.escape {
                        if self.raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == self.escape => {
                                ch = next;
                                self.pos += 1;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                while let Some(digit) = self.peek().filter(|c| c.is_numeric()) {
                    name.push(digit);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!') {
                self.pos += 1;
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            name.push(ch);
            self.pos += 1;
        }
        name
    }

    /// Reads up to `stop` inside `${...}`, reporting a missing `stop` at the end of
    /// the text as the bracket syntax error BuildKit reports.
    fn word_until(
        &mut self,
        stop: char,
        raw_escapes: bool,
        missing: &str,
    ) -> Result<String, String> {
        match self.until(Some(stop), raw_escapes) {
            Ok((word, _)) => Ok(word),
            Err(_) if self.peek().is_none() => Err(missing.to_string()),
            Err(e) => Err(e),
        }
    }

    fn dollar(&mut self) -> Result<String, String> {
        self.pos += 1;
        let skip_unset = self.options.skip_unset;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match (self.vars)(&name) {
                Some(value) => value,
                None if skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1;
        match self.peek() {
            None => return Err(MISSING_BRACE.into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.name();
        let Some(mut op) = self.bump() else {
            return Err(MISSING_BRACE.into());
        };
        let mut ops = op.to_string();
        let unsupported = |ops: &str| format!("unsupported modifier ({ops}) in substitution");
        match op {
            '}' => Ok(match (self.vars)(&name) {
                Some(value) => value,
                None if skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let null_is_unset = op == ':';
                if null_is_unset {
                    op = self.bump().ok_or(MISSING_BRACE)?;
                    ops.push(op);
                }
                let pattern_op = op == '#' || op == '%';
                if null_is_unset && pattern_op {
                    return Err(unsupported(&ops));
                }
                let word = self.word_until('}', pattern_op, MISSING_BRACE)?;
                let value = (self.vars)(&name);
                if skip_unset && value.is_none() {
                    return Ok(format!("${{{name}{ops}{word}}}"));
                }
                let present = value
                    .as_deref()
                    .is_some_and(|v| !(null_is_unset && v.is_empty()));
                match op {
                    '-' if present => Ok(value.unwrap_or_default()),
                    '-' => Ok(word),
                    '+' if present => Ok(word),
                    '+' => Ok(String::new()),
                    '?' => match value {
                        Some(value) if present => Ok(value),
                        _ => {
                            let message = match (&value, word.is_empty()) {
                                (_, false) => word,
                                (None, true) => "is not allowed to be unset".into(),
                                (Some(_), true) => "is not allowed to be empty".into(),
                            };
                            Err(format!("{name}: {message}"))
                        }
                    },
                    '#' | '%' => {
                        let (greedy, pattern) = match word.strip_prefix(op) {
                            Some(pattern) => (true, pattern),
                            None => (false, word.as_str()),
                        };
                        let glob = glob(pattern).map_err(|e| {
                            format!("invalid pattern ({pattern}) in substitution: {e}")
                        })?;
                        let value: Vec<char> = value.unwrap_or_default().chars().collect();
                        Ok(if op == '#' {
                            trim_prefix(&value, &glob, greedy)
                        } else {
                            trim_suffix(&value, &glob, greedy)
                        })
                    }
                    _ => Err(unsupported(&ops)),
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.pos += 1;
                }
                let pattern = self.word_until('/', true, "syntax error: missing '/' in ${}")?;
                let replacement = self.word_until('}', true, MISSING_BRACE)?;
                let value = (self.vars)(&name);
                if skip_unset && value.is_none() {
                    return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
                }
                let glob = glob(&pattern)
                    .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
                let value: Vec<char> = value.unwrap_or_default().chars().collect();
                Ok(replace(&value, &glob, &replacement, all))
            }
            _ => Err(unsupported(&ops)),
        }
    }
}

/// A shell pattern of `${var#...}`, `${var%...}` and `${var/...}`: `*`, `?` and
/// characters (no bracket expressions, as in BuildKit).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Glob {
    Any,
    One,
    Char(char),
}

fn glob(pattern: &str) -> Result<Vec<Glob>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => out.push(Glob::Any),
            '?' => out.push(Glob::One),
            // `\}` and `\/` only keep the bracket syntax intact; the escape is not
            // part of the pattern.
            '\\' if matches!(chars.get(i + 1), Some('}' | '/')) => {}
            '\\' => {
                i += 1;
                match chars.get(i) {
                    Some(&c @ ('*' | '?' | '\\')) => out.push(Glob::Char(c)),
                    Some(c) => return Err(format!("invalid escape '\\{c}'")),
                    None => return Err("invalid escape '\\'".into()),
                }
            }
            c => out.push(Glob::Char(c)),
        }
        i += 1;
    }
    Ok(out)
}

fn glob_matches(glob: &[Glob], text: &[char]) -> bool {
    let (mut g, mut t) = (0, 0);
    let mut backtrack = None;
    while t < text.len() {
        match glob.get(g) {
            Some(Glob::One) => {
                g += 1;
                t += 1;
            }
            Some(Glob::Char(c)) if *c == text[t] => {
                g += 1;
                t += 1;
            }
            Some(Glob::Any) => {
                backtrack = Some((g, t));
                g += 1;
            }
            _ => match backtrack {
                Some((star, from)) => {
                    g = star + 1;
                    t = from + 1;
                    backtrack = Some((star, from + 1));
                }
                None => return false,
            },
        }
    }
    glob[g..].iter().all(|token| *token == Glob::Any)
}

fn trim_prefix(value: &[char], glob: &[Glob], greedy: bool) -> String {
    let mut ends: Vec<usize> = (0..=value.len()).collect();
    if greedy {
        ends.reverse();
    }
    let cut = ends
        .into_iter()
        .find(|&end| glob_matches(glob, &value[..end]))
        .unwrap_or(0);
    value[cut..].iter().collect()
}

fn trim_suffix(value: &[char], glob: &[Glob], greedy: bool) -> String {
    let mut starts: Vec<usize> = (0..=value.len()).collect();
    if !greedy {
        starts.reverse();
    }
    let cut = starts
        .into_iter()
        .find(|&start| glob_matches(glob, &value[start..]))
        .unwrap_or(value.len());
    value[..cut].iter().collect()
}

/// Replaces the first (or every) longest leftmost match, with the empty-match rules
/// of Go's `Regexp.ReplaceAllString`.
fn replace(value: &[char], glob: &[Glob], replacement: &str, all: bool) -> String {
    let find = |from: usize| {
        (from..=value.len()).find_map(|start| {
            (start..=value.len())
                .rev()
                .find(|&end| glob_matches(glob, &value[start..end]))
                .map(|end| (start, end))
        })
    };
    let mut out = String::new();
    let mut search = 0;
    let mut last_end = 0;
    while search <= value.len() {
        let Some((start, end)) = find(search) else {
            break;
        };
        out.extend(&value[last_end..start]);
        if end > last_end || start == 0 {
            out.push_str(replacement);
        }
        last_end = end;
        if !all {
            break;
        }
        search = if search + 1 > end { search + 1 } else { end };
    }
    out.extend(&value[last_end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Dockerfile {
        parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(text: &str) -> ParseError {
        parse(text).expect_err("parse should fail")
    }

    /// The instructions of the only stage of `FROM a` followed by `body`.
    fn body(body: &str) -> Vec<Instruction> {
        let mut file = ok(&format!("FROM a\n{body}"));
        assert_eq!(file.stages.len(), 1);
        file.stages.remove(0).instructions
    }

    fn kind(text: &str) -> Kind {
        let mut instructions = body(text);
        assert_eq!(instructions.len(), 1, "{instructions:?}");
        instructions.remove(0).kind
    }

    fn shell(text: &str) -> Command {
        Command::Shell(text.to_string())
    }

    fn exec(args: &[&str]) -> Command {
        Command::Exec(args.iter().map(|s| s.to_string()).collect())
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn at(error: &ParseError) -> (usize, usize) {
        (error.line, error.column)
    }

    fn copy(kind: Kind) -> CopyArgs {
        match kind {
            Kind::Copy(args) | Kind::Add(args) => args,
            other => panic!("not a copy: {other:?}"),
        }
    }

    fn run_parts(kind: Kind) -> (Command, Vec<String>, Option<String>, Vec<Heredoc>) {
        match kind {
            Kind::Run {
                cmd,
                mounts,
                network,
                heredocs,
            } => (cmd, mounts, network, heredocs),
            other => panic!("not a RUN: {other:?}"),
        }
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    fn x(word: &str) -> Result<String, String> {
        const VARS: &[(&str, &str)] = &[("A", "1"), ("EMPTY", ""), ("P", "a/b/c"), ("F", "foo")];
        expand(word, &env(VARS), '\\')
    }

    #[test]
    fn keywords_are_case_insensitive() {
        let file = ok("from alpine\nrun echo hi\nCmd [\"a\"]\nWorkDir /x\n");
        let stage = &file.stages[0];
        assert_eq!(stage.base, "alpine");
        assert_eq!(stage.line, 1);
        let kinds: Vec<Kind> = stage.instructions.iter().map(|i| i.kind.clone()).collect();
        assert_eq!(
            kinds,
            vec![
                Kind::Run {
                    cmd: shell("echo hi"),
                    mounts: vec![],
                    network: None,
                    heredocs: vec![],
                },
                Kind::Cmd(exec(&["a"])),
                Kind::Workdir("/x".into()),
            ]
        );
        assert_eq!(file.directives.escape, '\\');
    }

    #[test]
    fn unknown_instruction_has_line_and_column() {
        let e = err("FROM a\n\n  FOO bar\n");
        assert_eq!(e.message, "unknown instruction: FOO");
        assert_eq!(at(&e), (3, 3));
        assert_eq!(e.to_string(), "Dockerfile:3:3: unknown instruction: FOO");
        // Columns count characters, not bytes.
        assert_eq!(at(&err("FROM a\n\tRÜN x\n")), (2, 2));
    }

    #[test]
    fn comments_only_at_line_start() {
        let instructions = body("# c\n   # indented\nRUN echo # not a comment\n");
        assert_eq!(
            run_parts(instructions[0].kind.clone()).0,
            shell("echo # not a comment")
        );
        assert_eq!(instructions[0].line, 4);
    }

    #[test]
    fn continuation_skips_comment_and_empty_lines() {
        let text = "FROM a\nRUN apt-get update && \\\n# comment inside\n    apt-get install -y \\\n  # another\n\t\n    curl\nUSER me\n";
        let instructions = ok(text).stages.remove(0).instructions;
        assert_eq!(instructions[0].line, 2);
        let joined = "apt-get update &&     apt-get install -y     curl";
        assert_eq!(run_parts(instructions[0].kind.clone()).0, shell(joined));
        assert_eq!(instructions[0].original, format!("RUN {joined}"));
        assert_eq!(instructions[1].line, 8);
        assert_eq!(instructions[1].kind, Kind::User("me".into()));
    }

    #[test]
    fn continuation_details() {
        // Blanks after the escape are allowed.
        let (cmd, ..) = run_parts(kind("RUN echo a \\   \n b\n"));
        assert_eq!(cmd, shell("echo a  b"));
        // An escaped escape does not continue the line.
        let instructions = body("RUN echo a\\\\\nRUN echo b\n");
        assert_eq!(
            run_parts(instructions[0].kind.clone()).0,
            shell("echo a\\\\")
        );
        assert_eq!(instructions.len(), 2);
        // A continuation at the end of the file ends the instruction.
        assert_eq!(run_parts(kind("RUN echo \\")).0, shell("echo"));
        // An escape alone on the first line starts an instruction on the next.
        assert_eq!(kind("\\\nUSER me\n"), Kind::User("me".into()));
    }

    #[test]
    fn errors_in_continued_lines_point_at_the_token() {
        let e = err("FROM a\nCOPY --chown=1 \\\n  --bogus=2 a b\n");
        assert_eq!(e.message, "unknown flag: --bogus");
        assert_eq!(at(&e), (3, 3));
    }

    #[test]
    fn crlf_and_bom() {
        let file = ok("\u{feff}FROM a\r\nRUN echo \\\r\n  hi\r\nUSER me\r\n");
        let instructions = &file.stages[0].instructions;
        assert_eq!(
            run_parts(instructions[0].kind.clone()).0,
            shell("echo   hi")
        );
        assert_eq!(instructions[1].kind, Kind::User("me".into()));
    }

    #[test]
    fn escape_directive_with_backtick_and_windows_paths() {
        let text = "# syntax=docker/dockerfile:1.4\n# Escape = `\nFROM mcr.microsoft.com/windows/servercore\nCOPY testfile.txt c:\\\nRUN dir c:\\ `\n    && echo done\nWORKDIR c:\\Windows\n";
        let file = ok(text);
        assert_eq!(file.directives.escape, '`');
        assert_eq!(
            file.directives.syntax.as_deref(),
            Some("docker/dockerfile:1.4")
        );
        let instructions = &file.stages[0].instructions;
        assert_eq!(copy(instructions[0].kind.clone()).dest, "c:\\");
        assert_eq!(
            run_parts(instructions[1].kind.clone()).0,
            shell("dir c:\\     && echo done")
        );
        assert_eq!(instructions[2].kind, Kind::Workdir("c:\\Windows".into()));
        assert_eq!(instructions[2].line, 7);
        let none = |_: &str| None;
        assert_eq!(expand("c:\\Windows", &none, '`').unwrap(), "c:\\Windows");
        assert_eq!(expand("c:\\Windows", &none, '\\').unwrap(), "c:Windows");
        // With the default escape the trailing backslash continues the line.
        let file = ok("FROM a\nCOPY x c:\\\nRUN dir\n");
        assert_eq!(file.stages[0].instructions.len(), 1);
    }

    #[test]
    fn directives_only_at_the_very_top() {
        let continued = |text: &str| ok(text).stages.pop().unwrap().instructions.len() == 1;
        // After a comment, a blank line or an unknown directive it is a comment.
        for prefix in ["# hello\n", "\n", "# foo=bar\n", "FROM z\n"] {
            let text = format!("{prefix}# escape=`\nFROM a\nRUN echo \\\n  b\n");
            let file = ok(&text);
            assert_eq!(file.directives.escape, '\\', "{prefix:?}");
            assert!(continued(&text));
        }
        let file = ok("  #SYNTAX = x/y  \n#check=skip=all\nFROM a\n");
        assert_eq!(file.directives.syntax.as_deref(), Some("x/y"));
        assert_eq!(file.directives.check.as_deref(), Some("skip=all"));
        let e = err("# escape=`\n# escape=\\\nFROM a\n");
        assert_eq!(e.message, "only one escape parser directive can be used");
        assert_eq!(at(&e), (2, 1));
        let e = err("# escape=x\nFROM a\n");
        assert_eq!(e.message, "invalid escape token 'x' does not match ` or \\");
    }

    #[test]
    fn env_forms() {
        assert_eq!(
            kind("ENV A=1 B=\"two words\" C=three\\ four D=\n"),
            Kind::Env(pairs(&[
                ("A", "1"),
                ("B", "\"two words\""),
                ("C", "three\\ four"),
                ("D", ""),
            ]))
        );
        assert_eq!(
            kind("ENV PATH /usr/bin:$PATH  with spaces\n"),
            Kind::Env(pairs(&[("PATH", "/usr/bin:$PATH  with spaces")]))
        );
        assert_eq!(x("\"two words\"").unwrap(), "two words");
        assert_eq!(x("three\\ four").unwrap(), "three four");
        let e = err("FROM a\nENV  ONLYKEY\n");
        assert_eq!(e.message, "ENV must have two arguments");
        assert_eq!(at(&e), (2, 6));
        let e = err("FROM a\nENV A=1 B\n");
        assert_eq!(
            e.message,
            "Syntax error - can't find = in \"B\". Must be of the form: name=value"
        );
        assert_eq!(at(&e), (2, 9));
        assert_eq!(
            err("FROM a\nENV =x\n").message,
            "ENV names can not be blank"
        );
        assert_eq!(
            err("FROM a\nENV\n").message,
            "ENV requires at least one argument"
        );
        assert_eq!(err("FROM a\nENV --x=1 A=1\n").message, "unknown flag: --x");
    }

    #[test]
    fn label_keeps_quotes_for_expansion() {
        assert_eq!(
            kind("LABEL \"com.example.vendor\"=\"ACME Inc\" version=1.0\n"),
            Kind::Label(pairs(&[
                ("\"com.example.vendor\"", "\"ACME Inc\""),
                ("version", "1.0"),
            ]))
        );
        assert_eq!(
            kind("LABEL description This text\n"),
            Kind::Label(pairs(&[("description", "This text")]))
        );
    }

    #[test]
    fn args_before_and_inside_stages() {
        let file =
            ok("ARG VERSION=1.2 BASE\nFROM base:${VERSION}\nARG VERSION\nARG A=\"x y\" B=\n");
        assert_eq!(
            file.args_before_from,
            vec![
                Arg {
                    name: "VERSION".into(),
                    default: Some("1.2".into()),
                },
                Arg {
                    name: "BASE".into(),
                    default: None,
                },
            ]
        );
        assert_eq!(file.stages[0].base, "base:${VERSION}");
        let kinds: Vec<Kind> = file.stages[0]
            .instructions
            .iter()
            .map(|i| i.kind.clone())
            .collect();
        assert_eq!(
            kinds,
            vec![
                Kind::Arg(vec![Arg {
                    name: "VERSION".into(),
                    default: None,
                }]),
                Kind::Arg(vec![
                    Arg {
                        name: "A".into(),
                        default: Some("\"x y\"".into()),
                    },
                    Arg {
                        name: "B".into(),
                        default: Some(String::new()),
                    },
                ]),
            ]
        );
        assert_eq!(
            err("FROM a\nARG\n").message,
            "ARG requires at least one argument"
        );
        assert_eq!(
            err("FROM a\nARG =x\n").message,
            "ARG names can not be blank"
        );
    }

    #[test]
    fn from_forms() {
        let file = ok("FROM --platform=$BUILDPLATFORM golang:1.22 As Build\nFROM build AS x-y_z.1\nFROM scratch\n");
        let stage = &file.stages[0];
        assert_eq!(stage.base, "golang:1.22");
        assert_eq!(stage.name.as_deref(), Some("build"));
        assert_eq!(stage.platform.as_deref(), Some("$BUILDPLATFORM"));
        assert_eq!(file.stages[1].name.as_deref(), Some("x-y_z.1"));
        assert_eq!(file.stages[2].name, None);
        assert_eq!(file.stages[2].line, 3);
        let e = err("FROM a AS 1bad\n");
        assert_eq!(
            e.message,
            "invalid name for build stage: \"1bad\", name can't start with a number or contain symbols"
        );
        assert_eq!(at(&e), (1, 11));
        assert_eq!(
            err("FROM a b\n").message,
            "FROM requires either one or three arguments"
        );
        assert_eq!(
            err("FROM\n").message,
            "FROM requires either one or three arguments"
        );
        assert_eq!(err("FROM --plat=x a\n").message, "unknown flag: --plat");
    }

    #[test]
    fn stages_and_what_may_precede_them() {
        let file = ok("FROM a AS one\nRUN x\nFROM b\nRUN y\nRUN z\n");
        assert_eq!(file.stages.len(), 2);
        assert_eq!(file.stages[0].instructions.len(), 1);
        assert_eq!(file.stages[1].instructions.len(), 2);
        let e = err("# c\nRUN x\nFROM a\n");
        assert_eq!(e.message, "no build stage in current context");
        assert_eq!(at(&e), (2, 1));
        assert_eq!(
            err("ARG A\n").message,
            "dockerfile contains no stages to build"
        );
        assert_eq!(err("# only\n\n").message, "file with no instructions");
        assert_eq!(err("").message, "file with no instructions");
    }

    #[test]
    fn exec_form_only_for_valid_json_string_arrays() {
        assert_eq!(kind("CMD [\"a\", \"b\"]\n"), Kind::Cmd(exec(&["a", "b"])));
        assert_eq!(kind("CMD [\"a\", 'b']\n"), Kind::Cmd(shell("[\"a\", 'b']")));
        assert_eq!(kind("CMD [\"a\",]\n"), Kind::Cmd(shell("[\"a\",]")));
        assert_eq!(kind("CMD [ \"a\" ,\"b\" ]\n"), Kind::Cmd(exec(&["a", "b"])));
        // Like Go's json.Decoder, text after the array is ignored.
        assert_eq!(kind("CMD [\"a\"] trailing\n"), Kind::Cmd(exec(&["a"])));
        assert_eq!(kind("ENTRYPOINT []\n"), Kind::Entrypoint(exec(&[])));
        assert_eq!(kind("CMD\n"), Kind::Cmd(shell("")));
        assert_eq!(
            run_parts(kind("RUN [\"echo\", \"\\u00e9\\n\\ud83d\\ude00\\\"\"]\n")).0,
            exec(&["echo", "é\n😀\""])
        );
        let e = err("FROM a\nCMD  [1, \"a\"]\n");
        assert_eq!(
            e.message,
            "when using JSON array syntax, arrays must be comprised of strings only"
        );
        assert_eq!(at(&e), (2, 6));
        assert!(
            err("FROM a\nRUN [[\"a\"], {\"k\": [true, null, -1.5e3]}]\n")
                .message
                .contains("strings only")
        );
        // Invalid JSON anywhere makes it shell form, even after a non-string.
        assert_eq!(kind("CMD [1, 'a']\n"), Kind::Cmd(shell("[1, 'a']")));
    }

    #[test]
    fn copy_and_add_flags() {
        let args = copy(kind(
            "COPY --from=build --chown=1:1 --chmod=755 --link a b /dst/\n",
        ));
        assert_eq!(
            args,
            CopyArgs {
                sources: strings(&["a", "b"]),
                dest: "/dst/".into(),
                from: Some("build".into()),
                chown: Some("1:1".into()),
                chmod: Some("755".into()),
                link: true,
                heredocs: vec![],
            }
        );
        assert!(!copy(kind("COPY --link=false a b\n")).link);
        assert_eq!(
            copy(kind("COPY --chown=\"user name\" a b\n"))
                .chown
                .as_deref(),
            Some("user name")
        );
        let args = copy(kind("COPY [\"a b\", \"/c d/\"]\n"));
        assert_eq!(
            (args.sources, args.dest),
            (strings(&["a b"]), "/c d/".into())
        );
        // Outside JSON, quotes do not group words.
        assert_eq!(
            copy(kind("COPY \"a b\" c\n")).sources,
            strings(&["\"a", "b\""])
        );
        let add = copy(kind("ADD --chown=x https://e.com/f.tgz /opt/\n"));
        assert_eq!(add.sources, strings(&["https://e.com/f.tgz"]));
        assert_eq!(add.from, None);
    }

    #[test]
    fn copy_and_add_errors() {
        let e = err("FROM a\nCOPY a\n");
        assert_eq!(
            e.message,
            "COPY requires at least two arguments, but only one was provided. Destination could not be determined"
        );
        assert_eq!(at(&e), (2, 1));
        let e = err("FROM a\nCOPY --link --exclude=*.md a b\n");
        assert_eq!(e.message, "COPY --exclude is not supported by berth-img");
        assert_eq!(at(&e), (2, 13));
        let cases = [
            ("ADD --from=x a b", "unknown flag: --from"),
            (
                "COPY --link=maybe a b",
                "expecting boolean value for flag --link, not: maybe",
            ),
            ("COPY --link= a b", "missing a value on flag: --link"),
            ("COPY --chown a b", "missing a value on flag: --chown"),
            (
                "COPY --from=a --from=b x y",
                "duplicate flag specified: --from",
            ),
            (
                "ADD --checksum=sha256:0 a b",
                "ADD --checksum is not supported by berth-img",
            ),
        ];
        for (line, message) in cases {
            assert_eq!(err(&format!("FROM a\n{line}\n")).message, message, "{line}");
        }
    }

    #[test]
    fn copy_heredocs() {
        let text = "FROM a\nCOPY <<EOF /etc/motd\nhello $USER\nEOF\nCOPY <<\"EOF2\" <<-EOF3 /dir/\nliteral $X\nEOF2\n\ttabbed\n\t\tdeeper\n\tEOF3\nRUN true\n";
        let instructions = ok(text).stages.remove(0).instructions;
        assert_eq!(instructions.len(), 3);
        let first = copy(instructions[0].kind.clone());
        assert_eq!(first.sources, Vec::<String>::new());
        assert_eq!(first.dest, "/etc/motd");
        assert_eq!(
            first.heredocs,
            vec![Heredoc {
                name: "EOF".into(),
                content: "hello $USER\n".into(),
                expand: true,
                strip_tabs: false,
            }]
        );
        assert_eq!(
            instructions[0].original,
            "COPY <<EOF /etc/motd\nhello $USER\nEOF"
        );
        let second = copy(instructions[1].kind.clone());
        assert_eq!(
            second.heredocs,
            vec![
                Heredoc {
                    name: "EOF2".into(),
                    content: "literal $X\n".into(),
                    expand: false,
                    strip_tabs: false,
                },
                Heredoc {
                    name: "EOF3".into(),
                    content: "tabbed\ndeeper\n".into(),
                    expand: true,
                    strip_tabs: true,
                },
            ]
        );
        assert_eq!(instructions[2].line, 11);
        let vars = [("USER", "me")];
        assert_eq!(
            expand_heredoc("hello $USER \"q\" 'x' \\$USER\n", &env(&vars)).unwrap(),
            "hello me \"q\" 'x' $USER\n"
        );
        let e = err("FROM a\nCOPY a <<EOF\nx\nEOF\n");
        assert_eq!(e.message, "COPY cannot accept a heredoc as a destination");
        assert_eq!(at(&e), (2, 8));
    }

    #[test]
    fn run_heredocs() {
        let (cmd, _, _, docs) = run_parts(kind("RUN <<EOF\necho hi\necho there\nEOF\n"));
        assert_eq!(cmd, shell("echo hi\necho there\n"));
        assert_eq!(docs.len(), 1);
        let (cmd, _, _, docs) = run_parts(kind("RUN <<-EOF\n\techo hi\n\tEOF\n"));
        assert_eq!(cmd, shell("echo hi\n"));
        assert_eq!(docs[0].content, "echo hi\n");
        // With a command, the shell gets the heredoc as written and feeds it as stdin.
        let instructions = body("RUN python3 <<EOF\nprint(1)\nEOF\nUSER me\n");
        assert_eq!(
            run_parts(instructions[0].kind.clone()).0,
            shell("python3 <<EOF\nprint(1)\nEOF")
        );
        assert_eq!(instructions[1].kind, Kind::User("me".into()));
        assert_eq!(
            run_parts(kind("RUN <<EOF bash\necho $0\nEOF\n")).0,
            shell("<<EOF bash\necho $0\nEOF")
        );
        let (cmd, _, _, docs) = run_parts(kind("RUN cat <<A <<-'B'\na\nA\n\tb\n\tB\n"));
        // BuildKit closes each body with the bare name; `<<-` accepts that too.
        assert_eq!(cmd, shell("cat <<A <<-'B'\na\nA\n\tb\nB"));
        assert_eq!(
            docs.iter()
                .map(|d| (d.name.as_str(), d.expand))
                .collect::<Vec<_>>(),
            vec![("A", true), ("B", false)]
        );
        // Not heredocs: JSON form, quoted, or `<<<`.
        for line in [
            "RUN [\"cat\", \"<<EOF\"]",
            "RUN echo \"<<EOF\"",
            "RUN cat <<< hi",
        ] {
            assert_eq!(body(&format!("{line}\nUSER me\n")).len(), 2, "{line}");
        }
        let e = err("FROM a\nRUN <<EOF\necho\n");
        assert_eq!(e.message, "unterminated heredoc");
        assert_eq!(at(&e), (2, 1));
    }

    #[test]
    fn heredoc_words() {
        let doc = |word: &str| heredoc_word(word).unwrap();
        let spec = |word: &str| doc(word).map(|d| (d.name, d.expand, d.strip_tabs));
        assert_eq!(spec("<<EOF"), Some(("EOF".into(), true, false)));
        assert_eq!(spec("<<'EOF'"), Some(("EOF".into(), false, false)));
        assert_eq!(spec("<<E\"O\"F"), Some(("EOF".into(), false, false)));
        assert_eq!(spec("2<<-EOF"), Some(("EOF".into(), true, true)));
        assert_eq!(spec("<<<x"), None);
        assert_eq!(spec("a<<b"), None);
        assert_eq!(spec("<<"), None);
        assert_eq!(spec("<<\"A B\""), Some(("A B".into(), false, false)));
    }

    #[test]
    fn run_flags() {
        let (cmd, mounts, network, _) = run_parts(kind(
            "RUN --mount=type=cache,target=/root/.cache --mount=type=secret,id=x --network=none make\n",
        ));
        assert_eq!(cmd, shell("make"));
        assert_eq!(
            mounts,
            strings(&["type=cache,target=/root/.cache", "type=secret,id=x"])
        );
        assert_eq!(network.as_deref(), Some("none"));
        // `--` ends the flags.
        assert_eq!(
            run_parts(kind("RUN -- --not-a-flag\n")).0,
            shell("--not-a-flag")
        );
        let e = err("FROM a\nRUN --network=bridge x\n");
        assert_eq!(e.message, "invalid network mode \"bridge\"");
        assert_eq!(at(&e), (2, 5));
        assert_eq!(
            err("FROM a\nRUN --security=insecure x\n").message,
            "RUN --security is not supported by berth-img"
        );
        assert_eq!(
            err("FROM a\nRUN\n").message,
            "RUN requires at least one argument"
        );
        assert_eq!(err("FROM a\nCMD --x y\n").message, "unknown flag: --x");
    }

    #[test]
    fn healthcheck_forms() {
        assert_eq!(
            kind("HEALTHCHECK NONE\n"),
            Kind::Healthcheck(Healthcheck::None)
        );
        assert_eq!(
            kind("HEALTHCHECK --interval=5m --timeout=3s --start-period=1.5s --start-interval=2s --retries=3 CMD curl -f http://localhost/ || exit 1\n"),
            Kind::Healthcheck(Healthcheck::Cmd {
                test: shell("curl -f http://localhost/ || exit 1"),
                interval: Some("5m".into()),
                timeout: Some("3s".into()),
                start_period: Some("1.5s".into()),
                start_interval: Some("2s".into()),
                retries: Some(3),
            })
        );
        assert_eq!(
            kind("HEALTHCHECK cmd [\"curl\", \"-f\"]\n"),
            Kind::Healthcheck(Healthcheck::Cmd {
                test: exec(&["curl", "-f"]),
                interval: None,
                timeout: None,
                start_period: None,
                start_interval: None,
                retries: None,
            })
        );
        let cases = [
            ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
            ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
            ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
            (
                "HEALTHCHECK FOO x",
                "Unknown type \"FOO\" in HEALTHCHECK (try CMD)",
            ),
            (
                "HEALTHCHECK --interval=abc CMD x",
                "time: invalid duration \"abc\"",
            ),
            (
                "HEALTHCHECK --interval=5 CMD x",
                "time: missing unit in duration \"5\"",
            ),
            (
                "HEALTHCHECK --timeout=5y CMD x",
                "time: unknown unit \"y\" in duration \"5y\"",
            ),
            (
                "HEALTHCHECK --interval=0.5ms CMD x",
                "Interval \"interval\" cannot be less than 1ms",
            ),
            (
                "HEALTHCHECK --retries=0 CMD x",
                "--retries must be at least 1 (not 0)",
            ),
            (
                "HEALTHCHECK --retries=x CMD x",
                "strconv.ParseInt: parsing \"x\": invalid syntax",
            ),
            ("HEALTHCHECK --bogus=1 CMD x", "unknown flag: --bogus"),
        ];
        for (line, message) in cases {
            assert_eq!(err(&format!("FROM a\n{line}\n")).message, message, "{line}");
        }
        assert_eq!(go_duration("1h2m3.5s").unwrap(), 3723.5e9);
        assert_eq!(go_duration("-1.5us").unwrap(), -1500.0);
        assert!(go_duration(".s").is_err());
    }

    #[test]
    fn shell_requires_json() {
        assert_eq!(
            kind("SHELL [\"powershell\", \"-command\"]\n"),
            Kind::Shell(strings(&["powershell", "-command"]))
        );
        let e = err("FROM a\nSHELL powershell -command\n");
        assert_eq!(e.message, "SHELL requires the arguments to be in JSON form");
        assert_eq!(at(&e), (2, 1));
        let e = err("FROM a\nSHELL [\"c:\\windows\\cmd.exe\", \"/S\"]\n");
        assert!(
            e.message
                .starts_with("SHELL requires the arguments to be in JSON form. It looks like"),
            "{}",
            e.message
        );
        assert_eq!(
            err("FROM a\nSHELL []\n").message,
            "SHELL requires at least one argument"
        );
    }

    #[test]
    fn onbuild_triggers() {
        let instructions = body("ONBUILD RUN echo hi\nonbuild copy <<EOF /x\nbody\nEOF\n");
        let Kind::Onbuild(trigger) = &instructions[0].kind else {
            panic!("{instructions:?}");
        };
        assert_eq!(trigger.original, "RUN echo hi");
        assert_eq!(run_parts(trigger.kind.clone()).0, shell("echo hi"));
        let Kind::Onbuild(trigger) = &instructions[1].kind else {
            panic!("{instructions:?}");
        };
        assert_eq!(trigger.original, "copy <<EOF /x\nbody\nEOF");
        assert_eq!(instructions[1].original, "onbuild copy <<EOF /x\nbody\nEOF");
        assert_eq!(copy(trigger.kind.clone()).heredocs[0].content, "body\n");
        let cases = [
            (
                "ONBUILD ONBUILD RUN x",
                "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
            ),
            ("ONBUILD FROM x", "FROM isn't allowed as an ONBUILD trigger"),
            (
                "ONBUILD maintainer x",
                "MAINTAINER isn't allowed as an ONBUILD trigger",
            ),
            ("ONBUILD", "ONBUILD requires at least one argument"),
            ("ONBUILD BOGUS x", "unknown instruction: BOGUS"),
        ];
        for (line, message) in cases {
            assert_eq!(err(&format!("FROM a\n{line}\n")).message, message, "{line}");
        }
        assert_eq!(at(&err("FROM a\nONBUILD  FROM x\n")), (2, 10));
    }

    #[test]
    fn simple_instructions() {
        assert_eq!(
            kind("EXPOSE 8080/tcp 80 $PORT\n"),
            Kind::Expose(strings(&["$PORT", "80", "8080/tcp"]))
        );
        assert_eq!(
            kind("VOLUME [\"/data\", \"/logs\"]\n"),
            Kind::Volume(strings(&["/data", "/logs"]))
        );
        assert_eq!(kind("VOLUME /a /b\n"), Kind::Volume(strings(&["/a", "/b"])));
        assert_eq!(kind("USER app:app\n"), Kind::User("app:app".into()));
        // WORKDIR, USER and friends take the rest of the line as one argument.
        assert_eq!(kind("WORKDIR /a b\n"), Kind::Workdir("/a b".into()));
        assert_eq!(
            kind("STOPSIGNAL SIGTERM\n"),
            Kind::StopSignal("SIGTERM".into())
        );
        assert_eq!(
            kind("MAINTAINER Me <me@x>\n"),
            Kind::Maintainer("Me <me@x>".into())
        );
        let cases = [
            ("WORKDIR", "WORKDIR requires exactly one argument"),
            ("USER", "USER requires exactly one argument"),
            ("EXPOSE", "EXPOSE requires at least one argument"),
            ("VOLUME []", "VOLUME requires at least one argument"),
            (
                "VOLUME [\"\"]",
                "VOLUME specified can not be an empty string",
            ),
            ("STOPSIGNAL", "STOPSIGNAL requires exactly one argument"),
        ];
        for (line, message) in cases {
            assert_eq!(err(&format!("FROM a\n{line}\n")).message, message, "{line}");
        }
    }

    #[test]
    fn expand_plain_references() {
        assert_eq!(x("$A ${A} $UNSET-${UNSET}.").unwrap(), "1 1 -.");
        assert_eq!(x("a$").unwrap(), "a$");
        assert_eq!(x("$ A").unwrap(), "$ A");
        assert_eq!(x("${A}b$A_x").unwrap(), "1b");
        assert_eq!(x("\\$A \\\\ \\a").unwrap(), "$A \\ a");
        assert_eq!(
            x("'$A \\x' \"$A \\\" \\$ \\\\ \\x\"").unwrap(),
            "$A \\x 1 \" $ \\ \\x"
        );
        assert_eq!(x("a\\").unwrap(), "a");
        let none = |_: &str| None;
        let vars = [("A", "1")];
        assert_eq!(expand("`$A \\$A", &env(&vars), '`').unwrap(), "$A \\1");
        assert_eq!(expand("$$", &none, '\\').unwrap(), "");
    }

    #[test]
    fn expand_modifiers() {
        let cases = [
            ("${A:-d}", "1"),
            ("${EMPTY:-d}", "d"),
            ("${UNSET:-d}", "d"),
            ("${A-d}", "1"),
            ("${EMPTY-d}", ""),
            ("${UNSET-d}", "d"),
            ("${A:+x}", "x"),
            ("${EMPTY:+x}", ""),
            ("${UNSET:+x}", ""),
            ("${A+x}", "x"),
            ("${EMPTY+x}", "x"),
            ("${UNSET+x}", ""),
            ("${A:?m}", "1"),
            ("${EMPTY?m}", ""),
            ("${UNSET:-${A}z}", "1z"),
            ("${UNSET:-'a b'}", "a b"),
            ("${UNSET:-\"}\"}", "}"),
            ("${P#*/}", "b/c"),
            ("${P##*/}", "c"),
            ("${P%/*}", "a/b"),
            ("${P%%/*}", "a"),
            ("${P#x}", "a/b/c"),
            ("${P%?}", "a/b/"),
            ("${F/o/0}", "f0o"),
            ("${F//o/0}", "f00"),
            ("${F//o*/X}", "fX"),
            ("${F/\\//x}", "foo"),
            ("${UNSET/a/b}", ""),
        ];
        for (word, want) in cases {
            assert_eq!(x(word).as_deref(), Ok(want), "{word}");
        }
    }

    #[test]
    fn expand_errors() {
        let cases = [
            ("${UNSET:?must be set}", "UNSET: must be set"),
            ("${UNSET?}", "UNSET: is not allowed to be unset"),
            ("${EMPTY:?}", "EMPTY: is not allowed to be empty"),
            ("${A", "syntax error: missing '}'"),
            ("${A:-x", "syntax error: missing '}'"),
            ("${", "syntax error: missing '}'"),
            ("${}", "syntax error: bad substitution"),
            ("${:a}", "syntax error: bad substitution"),
            ("${A:=x}", "unsupported modifier (:=) in substitution"),
            ("${A:#x}", "unsupported modifier (:#) in substitution"),
            ("${A^}", "unsupported modifier (^) in substitution"),
            ("${A/x", "syntax error: missing '/' in ${}"),
            (
                "${P#\\x}",
                "invalid pattern (\\x) in substitution: invalid escape '\\x'",
            ),
            (
                "'abc",
                "unexpected end of statement while looking for matching single-quote",
            ),
            (
                "\"abc",
                "unexpected end of statement while looking for matching double-quote",
            ),
        ];
        for (word, message) in cases {
            assert_eq!(
                x(word),
                Err(format!("failed to process {word:?}: {message}")),
                "{word}"
            );
        }
    }

    #[test]
    fn expand_words_splits_outside_quotes() {
        let vars = [("V", "d  e"), ("E", "")];
        let words = expand_words("a \"b c\" $V x$E 'f g'h \"\"", &env(&vars), '\\').unwrap();
        assert_eq!(words, strings(&["a", "b c", "d", "e", "x", "f gh"]));
        assert_eq!(
            expand_words("80/tcp\\ 1", &env(&vars), '\\').unwrap(),
            strings(&["80/tcp 1"])
        );
    }
}
