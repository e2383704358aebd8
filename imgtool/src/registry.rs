//! A client for the OCI distribution API (distribution-spec spec.md) over
//! ureq: scheme discovery, the token and basic auth dances, retries, and the
//! error mapping the commands show.
//!
//! Why not `oci-client`: it is async (tokio + reqwest, several MB more per
//! binary), verifies blobs only after the whole download, cannot resume, and
//! has no HTTPS-then-HTTP fallback for loopback registries; pull streams
//! every layer into the unpacker while hashing, which needs the raw body.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;

use crate::auth::Credentials;
use crate::error::{Error, Result};
use crate::reference::is_loopback_host;

const USER_AGENT: &str = concat!("berth-img/", env!("CARGO_PKG_VERSION"));
const ATTEMPTS: u32 = 5;

/// How the registry asked us to authenticate (`WWW-Authenticate`).
#[derive(Clone, Debug, PartialEq)]
pub enum Challenge {
    None,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Bearer realm="...",service="...",scope="..."` (RFC 7235 params,
/// quoted strings with backslash escapes).
pub fn parse_challenge(header: &str) -> Challenge {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            continue;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
        }
        params.insert(key.trim().to_ascii_lowercase(), value);
    }
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => match params.remove("realm") {
            Some(realm) => Challenge::Bearer {
                realm,
                service: params.remove("service"),
                scope: params.remove("scope"),
            },
            None => Challenge::None,
        },
        "basic" => Challenge::Basic,
        _ => Challenge::None,
    }
}

/// A request body that can be sent again on retry.
#[derive(Clone, Copy)]
pub enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
}

pub struct Registry {
    agent: ureq::Agent,
    /// `host[:port]` the API is on.
    host: String,
    plain_http: bool,
    credentials: Option<Credentials>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    base: Option<String>,
    challenge: Option<Challenge>,
    tokens: HashMap<String, Arc<str>>,
}

/// A response whose body has not been read yet.
pub type Response = ureq::Response;

fn transient(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

fn backoff(attempt: u32, retry_after: Option<&str>) {
    let wait = retry_after
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(30)))
        .unwrap_or_else(|| Duration::from_millis(200 << attempt.min(6)));
    std::thread::sleep(wait);
}

/// The registry's own message from an error body (`{"errors":[...]}`).
fn error_detail(resp: Response) -> String {
    let mut body = String::new();
    let _ = resp.into_reader().take(64 * 1024).read_to_string(&mut body);
    let parsed: Option<serde_json::Value> = serde_json::from_str(&body).ok();
    let first = parsed
        .as_ref()
        .and_then(|v| v.get("errors"))
        .and_then(|e| e.get(0))
        .map(|e| {
            let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
            let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
            format!("{code}: {msg}")
        });
    first.unwrap_or_else(|| body.trim().chars().take(200).collect())
}

impl Registry {
    /// A client for the registry at `host` (the API host, see
    /// `Reference::api_host`).
    pub fn new(host: &str, credentials: Option<Credentials>, plain_http: bool) -> Registry {
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout_connect(Duration::from_secs(15))
            .timeout_read(Duration::from_secs(120))
            .timeout_write(Duration::from_secs(120))
            .user_agent(USER_AGENT)
            .build();
        Registry {
            agent,
            host: host.to_string(),
            plain_http,
            credentials,
            state: Mutex::new(State::default()),
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// `scheme://host`, discovered on first use: HTTPS, or plain HTTP when
    /// asked to or when HTTPS fails against a loopback registry (docker's
    /// rule for registries on this machine).
    pub fn base(&self) -> Result<String> {
        if let Some(b) = &self.state.lock().unwrap().base {
            return Ok(b.clone());
        }
        let candidates: Vec<String> = if self.plain_http {
            vec![format!("http://{}", self.host)]
        } else if is_loopback_host(&self.host) {
            vec![
                format!("https://{}", self.host),
                format!("http://{}", self.host),
            ]
        } else {
            vec![format!("https://{}", self.host)]
        };
        let mut last_err = String::new();
        for base in candidates {
            for attempt in 0..ATTEMPTS {
                match self.agent.get(&format!("{base}/v2/")).call() {
                    Ok(_) => return Ok(self.settle(base, Challenge::None)),
                    Err(ureq::Error::Status(401, resp)) => {
                        let c = resp
                            .header("www-authenticate")
                            .map(parse_challenge)
                            .unwrap_or(Challenge::None);
                        return Ok(self.settle(base, c));
                    }
                    Err(ureq::Error::Status(code, resp))
                        if transient(code) && attempt + 1 < ATTEMPTS =>
                    {
                        backoff(attempt, resp.header("retry-after"));
                    }
                    Err(ureq::Error::Status(code, resp)) => {
                        return Err(Error::Registry(format!(
                            "{base}/v2/: {code} {}",
                            error_detail(resp)
                        )))
                    }
                    Err(ureq::Error::Transport(t)) => {
                        last_err = format!("{base}/v2/: {t}");
                        // A TLS handshake against plain HTTP fails the same
                        // way every time; only connection errors are worth
                        // retrying.
                        if base.starts_with("https") && is_loopback_host(&self.host) {
                            break;
                        }
                        if attempt + 1 < ATTEMPTS {
                            backoff(attempt, None);
                        }
                    }
                }
            }
        }
        Err(Error::Registry(format!(
            "cannot reach registry {}: {last_err}",
            self.host
        )))
    }

