//! `.dockerignore` matching with the semantics BuildKit applies while it sends the
//! build context: moby/patternmatcher's `ignorefile.ReadAll` and `New` for reading,
//! `MatchesUsingParentResults` as fsutil's walker chains it from the context root for
//! matching, and fsutil's rule for when an excluded directory must still be walked.

/// A parsed `.dockerignore`.
#[derive(Debug, Clone)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
    /// Whether any pattern is an exception (`!pattern`).
    has_exceptions: bool,
    /// Whether every exception is a plain path once a trailing `/**` or `/*` is
    /// dropped, which lets the walker skip excluded directories no exception is under.
    only_prefix_exceptions: bool,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// The cleaned pattern without its `!`.
    text: String,
    exception: bool,
    matcher: Matcher,
}

/// How patternmatcher's `compile` decides to match: plain comparisons for patterns
/// without wildcards, which are not always what the equivalent regular expression
/// would do (`**foo` matches `xfoo`), so they are kept apart.
#[derive(Debug, Clone)]
enum Matcher {
    Exact,
    Prefix(String),
    Suffix(String),
    Tokens(Vec<Token>),
}

/// One element of patternmatcher's regular expression.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `*`: `[^/]*`
    Star,
    /// `?`: `[^/]`
    One,
    /// `**` before more pattern: `(.*/)?`
    Dirs,
    /// `**` at the end: `.*`
    All,
    /// `[...]`, copied into the regular expression as is, so `^` negates, `!` does
    /// not, and a class can match `/`.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl DockerIgnore {
    /// Reads a `.dockerignore`: one pattern a line, `#` lines (only at the very start
    /// of the line) and blank lines skipped, surrounding blanks trimmed, `!` marking an
    /// exception, each pattern cleaned like Go's `filepath.Clean` with a leading `/`
    /// dropped. Fails on a malformed pattern or a lone `!`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.starts_with('#') {
                continue;
            }
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            // ignorefile.ReadAll
            let (exception, body) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let mut body = if body.is_empty() {
                String::new()
            } else {
                clean(body)
            };
            if body.len() > 1 && body.starts_with('/') {
                body.remove(0);
            }
            let read = if exception { format!("!{body}") } else { body };
            // patternmatcher.New cleans once more, `!` included.
            let cleaned = clean(read.trim());
            let (exception, text) = match cleaned.strip_prefix('!') {
                Some("") => return Err("illegal exclusion pattern: \"!\"".into()),
                Some(rest) => (true, rest.to_string()),
                None => (false, cleaned),
            };
            let matcher = compile(&text)
                .ok_or_else(|| format!("syntax error in pattern {text:?} in .dockerignore"))?;
            patterns.push(Pattern {
                text,
                exception,
                matcher,
            });
        }
        let exceptions = patterns.iter().filter(|p| p.exception);
        let only_prefix_exceptions = exceptions
            .clone()
            .all(|p| !without_trailing_glob(&p.text).contains(['*', '[', ']', '?', '^', '\\']));
        Ok(DockerIgnore {
            has_exceptions: exceptions.count() > 0,
            only_prefix_exceptions,
            patterns,
        })
    }

    /// Whether a slash-separated path relative to the context root is left out of the
    /// context: the last pattern that matches it or one of its parent directories
    /// decides, an exception re-including it.
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        let path = normalize(rel_path);
        if path == "." {
            return false;
        }
        let mut parent: Option<Vec<bool>> = None;
        let mut excluded = false;
        let ends = path.match_indices('/').map(|(i, _)| i).chain([path.len()]);
        // Match each ancestor in turn, as the walker does on its way down: a pattern
        // that matched a directory matches everything below it.
        for end in ends {
            let (matched, info) = self.step(&path[..end], parent.as_deref());
            excluded = matched;
            parent = Some(info);
        }
        excluded
    }

    /// True when some exception (`!pattern`) could re-include something below this
    /// excluded directory, so the walker must still descend into it. Like BuildKit's
    /// walker this is coarse: any exception with a wildcard answers yes everywhere.
    pub fn must_descend(&self, rel_dir: &str) -> bool {
        if !self.has_exceptions {
            return false;
        }
        if !self.only_prefix_exceptions {
            return true;
        }
        let dir = format!("{}/", normalize(rel_dir));
        self.patterns
            .iter()
            .filter(|p| p.exception)
            .any(|p| format!("{}/", without_trailing_glob(&p.text)).starts_with(&dir))
    }

    /// patternmatcher's `MatchesUsingParentResults` for one path, given which patterns
    /// matched its parent directory.
    fn step(&self, path: &str, parent: Option<&[bool]>) -> (bool, Vec<bool>) {
        let mut matched = false;
        let mut info = vec![false; self.patterns.len()];
        for (i, pattern) in self.patterns.iter().enumerate() {
            let mut hit = parent.is_some_and(|parent| parent[i]);
            if !hit {
                // An include cannot change an excluded path, nor an exception an
                // included one; such patterns are not even recorded for children.
                if pattern.exception != matched {
                    continue;
                }
                hit = pattern.matches(path);
            }
            info[i] = hit;
            if hit {
                matched = !pattern.exception;
            }
        }
        (matched, info)
    }
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match &self.matcher {
            Matcher::Exact => path == self.text,
            Matcher::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Matcher::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|bare| path == bare)
            }
            Matcher::Tokens(tokens) => {
                let chars: Vec<char> = path.chars().collect();
                tokens_match(tokens, &chars)
            }
        }
    }
}

