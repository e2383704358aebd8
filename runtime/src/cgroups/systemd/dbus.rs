//! The D-Bus wire protocol, as much of it as the systemd driver uses: one
//! direct connection to a peer over a unix socket (no bus daemon, so no
//! `Hello` and no names), method calls, their replies and errors, signals.
//! Synchronous and thread-free: berth clones its container init fork-like
//! from the calling process.
//!
//! - Authentication is SASL EXTERNAL *without* our uid: `AUTH EXTERNAL`,
//!   an empty `DATA` to the server's challenge, `BEGIN`. The server takes
//!   the uid from the socket (SO_PEERCRED) in its own user namespace.
//!   Sending `geteuid()`, as libdbus does, fails from inside a user
//!   namespace, where root is an ordinary user to the server (systemd's
//!   sd-bus and GLib stopped sending it for that reason).
//! - Messages are written little-endian and read in either byte order.
//!   Every length and offset read is checked against what arrived: a
//!   truncated or malformed message is an error.
//! - Values are a small tree ([`Value`]) of the types systemd's manager
//!   methods take and return.

use std::collections::VecDeque;
use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The specification's limits: a whole message, one array, nesting depth.
const MAX_MESSAGE: usize = 1 << 27;
const MAX_ARRAY: usize = 1 << 26;
const MAX_DEPTH: usize = 64;
/// The longest authentication line taken from the server.
const MAX_AUTH_LINE: usize = 4096;

/// Message types (the header's second byte).
const METHOD_CALL: u8 = 1;
const METHOD_RETURN: u8 = 2;
const ERROR: u8 = 3;
const SIGNAL: u8 = 4;

/// Header field codes.
const FIELD_PATH: u8 = 1;
const FIELD_INTERFACE: u8 = 2;
const FIELD_MEMBER: u8 = 3;
const FIELD_ERROR_NAME: u8 = 4;
const FIELD_REPLY_SERIAL: u8 = 5;
const FIELD_DESTINATION: u8 = 6;
const FIELD_SIGNATURE: u8 = 8;

/// A D-Bus value of one of the types the driver sends or reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Byte(u8),
    Bool(bool),
    U32(u32),
    U64(u64),
    Str(String),
    ObjectPath(String),
    Signature(String),
    /// Values of one type; `element` is its signature (an empty array
    /// has one too).
    Array {
        element: String,
        items: Vec<Value>,
    },
    Struct(Vec<Value>),
    Variant(Box<Value>),
}

impl Value {
    /// The value's type signature.
    pub fn signature(&self) -> String {
        match self {
            Value::Byte(_) => "y".into(),
            Value::Bool(_) => "b".into(),
            Value::U32(_) => "u".into(),
            Value::U64(_) => "t".into(),
            Value::Str(_) => "s".into(),
            Value::ObjectPath(_) => "o".into(),
            Value::Signature(_) => "g".into(),
            Value::Array { element, .. } => format!("a{element}"),
            Value::Struct(fields) => {
                let inner: String = fields.iter().map(Value::signature).collect();
                format!("({inner})")
            }
            Value::Variant(_) => "v".into(),
        }
    }

    fn array(element: &str, items: impl IntoIterator<Item = Value>) -> Value {
        Value::Array {
            element: element.into(),
            items: items.into_iter().collect(),
        }
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::U64(v)
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Str(v)
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::array("y", v.into_iter().map(Value::Byte))
    }
}

impl From<Vec<u32>> for Value {
    fn from(v: Vec<u32>) -> Value {
        Value::array("u", v.into_iter().map(Value::U32))
    }
}

impl From<Vec<String>> for Value {
    fn from(v: Vec<String>) -> Value {
        Value::array("s", v.into_iter().map(Value::Str))
    }
}

impl From<Vec<(String, String)>> for Value {
    fn from(v: Vec<(String, String)>) -> Value {
        Value::array(
            "(ss)",
            v.into_iter()
                .map(|(a, b)| Value::Struct(vec![Value::Str(a), Value::Str(b)])),
        )
    }
}

/// An ERROR reply: its name and message.
#[derive(Debug, PartialEq, Eq)]
pub struct RemoteError {
    pub name: String,
    pub message: String,
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

/// A method call to send.
pub struct MethodCall<'a> {
    pub destination: &'a str,
    pub path: &'a str,
    pub interface: &'a str,
    pub member: &'a str,
    pub args: Vec<Value>,
}

impl MethodCall<'_> {
    fn marshal(&self, serial: u32) -> Result<Vec<u8>> {
        marshal(
            METHOD_CALL,
            serial,
            vec![
                (FIELD_PATH, Value::ObjectPath(self.path.into())),
                (FIELD_INTERFACE, Value::Str(self.interface.into())),
                (FIELD_MEMBER, Value::Str(self.member.into())),
                (FIELD_DESTINATION, Value::Str(self.destination.into())),
            ],
            &self.args,
        )
    }
}

