//! The logs of a full run of the real binary hold no token, cookie, secret or raw claim value.
//!
//! `kratos-jit serve` runs as a child process at `KRATOS_JIT_LOG=debug`, configured only through
//! `KRATOS_JIT__…` variables, against the Kratos stand-in and a test issuer; everything it writes
//! to stderr and stdout (its mapper workers' included) is captured. A full run goes through it:
//! logins created, unchanged, updated and denied, malformed requests, a wrong secret and an
//! expired token, some with a session cookie. The captured log must show the provisioning events
//! and none of the values sent.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kratos_jit::standin::StandIn;
use serde_json::{Value, json};

use crate::helpers::{API_SECRET, TRUSTED_SECRET, token_providers, umbrella_token_claims};
use crate::issuer::{TestIssuer, key_a, merge, now};

const PROVIDER: &str = "okta-oidc-umbrella";
const WRONG_SECRET: &str = "wrong-api-secret-9876543210";
const KRATOS_BEARER: &str = "kratos-admin-bearer-5ecret-0123456789";
const COOKIE_VALUE: &str = "ory_st_c00kieSessionValue0123456789";
/// A login from outside Umbrella's verified domain.
const FOREIGN: &[(&str, &str)] = &[
    ("sub", "00uF0r31gn9Q8w7E6r5T"),
    ("email", "mallory@foreign.example"),
    ("preferred_username", "mallory@foreign.example"),
    ("given_name", "Mallory"),
    ("family_name", "Marlowe"),
    ("name", "Mallory Marlowe"),
];

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Format {
    Text,
    Json,
}

impl Format {
    pub fn flag(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Json => "json",
        }
    }

    /// How a log line shows `name` set to the plain word `value`.
    fn field(self, name: &str, value: &str) -> String {
        match self {
            Format::Text => format!("{name}={value}"),
            Format::Json => format!("\"{name}\":\"{value}\""),
        }
    }
}

/// `kratos-jit serve` as a child process, its output captured.
pub struct Served {
    child: Child,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

fn capture(stream: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut text = into.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    })
}

impl Served {
    pub fn start(format: Format, env: &[(&str, String)]) -> Served {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kratos-jit"));
        command.args(["serve", "--log-format", format.flag()]);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("KRATOS_JIT") {
                command.env_remove(name);
            }
        }
        command
            .env("KRATOS_JIT_LOG", "debug")
            .envs(env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("kratos-jit serve starts");
        let (stderr, stdout) = (Arc::default(), Arc::default());
        let readers = vec![
            capture(child.stderr.take().unwrap(), Arc::clone(&stderr)),
            capture(child.stdout.take().unwrap(), Arc::clone(&stdout)),
        ];
        Served {
            child,
            stderr,
            stdout,
            readers,
        }
    }

    fn log(&self) -> String {
        without_ansi(&self.stderr.lock().unwrap())
    }