fn normalize(path: &str) -> String {
    let cleaned = clean(path);
    match cleaned.strip_prefix('/') {
        Some("") => ".".into(),
        Some(rest) => rest.to_string(),
        None => cleaned,
    }
}

fn without_trailing_glob(pattern: &str) -> &str {
    let pattern = pattern.strip_suffix("/**").unwrap_or(pattern);
    pattern.strip_suffix("/*").unwrap_or(pattern)
}

/// Go's `filepath.Clean` for slash-separated paths.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            part => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// Checks the syntax as Go's `filepath.Match` does (patternmatcher rejects what it
/// rejects), then translates the pattern as patternmatcher's `compile` does.
fn compile(pattern: &str) -> Option<Matcher> {
    #[derive(PartialEq)]
    enum Detected {
        Exact,
        Prefix,
        Suffix,
        Regexp,
    }
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut detected = Detected::Exact;
    let mut i = 0;
    let mut first = true;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i == chars.len() {
                    if detected == Detected::Exact {
                        detected = Detected::Prefix;
                    } else {
                        tokens.push(Token::All);
                        detected = Detected::Regexp;
                    }
                } else {
                    tokens.push(Token::Dirs);
                    detected = Detected::Regexp;
                }
                if first {
                    detected = Detected::Suffix;
                }
            }
            '*' => {
                tokens.push(Token::Star);
                detected = Detected::Regexp;
            }
            '?' => {
                tokens.push(Token::One);
                detected = Detected::Regexp;
            }
            '\\' => {
                // filepath.Match rejects a trailing escape.
                tokens.push(Token::Char(*chars.get(i)?));
                i += 1;
                detected = Detected::Regexp;
            }
            '[' => {
                let (class, next) = class(&chars, i)?;
                tokens.push(class);
                i = next;
                detected = Detected::Regexp;
            }
            ']' => {
                tokens.push(Token::Char(']'));
                detected = Detected::Regexp;
            }
            c => tokens.push(Token::Char(c)),
        }
        first = false;
    }
    Some(match detected {
        Detected::Exact => Matcher::Exact,
        Detected::Prefix => Matcher::Prefix(pattern[..pattern.len() - 2].to_string()),
        Detected::Suffix => Matcher::Suffix(pattern[2..].to_string()),
        Detected::Regexp => Matcher::Tokens(tokens),
    })
}