/// A whole message: the fixed header, the header fields (plus SIGNATURE
/// when there is a body), padding to 8, the body.
fn marshal(kind: u8, serial: u32, mut fields: Vec<(u8, Value)>, body: &[Value]) -> Result<Vec<u8>> {
    let mut b = Writer::default();
    for v in body {
        b.value(v)?;
    }
    let signature: String = body.iter().map(Value::signature).collect();
    if !signature.is_empty() {
        fields.push((FIELD_SIGNATURE, Value::Signature(signature)));
    }
    let fields = fields
        .into_iter()
        .map(|(code, v)| Value::Struct(vec![Value::Byte(code), Value::Variant(Box::new(v))]));
    let mut w = Writer::default();
    w.buf.extend_from_slice(&[b'l', kind, 0, 1]);
    w.u32(u32::try_from(b.buf.len()).map_err(|_| too_long())?);
    w.u32(serial);
    w.value(&Value::array("(yv)", fields))?;
    w.pad(8);
    w.buf.extend_from_slice(&b.buf);
    if w.buf.len() > MAX_MESSAGE {
        return Err(too_long());
    }
    Ok(w.buf)
}

fn too_long() -> Error {
    Error::Other("message longer than D-Bus allows".into())
}

fn malformed(what: impl fmt::Display) -> Error {
    Error::Other(format!("malformed D-Bus message: {what}"))
}

/// The alignment of a type by its signature's first code.
fn alignment(code: u8) -> usize {
    match code {
        b'y' | b'g' | b'v' => 1,
        b'n' | b'q' => 2,
        b't' | b'x' | b'd' | b'(' | b'{' => 8,
        _ => 4,
    }
}

/// Appends values at their alignment, offsets counted from the start of
/// the buffer (the message, or its body, which starts 8-aligned).
#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn pad(&mut self, align: usize) {
        let len = self.buf.len().next_multiple_of(align);
        self.buf.resize(len, 0);
    }

    fn u32(&mut self, v: u32) {
        self.pad(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn string(&mut self, s: &str) -> Result<()> {
        if s.contains('\0') {
            return Err(Error::Other(format!(
                "{s:?}: a D-Bus string cannot hold a NUL"
            )));
        }
        self.u32(u32::try_from(s.len()).map_err(|_| too_long())?);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
        Ok(())
    }

    fn signature(&mut self, s: &str) -> Result<()> {
        let len = u8::try_from(s.len())
            .map_err(|_| Error::Other(format!("D-Bus signature longer than 255: {s}")))?;
        self.buf.push(len);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
        Ok(())
    }

    fn value(&mut self, v: &Value) -> Result<()> {
        match v {
            Value::Byte(b) => self.buf.push(*b),
            Value::Bool(b) => self.u32(u32::from(*b)),
            Value::U32(n) => self.u32(*n),
            Value::U64(n) => {
                self.pad(8);
                self.buf.extend_from_slice(&n.to_le_bytes());
            }
            Value::Str(s) | Value::ObjectPath(s) => self.string(s)?,
            Value::Signature(s) => self.signature(s)?,
            Value::Array { element, items } => {
                self.pad(4);
                let at = self.buf.len();
                self.buf.extend_from_slice(&[0; 4]);
                // The length counts from the first element, after the
                // padding to its alignment (present even when empty).
                self.pad(alignment(*element.as_bytes().first().unwrap_or(&0)));
                let start = self.buf.len();
                for item in items {
                    if item.signature() != *element {
                        return Err(Error::Other(format!(
                            "D-Bus array of {element} holding a {}",
                            item.signature()
                        )));
                    }
                    self.value(item)?;
                }
                let len = self.buf.len() - start;
                if len > MAX_ARRAY {
                    return Err(too_long());
                }
                self.buf[at..at + 4].copy_from_slice(&(len as u32).to_le_bytes());
            }
            Value::Struct(fields) => {
                if fields.is_empty() {
                    return Err(Error::Other("empty D-Bus struct".into()));
                }
                self.pad(8);
                for f in fields {
                    self.value(f)?;
                }
            }
            Value::Variant(inner) => {
                self.signature(&inner.signature())?;
                self.value(inner)?;
            }
        }
        Ok(())
    }
}

/// The first complete type of a signature, and the rest.
fn split_type(sig: &str) -> Result<(&str, &str)> {
    let b = sig.as_bytes();
    let mut i = 0;
    while b.get(i) == Some(&b'a') {
        i += 1;
    }
    let end = match b.get(i) {
        Some(open @ (b'(' | b'{')) => {
            let close = if *open == b'(' { b')' } else { b'}' };
            let mut depth = 0usize;
            let mut end = None;
            for (j, c) in b.iter().enumerate().skip(i) {
                if c == open {
                    depth += 1;
                } else if *c == close {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(j + 1);
                        break;
                    }
                }
            }
            match end {
                Some(e) if e > i + 2 => e,
                _ => return Err(malformed(format!("signature {sig:?}"))),
            }
        }
        Some(c) if b"ybnqiuxtdsogvh".contains(c) => i + 1,
        _ => return Err(malformed(format!("signature {sig:?}"))),
    };
    Ok(sig.split_at(end))
}

/// A signature's complete types, in order.
fn types(mut sig: &str) -> Result<Vec<&str>> {
    let mut out = Vec::new();
    while !sig.is_empty() {
        let (first, rest) = split_type(sig)?;
        out.push(first);
        sig = rest;
    }
    Ok(out)
}

