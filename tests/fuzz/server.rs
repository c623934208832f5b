//! The real `serve` application in-process against a fresh Kratos stand-in, talked to over raw
//! HTTP/1.1 so that a request can carry anything: bytes that are not UTF-8 in a header, a
//! `Content-Length` that lies, chunked bodies, no `Content-Type`.
//!
//! Each property owns one [`Server`]; its cases run one after another on the property's own
//! actix system, so that the stand-in's request log belongs to one request at a time.

use std::path::Path;
use std::time::Duration;

use kratos_jit::config;
use kratos_jit::http::Application;
use kratos_jit::mapper::WorkerProgram;
use kratos_jit::provider::Providers;
use kratos_jit::standin::StandIn;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const API_SECRET: &str = "fuzz-api-secret-0123456789";
pub const TRUSTED_SECRET: &str = "fuzz-trusted-secret-0123456789";
pub const HOOK_SECRET: &str = "fuzz-hook-secret-0123456789";
/// `api.max_body_bytes`, its default.
pub const BODY_LIMIT: usize = 65_536;

/// An honest request gets its answer within this; the deadlines below are far shorter.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// `body_timeout` of the server under test: a body that does not arrive is answered 408 then.
pub const BODY_TIMEOUT: &str = "500ms";

pub struct Server {
    pub port: u16,
    pub kratos: StandIn,
    pub system: actix_web::rt::SystemRunner,
}

impl Server {
    /// Serves the sample providers in `mappers/` with short deadlines, on a free port.
    pub fn start() -> Server {
        let kratos = StandIn::start().expect("the stand-in starts");
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let env: Vec<(String, String)> = [
            ("KRATOS_JIT__LISTEN", "127.0.0.1:0".to_owned()),
            ("KRATOS_JIT__BODY_TIMEOUT", BODY_TIMEOUT.to_owned()),
            (
                "KRATOS_JIT__PROVIDERS",
                manifest.join("mappers").display().to_string(),
            ),
            ("KRATOS_JIT__KRATOS__ADMIN_URL", kratos.base_url()),
            ("KRATOS_JIT__KRATOS__REQUEST_TIMEOUT", "500ms".to_owned()),
            ("KRATOS_JIT__KRATOS__DEADLINE", "1s".to_owned()),
            ("KRATOS_JIT__API__SECRETS", API_SECRET.to_owned()),
            (
                "KRATOS_JIT__API__TRUSTED_SECRETS",
                TRUSTED_SECRET.to_owned(),
            ),
            ("KRATOS_JIT__API__DEADLINE", "3s".to_owned()),
            ("KRATOS_JIT__HOOKS__SECRETS", HOOK_SECRET.to_owned()),
            ("KRATOS_JIT__HOOKS__DEADLINE", "1s".to_owned()),
            ("KRATOS_JIT__MAPPER__WORKERS", "1".to_owned()),
            // The sample issuers do not exist: their keys are unavailable, quickly.
            ("KRATOS_JIT__TOKEN__HTTP_TIMEOUT", "300ms".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let config = config::load_from(None, env).unwrap_or_else(|e| panic!("{e:?}"));
        let (providers, _) = Providers::load(&config.providers).unwrap_or_else(|e| panic!("{e:?}"));
        let system = actix_web::rt::System::new();
        let port = system.block_on(async {
            let app = Application::build(
                &config,
                providers,
                WorkerProgram::new(env!("CARGO_BIN_EXE_kratos-jit")),
            )
            .expect("the application builds");
            let port = app.port();
            actix_web::rt::spawn(app.run_until_stopped());
            port
        });
        Server {
            port,
            kratos,
            system,
        }
    }

    /// Sends `request` and reads the answer (see [`Answer`]).
    pub fn send(&self, request: &Request) -> Answer {
        self.system.block_on(exchange(self.port, request))
    }

    /// Whether `GET /health/alive` answers 200 within a few seconds.
    pub fn alive(&self) -> bool {
        let request = Request {
            method: "GET".into(),
            path: "/health/alive".into(),
            headers: Vec::new(),
            body: Vec::new(),
            framing: Framing::Length,
        };
        matches!(self.send(&request), Answer::Status(200, _))
    }
}

/// How a request's body is framed.
#[derive(Clone, Debug, PartialEq)]
pub enum Framing {
    /// `Content-Length` is the body's length.
    Length,
    /// `Transfer-Encoding: chunked`, in chunks of these sizes (cycled).
    Chunked(Vec<usize>),
    /// `Content-Length` promises this many bytes more than the body has: the server may wait
    /// for them.
    Promises(u64),
}

#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Besides `Host`, `Connection: close` and the framing header.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub framing: Framing,
}

impl Request {
    pub fn post(path: &str, headers: Vec<(String, Vec<u8>)>, body: Vec<u8>) -> Request {
        Request {
            method: "POST".into(),
            path: path.into(),
            headers,
            body,
            framing: Framing::Length,
        }
    }