    fn settle(&self, base: String, challenge: Challenge) -> String {
        let mut st = self.state.lock().unwrap();
        st.base = Some(base.clone());
        st.challenge = Some(challenge);
        base
    }

    /// Checks the credentials (for `login`): the registry's ping, then a
    /// token if it uses tokens.
    pub fn check_login(&self) -> Result<()> {
        self.base()?;
        let challenge = self.state.lock().unwrap().challenge.clone();
        match challenge {
            Some(Challenge::Bearer { .. }) => self.token(&[]).map(|_| ()),
            Some(Challenge::Basic) => {
                let base = self.base()?;
                self.send("GET", &format!("{base}/v2/"), &[], &[], Body::Empty)
                    .map(|_| ())
            }
            _ => Ok(()),
        }
    }

    /// A bearer token for `scopes` from the challenge's realm, cached.
    fn token(&self, scopes: &[String]) -> Result<Arc<str>> {
        let key = scopes.join(" ");
        let challenge = {
            let st = self.state.lock().unwrap();
            if let Some(t) = st.tokens.get(&key) {
                return Ok(t.clone());
            }
            st.challenge.clone()
        };
        let Some(Challenge::Bearer { realm, service, .. }) = challenge else {
            return Err(Error::Registry("no token realm".into()));
        };
        let mut url = url::Url::parse(&realm)
            .map_err(|e| Error::Registry(format!("bad token realm {realm:?}: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = &service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
        }
        let what = format!("token server {realm}");
        let resp = match self.call_plain(&what, || {
            let req = self.agent.get(url.as_str());
            match &self.credentials {
                Some(c) => req.set("Authorization", &basic(c)),
                None => req,
            }
        })? {
            Ok(r) => r,
            Err((401, _)) => {
                return Err(Error::Unauthorized(format!(
                    "{}: {}",
                    self.host,
                    if self.credentials.is_some() {
                        "incorrect username or password"
                    } else {
                        "authentication required"
                    }
                )))
            }
            Err((code, r)) => {
                return Err(Error::Registry(format!(
                    "{what}: {code} {}",
                    error_detail(r)
                )))
            }
        };
        let mut text = String::new();
        let _ = resp.into_reader().take(1 << 20).read_to_string(&mut text);
        let body: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Registry(format!("token server {realm}: bad response: {e}")))?;
        let token = body
            .get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::Registry(format!("token server {realm}: no token in response"))
            })?;
        let token: Arc<str> = token.into();
        self.state.lock().unwrap().tokens.insert(key, token.clone());
        Ok(token)
    }

    fn authorization(&self, scopes: &[String]) -> Result<Option<String>> {
        let challenge = self.state.lock().unwrap().challenge.clone();
        Ok(match challenge {
            Some(Challenge::Bearer { .. }) => Some(format!("Bearer {}", self.token(scopes)?)),
            Some(Challenge::Basic) => self.credentials.as_ref().map(basic),
            _ => None,
        })
    }

    /// Sends one request with auth and retries. `url` is absolute or a
    /// path below the base. Error statuses become errors, except those in
    /// `accept` (e.g. 404 for a HEAD that checks existence); 3xx come back.
    pub fn send(
        &self,
        method: &str,
        url: &str,
        scopes: &[String],
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<Response> {
        self.send_accepting(method, url, scopes, headers, body, &[])
    }

    pub fn send_accepting(
        &self,
        method: &str,
        url: &str,
        scopes: &[String],
        headers: &[(&str, &str)],
        body: Body<'_>,
        accept: &[u16],
    ) -> Result<Response> {
        let base = self.base()?;
        let url = if url.starts_with("http://") || url.starts_with("https://") {
            url.to_string()
        } else {
            format!("{base}{url}")
        };
        let mut reauthed = false;
        let mut attempt = 0;
        loop {
            let mut req = self.agent.request(method, &url);
            if let Some(a) = self.authorization(scopes)? {
                req = req.set("Authorization", &a);
            }
            for (k, v) in headers {
                req = req.set(k, v);
            }
            let result = match body {
                Body::Empty => req.call(),
                Body::Bytes(b) => req.send_bytes(b),
            };
            match result {
                Ok(resp) => return Ok(resp),
                Err(ureq::Error::Status(code, resp)) if accept.contains(&code) => return Ok(resp),
                Err(ureq::Error::Status(401, resp)) if !reauthed => {
                    // The token may have expired or lack a scope the
                    // registry names in its new challenge.
                    reauthed = true;
                    if let Some(h) = resp.header("www-authenticate") {
                        let c = parse_challenge(h);
                        let mut st = self.state.lock().unwrap();
                        st.tokens.clear();
                        if c != Challenge::None {
                            st.challenge = Some(c);
                        }
                    }
                }
                Err(ureq::Error::Status(401, resp)) => {
                    let detail = error_detail(resp);
                    return Err(Error::Unauthorized(format!(
                        "{method} {url}: {detail}{}",
                        if self.credentials.is_none() {
                            format!(" (log in with `berth-img login {}`)", self.host)
                        } else {
                            String::new()
                        }
                    )));
                }
                Err(ureq::Error::Status(403, resp)) => {
                    return Err(Error::Denied(format!("{method} {url}: {}", error_detail(resp))))
                }
                Err(ureq::Error::Status(404, resp)) => {
                    return Err(Error::NotFound(format!("{url} ({})", error_detail(resp))))
                }
                Err(ureq::Error::Status(code, resp)) if transient(code) && attempt + 1 < ATTEMPTS => {
                    tracing::debug!("{method} {url}: {code}, retrying");
                    backoff(attempt, resp.header("retry-after"));
                    attempt += 1;
                }
                Err(ureq::Error::Status(429, resp)) => {
                    return Err(Error::Registry(format!(
                        "{method} {url}: too many requests (429), gave up after {ATTEMPTS} attempts: {}",
                        error_detail(resp)
                    )))
                }
                Err(ureq::Error::Status(code, resp)) => {
                    return Err(Error::Registry(format!("{method} {url}: {code} {}", error_detail(resp))))
                }
                Err(ureq::Error::Transport(t)) if attempt + 1 < ATTEMPTS => {
                    tracing::debug!("{method} {url}: {t}, retrying");
                    backoff(attempt, None);
                    attempt += 1;
                }
                Err(ureq::Error::Transport(t)) => {
                    return Err(Error::Registry(format!("{method} {url}: {t}")))
                }
            }
        }
    }

    /// GET that follows redirects itself: blob downloads are often sent to
    /// storage elsewhere, which must not see our registry credentials.
    pub fn get_following(
        &self,
        path: &str,
        scopes: &[String],
        headers: &[(&str, &str)],
    ) -> Result<Response> {
        let mut resp = self.send("GET", path, scopes, headers, Body::Empty)?;
        let mut registry_origin = url::Url::parse(&self.base()?)
            .map_err(|e| Error::Registry(e.to_string()))?
            .origin();
        for _ in 0..10 {
            if !(300..400).contains(&resp.status()) {
                return Ok(resp);
            }
            let current =
                url::Url::parse(resp.get_url()).map_err(|e| Error::Registry(e.to_string()))?;
            let location = resp.header("location").ok_or_else(|| {
                Error::Registry(format!("{} redirect without Location", resp.status()))
            })?;
            let next = current
                .join(location)
                .map_err(|e| Error::Registry(format!("bad redirect {location:?}: {e}")))?;
            resp = if next.origin() == registry_origin {
                self.send("GET", next.as_str(), scopes, headers, Body::Empty)?
            } else {
                registry_origin = url::Origin::new_opaque();
                self.get_plain(next.as_str(), headers)?
            };
        }
        Err(Error::Registry(format!("GET {path}: too many redirects")))
    }

    /// A GET without credentials (redirect targets), with retries.
    fn get_plain(&self, url: &str, headers: &[(&str, &str)]) -> Result<Response> {
        let what = format!("GET {url}");
        match self.call_plain(&what, || {
            headers
                .iter()
                .fold(self.agent.get(url), |req, (k, v)| req.set(k, v))
        })? {
            Ok(r) => Ok(r),
            Err((code, r)) => Err(Error::Registry(format!(
                "{what}: {code} {}",
                error_detail(r)
            ))),
        }
    }

    /// Sends a request that carries no registry credentials (token
    /// servers, blob storage), retrying connection errors and transient
    /// statuses; other error statuses come back for the caller to name.
    fn call_plain(
        &self,
        what: &str,
        request: impl Fn() -> ureq::Request,
    ) -> Result<std::result::Result<Response, (u16, Response)>> {
        let mut attempt = 0;
        loop {
            match request().call() {
                Ok(r) => return Ok(Ok(r)),
                Err(ureq::Error::Status(code, r)) if transient(code) && attempt + 1 < ATTEMPTS => {
                    tracing::debug!("{what}: {code}, retrying");
                    backoff(attempt, r.header("retry-after"));
                }
                Err(ureq::Error::Status(code, r)) => return Ok(Err((code, r))),
                Err(ureq::Error::Transport(t)) if attempt + 1 < ATTEMPTS => {
                    tracing::debug!("{what}: {t}, retrying");
                    backoff(attempt, None);
                }
                Err(ureq::Error::Transport(t)) => {
                    return Err(Error::Registry(format!("{what}: {t}")))
                }
            }
            attempt += 1;
        }
    }
}

fn basic(c: &Credentials) -> String {
    let raw = format!("{}:{}", c.username, c.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// The scope for pulling from (and optionally pushing to) a repository.
pub fn scope(repository: &str, push: bool) -> String {
    format!(
        "repository:{repository}:{}",
        if push { "pull,push" } else { "pull" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push""#
            ),
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("reg".into()),
                scope: Some("repository:a/b:pull,push".into())
            }
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Challenge::Basic
        );
        assert_eq!(
            parse_challenge(r#"bearer realm="http://x/t\"q", error="insufficient_scope""#),
            Challenge::Bearer {
                realm: "http://x/t\"q".into(),
                service: None,
                scope: None
            }
        );
        assert_eq!(parse_challenge("Negotiate"), Challenge::None);
    }
}