/// Reads values from a message (or its body, which starts 8-aligned),
/// checking every length against the bytes there are.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    big_endian: bool,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| malformed("truncated"))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn align(&mut self, n: usize) -> Result<()> {
        let to = self.pos.next_multiple_of(n);
        self.take(to - self.pos).map(drop)
    }

    fn u32(&mut self) -> Result<u32> {
        self.align(4)?;
        let b = self.take(4)?;
        let b = [b[0], b[1], b[2], b[3]];
        Ok(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn u64(&mut self) -> Result<u64> {
        self.align(8)?;
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(if self.big_endian {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        })
    }

    /// `len` bytes of text and the NUL after them.
    fn text(&mut self, len: usize) -> Result<String> {
        let b = self.take(len.checked_add(1).ok_or_else(|| malformed("length"))?)?;
        let (text, nul) = b.split_at(len);
        if nul != [0] || text.contains(&0) {
            return Err(malformed("string not NUL-terminated"));
        }
        String::from_utf8(text.to_vec()).map_err(|_| malformed("string not UTF-8"))
    }

    fn string(&mut self) -> Result<String> {
        let len = self.u32()? as usize;
        self.text(len)
    }

    fn signature(&mut self) -> Result<String> {
        let len = self.take(1)?[0] as usize;
        self.text(len)
    }

    /// One value of `sig`, a single complete type.
    fn value(&mut self, sig: &str, depth: usize) -> Result<Value> {
        if depth > MAX_DEPTH {
            return Err(malformed("nested too deep"));
        }
        Ok(match sig.as_bytes().first() {
            Some(b'y') => Value::Byte(self.take(1)?[0]),
            Some(b'b') => match self.u32()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                n => return Err(malformed(format!("boolean {n}"))),
            },
            Some(b'u') => Value::U32(self.u32()?),
            Some(b't') => Value::U64(self.u64()?),
            Some(b's') => Value::Str(self.string()?),
            Some(b'o') => Value::ObjectPath(self.string()?),
            Some(b'g') => Value::Signature(self.signature()?),
            Some(b'a') => {
                let element = &sig[1..];
                let len = self.u32()? as usize;
                if len > MAX_ARRAY {
                    return Err(malformed(format!("array of {len} bytes")));
                }
                self.align(alignment(element.as_bytes()[0]))?;
                let end = self.pos + len;
                if end > self.buf.len() {
                    return Err(malformed("truncated"));
                }
                let mut items = Vec::new();
                while self.pos < end {
                    items.push(self.value(element, depth + 1)?);
                }
                if self.pos != end {
                    return Err(malformed("array element past the array's end"));
                }
                Value::Array {
                    element: element.into(),
                    items,
                }
            }
            Some(b'(') => {
                self.align(8)?;
                let mut fields = Vec::new();
                for t in types(&sig[1..sig.len() - 1])? {
                    fields.push(self.value(t, depth + 1)?);
                }
                Value::Struct(fields)
            }
            Some(b'v') => {
                let s = self.signature()?;
                let (t, rest) = split_type(&s)?;
                if !rest.is_empty() {
                    return Err(malformed(format!("variant of {s:?}")));
                }
                Value::Variant(Box::new(self.value(t, depth + 1)?))
            }
            _ => return Err(malformed(format!("type {sig:?} not supported"))),
        })
    }
}

/// The length of the message at the start of `buf`, once its fixed
/// header is there.
fn frame_len(buf: &[u8]) -> Result<Option<usize>> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let big_endian = match buf[0] {
        b'l' => false,
        b'B' => true,
        other => return Err(malformed(format!("byte order {other:#x}"))),
    };
    let word = |at: usize| {
        let b = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        (if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }) as usize
    };
    let (body, fields) = (word(4), word(12));
    if fields > MAX_ARRAY || body > MAX_MESSAGE {
        return Err(malformed("longer than D-Bus allows"));
    }
    let total = (16 + fields).next_multiple_of(8) + body;
    if total > MAX_MESSAGE {
        return Err(malformed("longer than D-Bus allows"));
    }
    Ok(Some(total))
}

/// A message received.
#[derive(Debug)]
pub struct Message {
    kind: u8,
    reply_serial: Option<u32>,
    pub interface: Option<String>,
    pub member: Option<String>,
    error_name: Option<String>,
    signature: String,
    big_endian: bool,
    body: Vec<u8>,
}