    /// The base URL, once the server logged that it is serving.
    pub async fn address(&mut self) -> String {
        let started = Instant::now();
        loop {
            let log = self.log();
            if let Some(line) = log
                .lines()
                .find(|line| line.contains("Serving the provisioning API."))
            {
                return format!("http://127.0.0.1:{}", port_in(line));
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("kratos-jit serve exited ({status}) before serving:\n{log}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "kratos-jit serve did not start serving within 30 s:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server with SIGTERM, as an orchestrator would, and returns (stderr, stdout).
    pub async fn stop(mut self) -> (String, String) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: sends a signal to the child this test started and still holds (not yet
        // reaped, so the pid cannot have been reused).
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM could not be sent");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "kratos-jit serve did not stop within 20 s of SIGTERM:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // Mapper workers share the pipes; give them a moment to close their ends.
        let started = Instant::now();
        while !self.readers.iter().all(JoinHandle::is_finished)
            && started.elapsed() < Duration::from_secs(10)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(status.success(), "exit status {status}:\n{}", self.log());
        let stdout = without_ansi(&self.stdout.lock().unwrap());
        (self.log(), stdout)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // Only after a failed assertion: never leave the server running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The log without terminal colour codes (`ESC [ … m`), so values and fields read as written.
fn without_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The port in the "Serving" line, in either format (`port=N` or `"port":N`).
fn port_in(line: &str) -> u16 {
    let after = ["port=", "\"port\":"]
        .iter()
        .find_map(|field| line.split_once(field).map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no port in {line:?}"))
}

/// What was sent during the run and must never be logged, by label.
#[derive(Default)]
struct Sent(Vec<(String, String)>);

impl Sent {
    fn add(&mut self, label: impl Into<String>, value: impl Into<String>) {
        self.0.push((label.into(), value.into()));
    }

    /// The token, and its payload and signature parts.
    fn token(&mut self, label: &str, token: &str) {
        let parts: Vec<&str> = token.split('.').collect();
        self.add(format!("{label} (whole token)"), token);
        self.add(format!("{label} (payload part)"), parts[1]);
        self.add(format!("{label} (signature part)"), parts[2]);
    }

    /// The personal values of an ID token's claims: e-mail, names, groups and subject.
    fn claims(&mut self, label: &str, claims: &Value) {
        for claim in [
            "sub",
            "email",
            "preferred_username",
            "given_name",
            "family_name",
            "name",
        ] {
            if let Some(value) = claims[claim].as_str() {
                self.add(format!("{label}: {claim}"), value);
            }
        }
        for group in claims["groups"].as_array().into_iter().flatten() {
            self.add(format!("{label}: group"), group.as_str().unwrap());
        }
    }
}

/// One request of the run and what it must answer.
struct Step {
    what: &'static str,
    secret: &'static str,
    body: String,
    cookie: bool,
    status: u16,
    /// `body.action` for a provisioning answer, or a fragment of `error.message`.
    expect: &'static str,
}

async fn full_run(format: Format) {
    let kratos = StandIn::start().expect("stand-in starts");
    let key = key_a();
    let issuer = TestIssuer::start(&[&key]).await;
    let providers = token_providers(&issuer.url, None);
    let mut served = Served::start(
        format,
        &[
            ("KRATOS_JIT__LISTEN", "127.0.0.1:0".into()),
            (
                "KRATOS_JIT__PROVIDERS",
                providers.path().display().to_string(),
            ),
            ("KRATOS_JIT__KRATOS__ADMIN_URL", kratos.base_url()),
            ("KRATOS_JIT__KRATOS__BEARER_TOKEN", KRATOS_BEARER.into()),
            ("KRATOS_JIT__API__SECRETS", API_SECRET.into()),
            ("KRATOS_JIT__API__TRUSTED_SECRETS", TRUSTED_SECRET.into()),
            ("KRATOS_JIT__MAPPER__WORKERS", "2".into()),
        ],
    );
    let address = served.address().await;

    let mut sent = Sent::default();
    for (label, value) in [
        ("the API secret", API_SECRET),
        ("the trusted API secret", TRUSTED_SECRET),
        ("the wrong API secret", WRONG_SECRET),
        ("the Kratos bearer token", KRATOS_BEARER),
        ("the session cookie", COOKIE_VALUE),
    ] {
        sent.add(label, value);
    }
    let mut token_for = |label: &str, claims: &Value| {
        sent.claims(label, claims);
        let token = key.sign(claims);
        sent.token(label, &token);
        json!({"provider": PROVIDER, "id_token": token}).to_string()
    };
    let alice = umbrella_token_claims(&issuer, "user");
    let albert = umbrella_token_claims(&issuer, "admin");
    let mut demoted = albert.clone();
    merge(&mut demoted, json!({"groups": ["Umbrella-Users"]}));
    let mut foreign = umbrella_token_claims(&issuer, "user");
    merge(
        &mut foreign,
        Value::Object(
            FOREIGN
                .iter()
                .map(|(k, v)| ((*k).to_owned(), json!(v)))
                .collect(),
        ),
    );
    // An `email` claim that is not an address: the denial must not quote it.
    let mut not_an_address = umbrella_token_claims(&issuer, "user");
    merge(
        &mut not_an_address,
        json!({"sub": "00uNoAtSign0000", "email": "probe.user.no-at-sign"}),
    );
    let mut expired = alice.clone();
    merge(
        &mut expired,
        json!({"iat": now() - 900, "exp": now() - 600}),
    );
    let alice_body = token_for("alice's token", &alice);
    let trusted_body =
        json!({"provider": PROVIDER, "claims": kratos_claims_of(&alice)}).to_string();
    let steps = [
        Step {
            what: "a first login",
            secret: API_SECRET,
            body: alice_body.clone(),
            cookie: true,
            status: 200,
            expect: "created",
        },
        Step {
            what: "the same login again",
            secret: API_SECRET,
            body: alice_body.clone(),
            cookie: false,
            status: 200,
            expect: "unchanged",
        },
        Step {
            what: "an admin's first login",
            secret: API_SECRET,
            body: token_for("albert's token", &albert),
            cookie: false,
            status: 200,
            expect: "created",
        },
        Step {
            what: "the admin, demoted",
            secret: API_SECRET,
            body: token_for("albert's demoted token", &demoted),
            cookie: true,
            status: 200,
            expect: "updated",
        },
        Step {
            what: "a login from a foreign domain",
            secret: API_SECRET,
            body: token_for("the foreign token", &foreign),
            cookie: true,
            status: 403,
            expect: "denied",
        },
        Step {
            what: "an e-mail claim without an @",
            secret: API_SECRET,
            body: token_for("the token without an address", &not_an_address),
            cookie: false,
            status: 403,
            expect: "denied",
        },
        Step {
            what: "a trusted caller's raw claims",
            secret: TRUSTED_SECRET,
            body: trusted_body,
            cookie: false,
            status: 200,
            expect: "unchanged",
        },
        Step {
            what: "a truncated body",
            secret: API_SECRET,
            body: alice_body[..alice_body.len() - 2].to_owned(),
            cookie: true,
            status: 400,
            expect: "the body must be",
        },
        Step {
            what: "claims of the wrong type",
            secret: API_SECRET,
            body: json!({"provider": PROVIDER, "claims": alice["email"]}).to_string(),
            cookie: true,
            status: 400,
            expect: "invalid type: string",
        },
        Step {
            what: "a wrong secret",
            secret: WRONG_SECRET,
            body: alice_body.clone(),
            cookie: true,
            status: 401,
            expect: "missing or unknown API secret",
        },
        Step {
            what: "an expired token",
            secret: API_SECRET,
            body: token_for("the expired token", &expired),
            cookie: true,
            status: 401,
            expect: "the ID token expired",
        },
    ];

    let client = reqwest::Client::new();
    for step in &steps {
        let mut request = client
            .post(format!("{address}/v1/provision"))
            .bearer_auth(step.secret)
            .header("Content-Type", "application/json")
            .body(step.body.clone());
        if step.cookie {
            request = request.header("Cookie", format!("session={COOKIE_VALUE}"));
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("a JSON answer");
        assert_eq!(status, step.status, "{}: {body}", step.what);
        match body["action"].as_str() {
            Some(action) => assert_eq!(action, step.expect, "{}: {body}", step.what),
            None => assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|message| message.contains(step.expect)),
                "{}: expected {:?} in {body}",
                step.what,
                step.expect
            ),
        }
    }
    let (log, stdout) = served.stop().await;

    let provisioned = log.matches("Login processed.").count();
    assert_eq!(
        provisioned, 7,
        "one provisioning event per login that reached the mapper:\n{log}"
    );
    for action in ["created", "unchanged", "updated", "denied"] {
        let field = format.field("action", action);
        assert!(log.contains(&field), "no {field} in the log:\n{log}");
    }
    assert!(
        log.contains("Stopped."),
        "the run was not logged to its end"
    );
    let leaks: Vec<String> = sent
        .0
        .iter()
        .filter(|(_, value)| log.contains(value) || stdout.contains(value))
        .map(|(label, value)| {
            let lines: Vec<&str> = log
                .lines()
                .chain(stdout.lines())
                .filter(|line| line.contains(value))
                .collect();
            format!("{label} ({value:?}) in:\n  {}", lines.join("\n  "))
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "the {} log leaks {} value(s):\n{}",
        format.flag(),
        leaks.len(),
        leaks.join("\n")
    );
}

/// The Kratos claims object a trusted caller sends for these ID token claims: the standard
/// claims at the top level and all of them under `raw_claims`, like the fixture files.
fn kratos_claims_of(token_claims: &Value) -> Value {
    let map = token_claims.as_object().expect("claims object").clone();
    kratos_jit::claims::kratos_claims(&map).expect("Kratos-compatible claims")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_run_logged_as_text_shows_no_token_cookie_secret_or_claim_value() {
    full_run(Format::Text).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_run_logged_as_json_shows_no_token_cookie_secret_or_claim_value() {
    full_run(Format::Json).await;
}