/// Reads a class after its `[` with `filepath.Match`'s syntax rules; returns the
/// class and the index after its `]`.
fn class(chars: &[char], mut i: usize) -> Option<(Token, usize)> {
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        if chars.get(i) == Some(&']') && !ranges.is_empty() {
            return Some((Token::Class { negated, ranges }, i + 1));
        }
        let (lo, next) = class_char(chars, i)?;
        i = next;
        let mut hi = lo;
        if chars.get(i) == Some(&'-') {
            (hi, i) = class_char(chars, i + 1)?;
        }
        // Go's regexp refuses a reversed range where filepath.Match accepts it;
        // patternmatcher would fail when matching, this fails when reading.
        if hi < lo {
            return None;
        }
        ranges.push((lo, hi));
    }
}

/// `getEsc` of `filepath.Match`.
fn class_char(chars: &[char], mut i: usize) -> Option<(char, usize)> {
    match chars.get(i)? {
        '-' | ']' => return None,
        '\\' => i += 1,
        _ => {}
    }
    let c = *chars.get(i)?;
    // A class must still be closed after this character.
    chars.get(i + 1)?;
    Some((c, i + 1))
}

fn tokens_match(tokens: &[Token], text: &[char]) -> bool {
    let n = text.len();
    // after[j]: whether the tokens after the current one match text[j..].
    let mut after = vec![false; n + 1];
    after[n] = true;
    for token in tokens.iter().rev() {
        let mut here = vec![false; n + 1];
        for j in (0..=n).rev() {
            let c = text.get(j).copied();
            here[j] = match token {
                Token::Char(want) => c == Some(*want) && after[j + 1],
                Token::One => c.is_some_and(|c| c != '/') && after[j + 1],
                Token::Class { negated, ranges } => {
                    c.is_some_and(|c| ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated)
                        && after[j + 1]
                }
                Token::Star => after[j] || (c.is_some_and(|c| c != '/') && here[j + 1]),
                Token::All => after[j] || (c.is_some() && here[j + 1]),
                Token::Dirs => after[j] || (j..n).any(|k| text[k] == '/' && after[k + 1]),
            };
        }
        after = here;
    }
    after[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Asserts which of `paths` are excluded (`true`) under `text`.
    fn check(text: &str, cases: &[(&str, bool)]) {
        let ignore = ignore(text);
        for (path, excluded) in cases {
            assert_eq!(ignore.is_excluded(path), *excluded, "{text:?} on {path:?}");
        }
    }

    #[test]
    fn star_stays_within_a_directory() {
        check(
            "*.md",
            &[
                ("README.md", true),
                ("docs/README.md", false),
                ("md", false),
            ],
        );
        check(
            "docs/*.txt",
            &[("docs/a.txt", true), ("docs/x/a.txt", false)],
        );
    }

    #[test]
    fn double_star_spans_directories() {
        check(
            "**/*.md",
            &[("x.md", true), ("a/b/x.md", true), ("a/b/x.mdx", false)],
        );
        check(
            "a/**/b",
            &[
                ("a/b", true),
                ("a/x/y/b", true),
                ("ab", false),
                ("a/b/c", true),
            ],
        );
        check("a/**", &[("a", false), ("a/b", true), ("a/b/c", true)]);
        check("**", &[("a", true), ("a/b", true)]);
        check("**/foo", &[("foo", true), ("x/foo", true), ("xfoo", false)]);
        // A plain `**x` is a suffix comparison in patternmatcher.
        check("**foo", &[("xfoo", true), ("a/foo", true), ("foox", false)]);
        check("a**", &[("abc/d", true), ("b", false)]);
    }

    #[test]
    fn question_mark_and_classes() {
        check(
            "a?c",
            &[
                ("abc", true),
                ("a/c", false),
                ("abbc", false),
                ("ac", false),
            ],
        );
        check("[a-c]x", &[("bx", true), ("dx", false)]);
        check("[^a]x", &[("bx", true), ("ax", false)]);
        // As in patternmatcher, `!` does not negate a class and a class may match `/`.
        check("[!a]x", &[("!x", true), ("ax", true), ("bx", false)]);
        check("a[/]b", &[("a/b", true)]);
        check("[\\]]", &[("]", true), ("\\", false)]);
    }

    #[test]
    fn escapes_make_characters_literal() {
        check("\\*", &[("*", true), ("a", false)]);
        check("a\\?b", &[("a?b", true), ("axb", false)]);
        check("a.b+c(d)", &[("a.b+c(d)", true), ("axb+c(d)", false)]);
    }

    #[test]
    fn directory_pattern_excludes_everything_below() {
        check(
            "node_modules\n/build/\n",
            &[
                ("node_modules", true),
                ("node_modules/x/y", true),
                ("src/node_modules", false),
                ("build/out.o", true),
                ("./build/out.o", true),
                ("/build", true),
            ],
        );
    }

    #[test]
    fn exceptions_and_order() {
        check(
            "*.md\n!README.md",
            &[("README.md", false), ("other.md", true)],
        );
        check("!README.md\n*.md", &[("README.md", true)]);
        check(
            "a\n!a/b",
            &[("a", true), ("a/b", false), ("a/b/c", false), ("a/c", true)],
        );
        check(
            "foo/bar\n!foo",
            &[("foo", false), ("foo/bar", true), ("foo/bar/baz", true)],
        );
        check("*\n!Dockerfile", &[("Dockerfile", false), ("src", true)]);
        // patternmatcher skips `docs/private` while matching `docs/private` itself (it
        // is already excluded), so children do not inherit it and the exception
        // re-includes them: BuildKit sends docs/private/p.md.
        check(
            "docs\n!docs/**/*.md\ndocs/private",
            &[
                ("docs/a.txt", true),
                ("docs/x/a.md", false),
                ("docs/private", true),
                ("docs/private/p.txt", true),
                ("docs/private/p.md", false),
            ],
        );
    }

    #[test]
    fn reading_rules() {
        check(
            "# comment\n\n   \n # not a comment\n  spaced  \n/abs/../rooted\r\n!  kept/./x \n",
            &[
                ("comment", false),
                ("# not a comment", true),
                ("spaced", true),
                ("rooted", true),
                ("kept/x", false),
            ],
        );
        check("\u{feff}bom", &[("bom", true)]);
        assert!(!ignore("*").is_excluded(""));
        assert!(!ignore("*").is_excluded("."));
    }

    #[test]
    fn malformed_patterns() {
        for pattern in [
            "[", "[]", "[a-]", "[-a]", "[^]", "a\\", "[z-a]", "!", "! ", "!/",
        ] {
            assert!(DockerIgnore::parse(pattern).is_err(), "{pattern:?}");
        }
        assert_eq!(
            DockerIgnore::parse("!").unwrap_err(),
            "illegal exclusion pattern: \"!\""
        );
    }

    #[test]
    fn must_descend_only_where_an_exception_can_reach() {
        let plain = ignore("docs\nvendor");
        assert!(!plain.must_descend("docs"));
        let prefix = ignore("docs\nvendor\n!docs/keep.txt\n!vendor/mod/**");
        assert!(prefix.must_descend("docs"));
        assert!(prefix.must_descend("vendor"));
        assert!(prefix.must_descend("vendor/mod"));
        assert!(!prefix.must_descend("vendor/other"));
        assert!(!prefix.must_descend("doc"));
        assert!(!prefix.must_descend("src"));
        // Any wildcard in an exception can reach anywhere.
        let glob = ignore("src\nother\n!src/**/*.go");
        assert!(glob.must_descend("other"));
    }

    #[test]
    fn clean_matches_go() {
        let cases = [
            ("", "."),
            ("a//b/./c/", "a/b/c"),
            ("a/../..", ".."),
            ("../a/..", ".."),
            ("/../a", "/a"),
            ("/", "/"),
            ("./", "."),
        ];
        for (path, want) in cases {
            assert_eq!(clean(path), want, "{path:?}");
        }
    }
}