impl Message {
    /// Parses one whole message (`bytes` is exactly its length).
    fn parse(bytes: &[u8]) -> Result<Message> {
        if frame_len(bytes)? != Some(bytes.len()) {
            return Err(malformed("truncated"));
        }
        let big_endian = bytes[0] == b'B';
        if bytes[3] != 1 {
            return Err(malformed(format!("protocol version {}", bytes[3])));
        }
        let mut r = Reader {
            buf: bytes,
            pos: 12,
            big_endian,
        };
        let Value::Array { items, .. } = r.value("a(yv)", 0)? else {
            unreachable!("an array signature reads an array")
        };
        let mut m = Message {
            kind: bytes[1],
            reply_serial: None,
            interface: None,
            member: None,
            error_name: None,
            signature: String::new(),
            big_endian,
            body: Vec::new(),
        };
        for field in items {
            let Value::Struct(mut f) = field else {
                unreachable!("a struct signature reads a struct")
            };
            let (Some(Value::Variant(v)), Some(Value::Byte(code))) = (f.pop(), f.pop()) else {
                unreachable!("(yv) reads a byte and a variant")
            };
            match (code, *v) {
                (FIELD_INTERFACE, Value::Str(s)) => m.interface = Some(s),
                (FIELD_MEMBER, Value::Str(s)) => m.member = Some(s),
                (FIELD_ERROR_NAME, Value::Str(s)) => m.error_name = Some(s),
                (FIELD_REPLY_SERIAL, Value::U32(n)) => m.reply_serial = Some(n),
                (FIELD_SIGNATURE, Value::Signature(s)) => m.signature = s,
                (
                    FIELD_INTERFACE | FIELD_MEMBER | FIELD_ERROR_NAME | FIELD_REPLY_SERIAL
                    | FIELD_SIGNATURE,
                    other,
                ) => {
                    return Err(malformed(format!(
                        "header field {code} of type {}",
                        other.signature()
                    )))
                }
                // The others (path, destination, sender, unix fds, any
                // newer one) say nothing the driver needs.
                _ => {}
            }
        }
        if matches!(m.kind, METHOD_RETURN | ERROR) && m.reply_serial.is_none() {
            return Err(malformed("reply without a reply serial"));
        }
        r.align(8)?;
        m.body = bytes[r.pos..].to_vec();
        Ok(m)
    }

    /// The body's values, as its signature says.
    pub fn body(&self) -> Result<Vec<Value>> {
        let mut r = Reader {
            buf: &self.body,
            pos: 0,
            big_endian: self.big_endian,
        };
        let values = types(&self.signature)?
            .into_iter()
            .map(|t| r.value(t, 0))
            .collect::<Result<Vec<_>>>()?;
        if r.pos != self.body.len() {
            return Err(malformed("bytes after the body's values"));
        }
        Ok(values)
    }

    fn remote_error(&self) -> RemoteError {
        let message = match self.body().ok().as_deref() {
            Some([Value::Str(s), ..]) => s.clone(),
            _ => String::new(),
        };
        RemoteError {
            name: self
                .error_name
                .clone()
                .unwrap_or_else(|| "(no error name)".into()),
            message,
        }
    }
}

/// A direct connection to one peer.
pub struct Connection {
    stream: UnixStream,
    /// Bytes read beyond the last whole message (or authentication line).
    buf: Vec<u8>,
    serial: u32,
    /// The signals that arrived while the last call waited for its reply.
    signals: VecDeque<Message>,
}

impl Connection {
    /// Connects to the socket at `path` and authenticates.
    pub fn open(path: &Path, timeout: Duration) -> Result<Connection> {
        let stream = UnixStream::connect(path).map_err(|e| Error::Other(e.to_string()))?;
        Connection::over(stream, timeout)
    }

    /// Authenticates over a connected stream.
    fn over(stream: UnixStream, timeout: Duration) -> Result<Connection> {
        stream
            .set_write_timeout(Some(timeout))
            .map_err(|e| Error::Other(e.to_string()))?;
        let mut c = Connection {
            stream,
            buf: Vec::new(),
            serial: 0,
            signals: VecDeque::new(),
        };
        c.authenticate(Instant::now() + timeout)?;
        Ok(c)
    }