    /// Whether the framing is honest, so that the server has the whole request.
    pub fn is_complete(&self) -> bool {
        !matches!(self.framing, Framing::Promises(_))
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n",
            self.method, self.path
        )
        .into_bytes();
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        match &self.framing {
            Framing::Length => {
                out.extend_from_slice(
                    format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes(),
                );
                out.extend_from_slice(&self.body);
            }
            Framing::Promises(more) => {
                let promised = self.body.len() as u64 + more;
                out.extend_from_slice(format!("Content-Length: {promised}\r\n\r\n").as_bytes());
                out.extend_from_slice(&self.body);
            }
            Framing::Chunked(sizes) => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                let mut rest = &self.body[..];
                let mut sizes = sizes.iter().copied().map(|s| s.max(1)).cycle();
                while !rest.is_empty() {
                    let size = sizes.next().unwrap_or(rest.len()).min(rest.len());
                    out.extend_from_slice(format!("{size:x}\r\n").as_bytes());
                    out.extend_from_slice(&rest[..size]);
                    out.extend_from_slice(b"\r\n");
                    rest = &rest[size..];
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
        }
        out
    }
}

/// What came back.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// The status and the body.
    Status(u16, Vec<u8>),
    /// The connection closed without a status line.
    Closed,
    /// Nothing within [`ANSWER_WITHIN`].
    Silent,
}

impl Answer {
    pub fn status(&self) -> Option<u16> {
        match self {
            Answer::Status(status, _) => Some(*status),
            _ => None,
        }
    }
}

async fn exchange(port: u16, request: &Request) -> Answer {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return Answer::Closed;
    };
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let bytes = request.to_bytes();
    // Written alongside the read: a server that refuses a large body early answers and closes
    // while the rest is still being sent.
    let write = actix_web::rt::spawn(async move {
        let _ = writer.write_all(&bytes).await;
        writer
    });
    let wait = ANSWER_WITHIN;
    let mut received = Vec::new();
    let read = tokio::time::timeout(wait, async {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
            if complete_response(&received) {
                break;
            }
        }
    })
    .await;
    // Keeping the writer until here keeps the connection open while the answer is read.
    write.abort();
    match parse_response(&received) {
        Some((status, body)) => Answer::Status(status, body),
        None if read.is_err() => Answer::Silent,
        None => Answer::Closed,
    }
}

/// Whether `bytes` hold a whole response (its head and a `Content-Length` body).
fn complete_response(bytes: &[u8]) -> bool {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match length {
        Some(length) => bytes.len() >= end + 4 + length,
        None => false,
    }
}

fn parse_response(bytes: &[u8]) -> Option<(u16, Vec<u8>)> {
    let line_end = bytes.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&bytes[..line_end]).ok()?;
    let status = line.split(' ').nth(1)?.parse().ok()?;
    let body = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|end| bytes[end + 4..].to_vec())
        .unwrap_or_default();
    Some((status, body))
}