    /// SASL EXTERNAL with no initial response: the server's challenge, if
    /// it sends one (`DATA`), gets an empty answer, and the server
    /// identifies us by the socket's credentials.
    ///
    /// `BEGIN` goes with that answer, before the server's `OK`, so the
    /// first message can only arrive once the server has left the
    /// handshake. systemd (sd-bus, 257 at least) leaves a message that
    /// reaches it in the same read as `BEGIN` unread until more bytes
    /// come, and the caller waits for its reply in vain: in the VM lane
    /// a fresh connection's first call went unanswered for 30 s in most
    /// runs of the systemd tests.
    fn authenticate(&mut self, deadline: Instant) -> Result<()> {
        self.send(b"\0AUTH EXTERNAL\r\n")?;
        let mut line = self.read_line(deadline)?;
        let challenged = line == "DATA" || line.starts_with("DATA ");
        if challenged {
            self.send(b"DATA\r\nBEGIN\r\n")?;
            line = self.read_line(deadline)?;
        }
        if !line.starts_with("OK ") {
            return Err(Error::Other(format!(
                "authentication (SASL EXTERNAL) refused: {line:?}"
            )));
        }
        if challenged {
            Ok(())
        } else {
            self.send(b"BEGIN\r\n")
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream
            .write_all(bytes)
            .map_err(|e| Error::Other(format!("send: {e}")))
    }

    /// Reads more into the buffer; false when the deadline passed first.
    fn fill(&mut self, deadline: Instant) -> Result<bool> {
        let mut chunk = [0u8; 8192];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| Error::Other(e.to_string()))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(Error::Other("the peer closed the connection".into())),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::WouldBlock | ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(Error::Other(format!("receive: {e}"))),
            }
        }
    }

    fn read_line(&mut self, deadline: Instant) -> Result<String> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                return Ok(line);
            }
            if self.buf.len() > MAX_AUTH_LINE {
                return Err(Error::Other("authentication: line too long".into()));
            }
            if !self.fill(deadline)? {
                return Err(Error::Other("authentication: no answer".into()));
            }
        }
    }

    /// The next message; None when the deadline passed first.
    fn read_message(&mut self, deadline: Instant) -> Result<Option<Message>> {
        loop {
            if let Some(len) = frame_len(&self.buf)? {
                if self.buf.len() >= len {
                    let m = Message::parse(&self.buf[..len]);
                    self.buf.drain(..len);
                    return m.map(Some);
                }
            }
            if !self.fill(deadline)? {
                return Ok(None);
            }
        }
    }

    /// Calls a method and waits up to `timeout` for its reply: the
    /// reply's values, or the error the peer answered. Signals that arrive
    /// meanwhile are kept for [`Connection::next_signal`]; those kept from
    /// an earlier call are dropped (they came before anything this call
    /// starts).
    pub fn call(
        &mut self,
        call: &MethodCall,
        timeout: Duration,
    ) -> Result<std::result::Result<Vec<Value>, RemoteError>> {
        self.serial = self.serial.checked_add(1).unwrap_or(1);
        let serial = self.serial;
        let bytes = call.marshal(serial)?;
        self.signals.clear();
        self.send(&bytes)?;
        let deadline = Instant::now() + timeout;
        // What came instead, for the error if the reply never does.
        let mut others = Vec::new();
        loop {
            let Some(m) = self.read_message(deadline)? else {
                return Err(Error::Other(format!(
                    "no reply to call {serial} within {}s ({} signals and {} other messages {others:?} came meanwhile, {} bytes of one unfinished)",
                    timeout.as_secs(),
                    self.signals.len(),
                    others.len(),
                    self.buf.len()
                )));
            };
            match m.kind {
                SIGNAL => self.signals.push_back(m),
                METHOD_RETURN if m.reply_serial == Some(serial) => return Ok(Ok(m.body()?)),
                ERROR if m.reply_serial == Some(serial) => return Ok(Err(m.remote_error())),
                // A late reply to an earlier call, a call to us, a type
                // newer than this code: not ours to act on.
                _ => others.push((m.kind, m.reply_serial)),
            }
        }
    }

    /// The next signal; None when the deadline passed first.
    pub fn next_signal(&mut self, deadline: Instant) -> Result<Option<Message>> {
        if let Some(m) = self.signals.pop_front() {
            return Ok(Some(m));
        }
        loop {
            match self.read_message(deadline)? {
                None => return Ok(None),
                Some(m) if m.kind == SIGNAL => return Ok(Some(m)),
                Some(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of(v: &Value) -> Vec<u8> {
        let mut w = Writer::default();
        w.value(v).unwrap();
        w.buf
    }

    /// Reads `sig` back from `bytes` and checks nothing is left over.
    fn read(sig: &str, bytes: &[u8]) -> Result<Value> {
        let mut r = Reader {
            buf: bytes,
            pos: 0,
            big_endian: false,
        };
        let v = r.value(sig, 0)?;
        assert_eq!(r.pos, bytes.len(), "{sig}: bytes left over");
        Ok(v)
    }

    /// Each type against the bytes the specification gives it, and back.
    #[test]
    fn marshals_each_type() {
        let s = |x: &str| Value::Str(x.into());
        let cases: Vec<(Value, Vec<u8>)> = vec![
            (Value::Byte(0x2a), vec![0x2a]),
            (Value::Bool(true), vec![1, 0, 0, 0]),
            (Value::U32(0x0102_0304), vec![4, 3, 2, 1]),
            (
                Value::U64(u64::MAX - 1),
                vec![0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ),
            (s("ab"), vec![2, 0, 0, 0, b'a', b'b', 0]),
            (Value::ObjectPath("/".into()), vec![1, 0, 0, 0, b'/', 0]),
            (Value::Signature("su".into()), vec![2, b's', b'u', 0]),
            (Value::from(vec![0x8fu8, 1]), vec![2, 0, 0, 0, 0x8f, 1]),
            (Value::from(vec![3u32]), vec![4, 0, 0, 0, 3, 0, 0, 0]),
            (
                Value::from(vec!["x".to_string()]),
                vec![6, 0, 0, 0, 1, 0, 0, 0, b'x', 0],
            ),
            (
                Value::from(vec![("a".to_string(), "b".to_string())]),
                // Length 14: from the struct at 8 (after the padding) to
                // the end of "b"; the padding between the strings counts.
                vec![
                    14, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, b'a', 0, 0, 0, 1, 0, 0, 0, b'b', 0,
                ],
            ),
            (
                Value::array("(st)", [Value::Struct(vec![s("c"), Value::U64(5)])]),
                vec![
                    16, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, b'c', 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0,
                ],
            ),
            (
                Value::Variant(Box::new(Value::U32(7))),
                vec![1, b'u', 0, 0, 7, 0, 0, 0],
            ),
            (
                Value::Variant(Box::new(Value::from(vec!["x".to_string()]))),
                vec![2, b'a', b's', 0, 6, 0, 0, 0, 1, 0, 0, 0, b'x', 0],
            ),
            (
                Value::array(
                    "(sv)",
                    [Value::Struct(vec![
                        s("D"),
                        Value::Variant(Box::new(Value::Bool(false))),
                    ])],
                ),
                vec![
                    16, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, b'D', 0, 1, b'b', 0, 0, 0, 0, 0, 0, 0, 0,
                ],
            ),
        ];
        for (v, want) in cases {
            assert_eq!(bytes_of(&v), want, "{v:?}");
            assert_eq!(read(&v.signature(), &want).unwrap(), v, "{want:?}");
        }
    }

    #[test]
    fn alignment_counts_from_the_start() {
        // A u64 after a byte starts at 8.
        let mut w = Writer::default();
        w.value(&Value::Byte(1)).unwrap();
        w.value(&Value::U64(2)).unwrap();
        assert_eq!(w.buf, [1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
        // An empty array of 8-aligned elements still pads to 8, and its
        // length does not count that padding.
        let empty = Value::array("(sa(sv))", []);
        assert_eq!(bytes_of(&empty), [0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(read("a(sa(sv))", &[0; 8]).unwrap(), empty);
        // An array of u64 after its length: 4 bytes of padding, length 8.
        assert_eq!(
            bytes_of(&Value::array("t", [Value::U64(5)])),
            [8, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn values_that_cannot_be_sent() {
        let mut w = Writer::default();
        assert!(w.value(&Value::Str("a\0b".into())).is_err());
        assert!(w.value(&Value::Struct(vec![])).is_err());
        assert!(w.value(&Value::array("s", [Value::U32(1)])).is_err());
        assert!(w.value(&Value::Signature("a".repeat(300))).is_err());
    }

    /// A method call, byte by byte as the specification lays it out.
    #[test]
    fn a_method_call() {
        let call = MethodCall {
            destination: "d.e",
            path: "/",
            interface: "a.b",
            member: "M",
            args: vec![Value::Str("x".into())],
        };
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            b'l', METHOD_CALL, 0, 1,
            6, 0, 0, 0,    // body length
            9, 0, 0, 0,    // serial
            71, 0, 0, 0,   // header fields: 16..87
            // 16: PATH, o "/"
            1, 1, b'o', 0, 1, 0, 0, 0, b'/', 0, 0, 0, 0, 0, 0, 0,
            // 32: INTERFACE, s "a.b"
            2, 1, b's', 0, 3, 0, 0, 0, b'a', b'.', b'b', 0, 0, 0, 0, 0,
            // 48: MEMBER, s "M"
            3, 1, b's', 0, 1, 0, 0, 0, b'M', 0, 0, 0, 0, 0, 0, 0,
            // 64: DESTINATION, s "d.e"
            6, 1, b's', 0, 3, 0, 0, 0, b'd', b'.', b'e', 0, 0, 0, 0, 0,
            // 80: SIGNATURE, g "s"; then padding to 88
            8, 1, b'g', 0, 1, b's', 0, 0,
            // 88: the body
            1, 0, 0, 0, b'x', 0,
        ];
        assert_eq!(call.marshal(9).unwrap(), want);
    }

    fn reply(kind: u8, reply_serial: u32, fields: Vec<(u8, Value)>, body: &[Value]) -> Vec<u8> {
        let mut all = vec![(FIELD_REPLY_SERIAL, Value::U32(reply_serial))];
        all.extend(fields);
        marshal(kind, 100 + reply_serial, all, body).unwrap()
    }

    fn job_removed(id: u32, job: &str, result: &str) -> Vec<u8> {
        marshal(
            SIGNAL,
            1000 + id,
            vec![
                (
                    FIELD_PATH,
                    Value::ObjectPath("/org/freedesktop/systemd1".into()),
                ),
                (
                    FIELD_INTERFACE,
                    Value::Str("org.freedesktop.systemd1.Manager".into()),
                ),
                (FIELD_MEMBER, Value::Str("JobRemoved".into())),
            ],
            &[
                Value::U32(id),
                Value::ObjectPath(job.into()),
                Value::Str("u.scope".into()),
                Value::Str(result.into()),
            ],
        )
        .unwrap()
    }

    #[test]
    fn a_method_return() {
        #[rustfmt::skip]
        let bytes: Vec<u8> = vec![
            b'l', METHOD_RETURN, 1, 1,
            10, 0, 0, 0,   // body length
            7, 0, 0, 0,    // serial
            15, 0, 0, 0,   // header fields: 16..31
            5, 1, b'u', 0, 3, 0, 0, 0,   // REPLY_SERIAL 3
            8, 1, b'g', 0, 1, b'o', 0, 0, // SIGNATURE "o", padding
            5, 0, 0, 0, b'/', b'j', b'/', b'4', b'2', 0,
        ];
        let m = Message::parse(&bytes).unwrap();
        assert_eq!((m.kind, m.reply_serial), (METHOD_RETURN, Some(3)));
        assert_eq!(m.body().unwrap(), [Value::ObjectPath("/j/42".into())]);
    }

    /// A big-endian JobRemoved, laid out by hand.
    #[test]
    fn a_big_endian_signal() {
        #[rustfmt::skip]
        let bytes: Vec<u8> = vec![
            b'B', SIGNAL, 0, 1,
            0, 0, 0, 29,   // body length
            0, 0, 0, 9,    // serial
            0, 0, 0, 66,   // header fields: 16..82
            1, 1, b'o', 0, 0, 0, 0, 1, b'/', 0, 0, 0, 0, 0, 0, 0,
            2, 1, b's', 0, 0, 0, 0, 1, b'i', 0, 0, 0, 0, 0, 0, 0,
            3, 1, b's', 0, 0, 0, 0, 10, b'J', b'o', b'b', b'R', b'e', b'm', b'o', b'v', b'e', b'd', 0,
            0, 0, 0, 0, 0,
            8, 1, b'g', 0, 4, b'u', b'o', b's', b's', 0, 0, 0, 0, 0, 0, 0,
            // 88: the body, uoss
            0, 0, 0, 7,
            0, 0, 0, 2, b'/', b'j', 0, 0,
            0, 0, 0, 1, b'u', 0, 0, 0,
            0, 0, 0, 4, b'd', b'o', b'n', b'e', 0,
        ];
        assert_eq!(frame_len(&bytes).unwrap(), Some(bytes.len()));
        let m = Message::parse(&bytes).unwrap();
        assert_eq!(m.kind, SIGNAL);
        assert_eq!(m.member.as_deref(), Some("JobRemoved"));
        assert_eq!(m.interface.as_deref(), Some("i"));
        assert_eq!(
            m.body().unwrap(),
            [
                Value::U32(7),
                Value::ObjectPath("/j".into()),
                Value::Str("u".into()),
                Value::Str("done".into())
            ]
        );
    }

    #[test]
    fn an_error_reply() {
        let bytes = reply(
            ERROR,
            4,
            vec![(
                FIELD_ERROR_NAME,
                Value::Str("org.freedesktop.systemd1.UnitExists".into()),
            )],
            &[Value::Str("Unit x.scope already exists.".into())],
        );
        let m = Message::parse(&bytes).unwrap();
        assert_eq!(
            m.remote_error().to_string(),
            "org.freedesktop.systemd1.UnitExists: Unit x.scope already exists."
        );
    }

    #[test]
    fn a_variant_reply() {
        let bytes = reply(
            METHOD_RETURN,
            2,
            vec![],
            &[Value::Variant(Box::new(Value::Str("257.9-1".into())))],
        );
        let m = Message::parse(&bytes).unwrap();
        assert_eq!(
            m.body().unwrap(),
            [Value::Variant(Box::new(Value::Str("257.9-1".into())))]
        );
    }

    /// Every prefix of a message is incomplete, never a message, never a
    /// panic; lengths that point past the data are errors.
    #[test]
    fn truncated_and_malformed_input() {
        let whole = job_removed(5, "/j/5", "done");
        for n in 0..whole.len() {
            let part = &whole[..n];
            match frame_len(part).unwrap() {
                None => assert!(n < 16),
                Some(len) => assert!(len > n),
            }
            assert!(Message::parse(part).is_err(), "prefix of {n} bytes");
        }
        // A body that stops inside a string: its length claims more.
        let mut short = whole.clone();
        // The length of "done", the last string: 4 bytes, then 5 of text.
        short[whole.len() - 9] = 200;
        assert!(Message::parse(&short).unwrap().body().is_err());
        // An array length past the end of the header.
        assert!(read("as", &[200, 0, 0, 0, 1, 0, 0, 0, b'x', 0]).is_err());
        // An array element running past the array's length.
        assert!(read("as", &[3, 0, 0, 0, 1, 0, 0, 0, b'x', 0]).is_err());
        // A string without its NUL, a bad boolean, a bad byte order.
        assert!(read("s", &[1, 0, 0, 0, b'x', b'y']).is_err());
        assert!(read("b", &[2, 0, 0, 0]).is_err());
        let mut bad = whole.clone();
        bad[0] = b'x';
        assert!(frame_len(&bad).is_err());
        // A length beyond what D-Bus allows.
        let mut huge = whole.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(frame_len(&huge).is_err());
        // Variants nested past the limit.
        let mut deep = Vec::new();
        for _ in 0..100 {
            deep.extend_from_slice(&[1, b'v', 0]);
        }
        assert!(read("v", &deep).is_err());
        // Signatures that do not parse.
        for sig in ["a", "(", "()", "(s", "z", "a{"] {
            assert!(types(sig).is_err(), "{sig}");
        }
        assert_eq!(types("ua(sv)as").unwrap(), ["u", "a(sv)", "as"]);
    }

    /// What a server does on its side of the socket.
    enum Step {
        Expect(&'static [u8]),
        Send(Vec<u8>),
        /// Reads one whole message, checks its serial.
        ExpectCall(u32),
    }

    /// Runs `steps` on a thread; the server's end of the socket comes back
    /// from the join, still open.
    fn fake_server(steps: Vec<Step>) -> (UnixStream, std::thread::JoinHandle<UnixStream>) {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || {
            for step in steps {
                match step {
                    Step::Expect(want) => {
                        let mut got = vec![0; want.len()];
                        theirs.read_exact(&mut got).unwrap();
                        assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
                    }
                    Step::Send(bytes) => theirs.write_all(&bytes).unwrap(),
                    Step::ExpectCall(serial) => {
                        let mut head = [0u8; 16];
                        theirs.read_exact(&mut head).unwrap();
                        let len = frame_len(&head).unwrap().unwrap();
                        let mut rest = vec![0; len - 16];
                        theirs.read_exact(&mut rest).unwrap();
                        assert_eq!(
                            u32::from_le_bytes([head[8], head[9], head[10], head[11]]),
                            serial
                        );
                    }
                }
            }
            theirs
        });
        (ours, server)
    }

    const AUTH: &[u8] = b"\0AUTH EXTERNAL\r\n";

    /// The exchange systemd and dbus-daemon have: a challenge, our empty
    /// answer with BEGIN before the server's OK (in one write: systemd
    /// must see BEGIN before the first call arrives); then a call whose
    /// reply comes after a signal and a stale reply, and the signal kept
    /// for later.
    #[test]
    fn authenticates_and_calls() {
        let (stream, server) = fake_server(vec![
            Step::Expect(AUTH),
            Step::Send(b"DATA\r\n".to_vec()),
            Step::Expect(b"DATA\r\nBEGIN\r\n"),
            Step::Send(b"OK 0123456789abcdef0123456789abcdef\r\n".to_vec()),
            Step::ExpectCall(1),
            Step::Send(job_removed(1, "/j/1", "done")),
            Step::Send(reply(METHOD_RETURN, 77, vec![], &[])),
            Step::Send(reply(
                METHOD_RETURN,
                1,
                vec![],
                &[Value::ObjectPath("/j/2".into())],
            )),
            Step::ExpectCall(2),
            Step::Send(job_removed(3, "/j/3", "done")),
            Step::Send(reply(
                ERROR,
                2,
                vec![(FIELD_ERROR_NAME, Value::Str("org.x.NoSuchUnit".into()))],
                &[Value::Str("Unit u not found.".into())],
            )),
            Step::Send(job_removed(2, "/j/2", "done")),
        ]);
        let mut c = Connection::over(stream, Duration::from_secs(10)).unwrap();
        let call = |member| MethodCall {
            destination: "org.x",
            path: "/org/x",
            interface: "org.x.M",
            member,
            args: vec![Value::Str("u".into()), Value::from(vec![1u32])],
        };
        let got = c.call(&call("Start"), Duration::from_secs(10)).unwrap();
        assert_eq!(got, Ok(vec![Value::ObjectPath("/j/2".into())]));
        let err = c.call(&call("Stop"), Duration::from_secs(10)).unwrap();
        assert_eq!(err.unwrap_err().name, "org.x.NoSuchUnit");
        // The signal from during the first call is gone with the second;
        // the one from during the second comes first, then the socket's.
        let deadline = Instant::now() + Duration::from_secs(10);
        for id in [3, 2] {
            let s = c.next_signal(deadline).unwrap().unwrap();
            assert_eq!(s.member.as_deref(), Some("JobRemoved"));
            assert_eq!(s.body().unwrap()[0], Value::U32(id));
        }
        // Nothing more comes: the deadline ends the wait.
        let peer = server.join().unwrap();
        assert!(c
            .next_signal(Instant::now() + Duration::from_millis(50))
            .unwrap()
            .is_none());
        // The peer gone: an error.
        drop(peer);
        let e = c.call(&call("Start"), Duration::from_secs(1)).unwrap_err();
        assert!(
            e.to_string().contains("closed") || e.to_string().contains("send"),
            "{e}"
        );
    }

    /// An sd-bus server before v246 accepts `AUTH EXTERNAL` at once.
    #[test]
    fn authenticates_without_a_challenge() {
        let (stream, server) = fake_server(vec![
            Step::Expect(AUTH),
            Step::Send(b"OK 0123456789abcdef0123456789abcdef\r\n".to_vec()),
            Step::Expect(b"BEGIN\r\n"),
        ]);
        Connection::over(stream, Duration::from_secs(10)).unwrap();
        server.join().unwrap();
    }

    #[test]
    fn a_refusal_is_an_error() {
        let (stream, server) = fake_server(vec![
            Step::Expect(AUTH),
            Step::Send(b"REJECTED EXTERNAL\r\n".to_vec()),
        ]);
        let e = Connection::over(stream, Duration::from_secs(10))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("refused") && e.contains("REJECTED EXTERNAL"),
            "{e}"
        );
        server.join().unwrap();
        // A server that never answers: the timeout ends the wait.
        let (stream, _quiet) = UnixStream::pair().unwrap();
        let e = Connection::over(stream, Duration::from_millis(100))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("no answer"), "{e}");
    }
}
