//! Load driver of full claims-hop logins against `kratos-jit serve --dev` (see bench/README.md,
//! "Claims hop logins"; the wrapper is `bench/hop-load.sh`).
//!
//! Each login is what Kratos v26.2.0's generic provider and a browser do, at a fixed arrival
//! rate (open loop: a login starts at its scheduled time whether or not earlier ones finished):
//!
//! 1. `GET <hop>/hop/<P>/authorize` (Kratos's request: state, PKCE S256, no nonce,
//!    `login_hint=<P>/<case>`) → 302 to the upstream double;
//! 2. `GET` that URL at the double → 302 to the hop's callback with a code (the upstream's step:
//!    timed, but not part of the sidecar's share);
//! 3. `GET <hop>/hop/<P>/callback` → the hop exchanges the code at the double, verifies its
//!    ID token, runs the login use case against the Kratos stand-in → 302 to Kratos's callback
//!    with a code;
//! 4. `POST <hop>/hop/<P>/token` with client_secret_basic → 200 with an ID token.
//!
//! The "share" of a login is 1 + 3 + 4: what the sidecar answered, its calls to the double's
//! token endpoint and to the stand-in inside the callback included (an upper bound of the
//! sidecar's own part). The `deps` phase makes those dependency calls directly, at the same
//! rate, so that their latency and CPU can be set against the share.
//!
//! Users: every fixture `login_hint` the double knows is `<provider>/<case>`. Returning users
//! are one allowed case per subject and log in unchanged; update subjects alternate between two
//! cases (`--updates`), so each of their logins rewrites the identity (and, for a role change,
//! revokes its sessions). Before the measured phase every user logs in once (the first login
//! creates the identity), then a warm-up runs at the measured rate.
//!
//! `cargo bench --bench hop_load -- --rate 500 --duration 30 [--server-pid PID]`

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use clap::Parser;
use kratos_jit::serve::{DEV_HOP_CLIENT_SECRET, DEV_UPSTREAM_SECRET};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[derive(Parser, Debug, Clone)]
#[command(about = "Full claims-hop logins at a fixed rate against kratos-jit serve --dev")]
struct Args {
    /// Logins per second (arrivals, open loop).
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// Seconds of the measured phase.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Seconds of unmeasured logins at the same rate before it.
    #[arg(long, default_value_t = 5.0)]
    warmup: f64,
    /// Share of logins by update subjects (each such login changes the identity).
    #[arg(long, default_value_t = 0.1)]
    update_share: f64,
    /// Update subjects: `;`-separated groups of `,`-separated cases of one subject, alternated.
    #[arg(
        long,
        default_value = "okta-acme/admin,okta-acme/demoted;okta-acme/user,okta-acme/renamed;entra-globex/admin,entra-globex/user"
    )]
    updates: String,
    /// Also run the `deps` phase: the callback's dependency calls made directly.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    deps: bool,
    /// The hop's public URL (serve --dev).
    #[arg(long, default_value = "http://127.0.0.1:4480")]
    hop: String,
    /// The stand-in's URL (serve --dev).
    #[arg(long, default_value = "http://127.0.0.1:4434")]
    kratos: String,
    /// The providers directory the server loaded.
    #[arg(long)]
    mappers: Option<PathBuf>,
    /// The server's pid: its CPU (with its mapper workers) is read from /proc around each phase.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Writes the results of every phase here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// One provider's registration, as Kratos and the hop hold it.
#[derive(Debug, Clone)]
struct ProviderConf {
    id: String,
    client_id: String,
    redirect_uri: String,
    upstream_client_id: String,
    upstream_post: bool,
}

/// A user of the double: `<provider>/<case>`.
#[derive(Debug, Clone)]
struct User {
    provider: usize,
    hint: String,
    sub: String,
}

/// A subject whose logins alternate between cases.
struct UpdateSubject {
    cases: Vec<User>,
    next: AtomicU64,
    busy: AtomicBool,
}

struct World {
    providers: Vec<ProviderConf>,
    returning: Vec<User>,
    updates: Vec<UpdateSubject>,
    hop: String,
    kratos: String,
    upstream_authorize: String,
    upstream_token: String,
    /// The browser's connections (authorize, upstream, callback).
    browser: reqwest::Client,
    /// Kratos's connections (token).
    rp: reqwest::Client,
    /// kratos-jit's connections in the `deps` phase (upstream token, stand-in).
    sidecar: reqwest::Client,
    update_share: f64,
    counter: AtomicU64,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .build()
        .expect("an HTTP client")
}

fn random() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn escape(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{path:?}: {e}")))
        .unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// The hop providers of `dir`, and their fixture users: allowed cases by subject.
/// Cases by subject: (case, needs an existing identity, the e-mail trait it maps to).
type Cases = BTreeMap<String, Vec<(String, bool, String)>>;

fn load(dir: &Path) -> (Vec<ProviderConf>, Vec<Cases>) {
    let mut providers = Vec::new();
    let mut subjects = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("provider.toml").is_file())
        .collect();
    entries.sort();
    for path in entries {
        let text = std::fs::read_to_string(path.join("provider.toml")).expect("provider.toml");
        let settings: toml::Table = toml::from_str(&text).expect("provider.toml parses");
        let Some(hop) = settings.get("hop") else {
            continue;
        };
        let text_of = |v: Option<&toml::Value>| v.and_then(toml::Value::as_str).map(str::to_owned);
        let upstream = hop.get("upstream").expect("[hop.upstream]");
        let id = path.file_name().unwrap().to_string_lossy().into_owned();
        providers.push(ProviderConf {
            id: id.clone(),
            client_id: text_of(hop.get("client_id")).expect("[hop] client_id"),
            redirect_uri: text_of(
                hop.get("redirect_uris")
                    .and_then(|v| v.as_array())
                    .and_then(|a| a.first()),
            )
            .expect("[hop] redirect_uris"),
            upstream_client_id: text_of(upstream.get("client_id")).expect("upstream client_id"),
            upstream_post: text_of(upstream.get("token_endpoint_auth")).as_deref()
                == Some("client_secret_post"),
        });
        let mut by_subject = Cases::new();
        let mut cases: Vec<_> = std::fs::read_dir(path.join("tests"))
            .expect("tests/")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".claims.json"))
            .collect();
        cases.sort();
        for claims in cases {
            let name = claims.file_name().unwrap().to_string_lossy();
            let case = name.trim_end_matches(".claims.json").to_owned();
            let sub = read_json(&claims)["raw_claims"]["sub"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let expect = read_json(&path.join("tests").join(format!("{case}.expect.json")));
            let needs_identity = path
                .join("tests")
                .join(format!("{case}.identity.json"))
                .exists();
            if let Some(identity) = expect.get("identity") {
                let email = identity["traits"]["email"]
                    .as_str()
                    .unwrap_or_default()
                    .to_lowercase();
                by_subject
                    .entry(sub)
                    .or_default()
                    .push((case, needs_identity, email));
            }
        }
        subjects.push(by_subject);
    }
    (providers, subjects)
}

fn world(args: &Args) -> World {
    let dir = args
        .mappers
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("mappers"));
    let (providers, subjects) = load(&dir);
    let index = |p: &str| {
        providers
            .iter()
            .position(|c| c.id == p)
            .unwrap_or_else(|| panic!("no hop provider {p}"))
    };
    let sub_of = |p: usize, case: &str| {
        subjects[p]
            .iter()
            .find(|(_, cases)| cases.iter().any(|(c, ..)| c == case))
            .map(|(sub, _)| sub.clone())
            .unwrap_or_else(|| panic!("{}/{case} is no allowed fixture", providers[p].id))
    };
    let mut updates = Vec::new();
    for group in args.updates.split(';').filter(|g| !g.is_empty()) {
        let cases: Vec<User> = group
            .split(',')
            .map(|hint| {
                let (p, case) = hint.split_once('/').expect("<provider>/<case>");
                let provider = index(p);
                User {
                    provider,
                    hint: hint.to_owned(),
                    sub: sub_of(provider, case),
                }
            })
            .collect();
        assert!(
            cases
                .windows(2)
                .all(|w| w[0].provider == w[1].provider && w[0].sub == w[1].sub),
            "the cases of an update subject share provider and subject: {group}"
        );
        updates.push(UpdateSubject {
            cases,
            next: AtomicU64::new(0),
            busy: AtomicBool::new(false),
        });
    }
    // E-mail addresses are unique in Kratos: a second subject with the same address would be
    // refused (`value_taken`). The update subjects' addresses first, then one subject per address.
    let email_of = |u: &User| {
        subjects[u.provider][&u.sub]
            .iter()
            .find(|(c, ..)| u.hint.ends_with(&format!("/{c}")))
            .map(|(.., e)| e.clone())
            .unwrap_or_default()
    };
    let mut taken: std::collections::BTreeSet<String> = updates
        .iter()
        .flat_map(|u| u.cases.iter().map(email_of))
        .collect();
    // One allowed case per remaining subject: `user` or `admin` if there is one, else the first
    // that needs no existing identity to give its outcome.
    let mut returning = Vec::new();
    for (p, by_subject) in subjects.iter().enumerate() {
        for (sub, cases) in by_subject {
            if updates
                .iter()
                .any(|u| u.cases[0].provider == p && &u.cases[0].sub == sub)
            {
                continue;
            }
            let pick = cases
                .iter()
                .find(|(c, n, _)| !n && (c == "user" || c == "admin"))
                .or_else(|| cases.iter().find(|(_, n, _)| !n));
            if let Some((case, _, email)) = pick
                && taken.insert(email.clone())
            {
                returning.push(User {
                    provider: p,
                    hint: format!("{}/{case}", providers[p].id),
                    sub: sub.clone(),
                });
            }
        }
    }
    World {
        providers,
        returning,
        updates,
        hop: args.hop.trim_end_matches('/').to_owned(),
        kratos: args.kratos.trim_end_matches('/').to_owned(),
        upstream_authorize: String::new(),
        upstream_token: String::new(),
        browser: client(),
        rp: client(),
        sidecar: client(),
        update_share: args.update_share,
        counter: AtomicU64::new(0),
    }
}

/// Microseconds of each step of one login (or of one `deps` round).
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    lag: u32,
    /// Logins: authorize, upstream, callback, token, and the time the hop reported waiting on
    /// the upstream and Kratos (`Server-Timing: dep`, [`NO_TIMING`] without it). Deps: upstream
    /// authorize, upstream token, Kratos lookup, their sum, 0.
    steps: [u32; 5],
}

/// A login whose answers carried no `Server-Timing` (the server runs without
/// `hop.server_timing`).
const NO_TIMING: u32 = u32::MAX;

/// The `dep` duration of a `Server-Timing` header, in µs.
fn dependency_time(response: &reqwest::Response) -> Option<u32> {
    let header = response.headers().get("Server-Timing")?.to_str().ok()?;
    header.split(',').find_map(|metric| {
        let (name, params) = metric.trim().split_once(';')?;
        let ms: f64 = params.trim().strip_prefix("dur=")?.parse().ok()?;
        (name == "dep").then_some((ms * 1e3).round() as u32)
    })
}

#[derive(Debug)]
enum Failure {
    Status(&'static str, u16),
    Redirect(&'static str, String),
    Transport(&'static str, String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(step, status) => write!(f, "{step}: HTTP {status}"),
            Failure::Redirect(step, what) => write!(f, "{step}: {what}"),
            Failure::Transport(step, what) => write!(f, "{step}: {what}"),
        }
    }
}

/// An error with its causes ("error sending request" alone does not say what went wrong).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    // The URL (with its state and code) is not worth repeating.
    text.split(" for url (")
        .next()
        .unwrap_or_default()
        .to_owned()
        + text.split_once(")").map_or("", |(_, rest)| rest)
}

fn micros(since: Instant) -> u32 {
    since.elapsed().as_micros().min(u32::MAX as u128) as u32
}

/// A GET that must answer a redirect; returns its `Location` and its `Server-Timing` `dep`.
async fn redirect(
    http: &reqwest::Client,
    step: &'static str,
    url: &str,
) -> Result<(String, Option<u32>), Failure> {
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|e| Failure::Transport(step, chain(&e)))?;
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("Location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let dep = dependency_time(&response);
    // Read to the end so that the connection goes back to the pool.
    let _ = response.bytes().await;
    match (status, location) {
        (302 | 303, Some(location)) => Ok((location, dep)),
        _ => Err(Failure::Status(step, status)),
    }
}

fn query_of(location: &str) -> BTreeMap<String, String> {
    reqwest::Url::parse(location)
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

impl World {
    /// The next user: an update subject (when one is free) with the update share, else a
    /// returning user.
    fn pick(&self) -> (User, Option<usize>) {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let draw = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
        if draw < self.update_share && !self.updates.is_empty() {
            let start = (n as usize) % self.updates.len();
            for k in 0..self.updates.len() {
                let i = (start + k) % self.updates.len();
                let subject = &self.updates[i];
                if !subject.busy.swap(true, Ordering::AcqRel) {
                    let turn = subject.next.fetch_add(1, Ordering::Relaxed) as usize;
                    return (subject.cases[turn % subject.cases.len()].clone(), Some(i));
                }
            }
        }
        let user = &self.returning[(n as usize / 7 + n as usize) % self.returning.len()];
        (user.clone(), None)
    }

    /// One full hop login; steps: authorize, upstream, callback, token.
    async fn login(&self, user: &User) -> Result<[u32; 5], Failure> {
        let p = &self.providers[user.provider];
        let state = random();
        let verifier = random();
        let mut url = reqwest::Url::parse(&format!("{}/hop/{}/authorize", self.hop, p.id))
            .expect("the hop's URL");
        url.query_pairs_mut()
            .append_pair("client_id", &p.client_id)
            .append_pair("redirect_uri", &p.redirect_uri)
            .append_pair("response_type", "code")
            .append_pair("scope", "openid email profile")
            .append_pair("state", &state)
            .append_pair("code_challenge", &s256(&verifier))
            .append_pair("code_challenge_method", "S256")
            .append_pair("login_hint", &user.hint);
        let t = Instant::now();
        let (to_upstream, dep_authorize) =
            redirect(&self.browser, "authorize", url.as_str()).await?;
        let authorize = micros(t);
        let t = Instant::now();
        let (to_callback, _) = redirect(&self.browser, "upstream", &to_upstream).await?;
        let upstream = micros(t);
        if !to_callback.starts_with(&self.hop) {
            return Err(Failure::Redirect(
                "upstream",
                "not sent to the hop's callback".into(),
            ));
        }
        let t = Instant::now();
        let (to_kratos, dep_callback) = redirect(&self.browser, "callback", &to_callback).await?;
        let callback = micros(t);
        let query = query_of(&to_kratos);
        if !to_kratos.starts_with(&p.redirect_uri) || query.get("state") != Some(&state) {
            return Err(Failure::Redirect(
                "callback",
                "not sent to Kratos's callback with its state".into(),
            ));
        }
        let Some(code) = query.get("code") else {
            return Err(Failure::Redirect(
                "callback",
                query
                    .get("error")
                    .map_or("no code", String::as_str)
                    .to_string(),
            ));
        };
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &p.redirect_uri)
            .append_pair("code_verifier", &verifier)
            .finish();
        let basic = STANDARD.encode(format!(
            "{}:{}",
            escape(&p.client_id),
            escape(DEV_HOP_CLIENT_SECRET)
        ));
        let t = Instant::now();
        let response = self
            .rp
            .post(format!("{}/hop/{}/token", self.hop, p.id))
            .header("Authorization", format!("Basic {basic}"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::Transport("token", chain(&e)))?;
        let status = response.status().as_u16();
        let dep_token = dependency_time(&response);
        let answer = response
            .bytes()
            .await
            .map_err(|e| Failure::Transport("token", chain(&e)))?;
        let token = micros(t);
        if status != 200 {
            return Err(Failure::Status("token", status));
        }
        let answer: Value = serde_json::from_slice(&answer)
            .map_err(|_| Failure::Redirect("token", "not JSON".into()))?;
        if !answer["id_token"].is_string() {
            return Err(Failure::Redirect("token", "no id_token".into()));
        }
        let dep = match (dep_authorize, dep_callback, dep_token) {
            (Some(a), Some(c), Some(t)) => a + c + t,
            _ => NO_TIMING,
        };
        Ok([authorize, upstream, callback, token, dep])
    }

    /// The callback's dependency calls made directly, as the sidecar makes them: the double's
    /// authorize (to get a code), its token endpoint, and the stand-in's credential lookup.
    /// Steps: upstream authorize, upstream token, Kratos lookup, their sum (token + lookup).
    async fn deps(&self, user: &User) -> Result<[u32; 5], Failure> {
        let p = &self.providers[user.provider];
        let verifier = random();
        let callback = format!("{}/hop/{}/callback", self.hop, p.id);
        let mut url = reqwest::Url::parse(&self.upstream_authorize).expect("a URL");
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &p.upstream_client_id)
            .append_pair("redirect_uri", &callback)
            .append_pair("scope", "openid email profile")
            .append_pair("state", &random())
            .append_pair("code_challenge", &s256(&verifier))
            .append_pair("code_challenge_method", "S256")
            .append_pair("nonce", &random())
            .append_pair("login_hint", &user.hint);
        let t = Instant::now();
        let (location, _) = redirect(&self.browser, "upstream", url.as_str()).await?;
        let authorize = micros(t);
        let Some(code) = query_of(&location).remove("code") else {
            return Err(Failure::Redirect("upstream", "no code".into()));
        };
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "authorization_code")
                .append_pair("code", &code)
                .append_pair("redirect_uri", &callback)
                .append_pair("code_verifier", &verifier);
            if p.upstream_post {
                form.append_pair("client_id", &p.upstream_client_id)
                    .append_pair("client_secret", DEV_UPSTREAM_SECRET);
            }
            form.finish()
        };
        let mut request = self
            .sidecar
            .post(&self.upstream_token)
            .header("Accept", "application/json")
            .header("Content-Type", "application/x-www-form-urlencoded");
        if !p.upstream_post {
            let basic = STANDARD.encode(format!(
                "{}:{}",
                escape(&p.upstream_client_id),
                escape(DEV_UPSTREAM_SECRET)
            ));
            request = request.header("Authorization", format!("Basic {basic}"));
        }
        let t = Instant::now();
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::Transport("upstream token", chain(&e)))?;
        let status = response.status().as_u16();
        let _ = response.bytes().await;
        let token = micros(t);
        if status != 200 {
            return Err(Failure::Status("upstream token", status));
        }
        let mut url = reqwest::Url::parse(&format!("{}/admin/identities", self.kratos)).unwrap();
        url.query_pairs_mut()
            .append_pair("credentials_identifier", &format!("{}:{}", p.id, user.sub))
            .append_pair("page_size", "2");
        let t = Instant::now();
        let response = self
            .sidecar
            .get(url)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| Failure::Transport("kratos", chain(&e)))?;
        let status = response.status().as_u16();
        let found = response.bytes().await.unwrap_or_default();
        let kratos = micros(t);
        if status != 200 || found.len() < 10 {
            return Err(Failure::Status("kratos", status));
        }
        Ok([authorize, token, kratos, token + kratos, 0])
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Logins,
    Deps,
}

#[path = "common/measure.rs"]
mod measure;
use measure::{Cpu, clock_ticks, cpu, stats};

/// Runs `phase` at `rate` for `seconds`; returns the samples and the failures.
async fn run(
    world: &Arc<World>,
    phase: Phase,
    rate: f64,
    seconds: f64,
) -> (Vec<(Sample, bool)>, Vec<String>, Duration) {
    let total = (rate * seconds).round() as u64;
    let period = Duration::from_secs_f64(1.0 / rate);
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let start = Instant::now() + Duration::from_millis(20);
    for i in 0..total {
        let due = start + period.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let world = world.clone();
        let sender = sender.clone();
        tokio::spawn(async move {
            let lag = micros(due);
            let (user, update) = world.pick();
            let result = match phase {
                Phase::Logins => world.login(&user).await,
                Phase::Deps => world.deps(&user).await,
            };
            if let Some(i) = update {
                world.updates[i].busy.store(false, Ordering::Release);
            }
            let _ = sender.send(
                result
                    .map(|steps| (Sample { lag, steps }, update.is_some()))
                    .map_err(|f| format!("{} {}", user.hint, f)),
            );
        });
    }
    drop(sender);
    let mut samples = Vec::with_capacity(total as usize);
    let mut failures = Vec::new();
    while let Some(result) = receiver.recv().await {
        match result {
            Ok(sample) => samples.push(sample),
            Err(failure) => failures.push(failure),
        }
    }
    (samples, failures, start.elapsed())
}

fn report(
    name: &str,
    phase: Phase,
    rate: f64,
    (samples, failures, elapsed): (&[(Sample, bool)], &[String], Duration),
    (before, after): (&Cpu, &Cpu),
    server_pid: Option<u32>,
) -> Value {
    let n = samples.len() + failures.len();
    let column = |k: usize| samples.iter().map(|(s, _)| s.steps[k]).collect::<Vec<_>>();
    let tick = clock_ticks();
    let per_login_us = |ticks: u64| (ticks as f64 / tick * 1e6 / n.max(1) as f64).round();
    let secs = elapsed.as_secs_f64();
    let server = after.server.saturating_sub(before.server);
    let driver = after.driver.saturating_sub(before.driver);
    let machine = after.machine.saturating_sub(before.machine);
    let other = machine.saturating_sub(server + driver);
    let mut result = json!({
        "phase": name,
        "target_rate": rate,
        "achieved_rate": (n as f64 / secs * 10.0).round() / 10.0,
        "done": samples.len(),
        "errors": failures.len(),
        "error_examples": failures.iter().take(5).collect::<Vec<_>>(),
        "updates": samples.iter().filter(|(_, u)| *u).count(),
        "lag": stats(samples.iter().map(|(s, _)| s.lag).collect()),
        "driver_cpu_us_per_login": per_login_us(driver),
        "other_processes_cores": ((other as f64 / tick / secs) * 100.0).round() / 100.0,
    });
    if server_pid.is_some() {
        result["server_cpu_us_per_login"] = per_login_us(server).into();
        result["server_cores"] = (((server as f64 / tick / secs) * 100.0).round() / 100.0).into();
    }
    match phase {
        Phase::Logins => {
            let share = samples
                .iter()
                .map(|(s, _)| s.steps[0] + s.steps[2] + s.steps[3])
                .collect();
            let all = samples.iter().map(|(s, _)| s.steps.iter().sum()).collect();
            result["share"] = stats(share);
            // The sidecar's own share: the share less what the hop itself reported waiting on
            // the upstream and Kratos (`Server-Timing`).
            if samples.iter().all(|(s, _)| s.steps[4] != NO_TIMING) {
                let own = samples
                    .iter()
                    .map(|(s, _)| (s.steps[0] + s.steps[2] + s.steps[3]).saturating_sub(s.steps[4]))
                    .collect();
                result["own"] = stats(own);
                result["hop_waited"] = stats(column(4));
            }
            result["authorize"] = stats(column(0));
            result["upstream_authorize"] = stats(column(1));
            result["callback"] = stats(column(2));
            result["token"] = stats(column(3));
            result["login"] = stats(all);
        }
        Phase::Deps => {
            result["upstream_authorize"] = stats(column(0));
            result["upstream_token"] = stats(column(1));
            result["kratos_lookup"] = stats(column(2));
            result["deps"] = stats(column(3));
        }
    }
    result
}

fn line(r: &Value) -> String {
    let p = |k: &str| {
        format!(
            "{} / {} / {} / {}",
            r[k]["p50_ms"], r[k]["p90_ms"], r[k]["p99_ms"], r[k]["max_ms"]
        )
    };
    let main = if r.get("share").is_some() {
        let own = match r.get("own") {
            Some(_) => format!(
                "own share {} ms (hop waited on deps p50 {} / p99 {}) | ",
                p("own"),
                r["hop_waited"]["p50_ms"],
                r["hop_waited"]["p99_ms"]
            ),
            None => String::new(),
        };
        format!(
            "{own}share {} ms | authorize p99 {} | callback p99 {} | token p99 {} | upstream step p99 {}",
            p("share"),
            r["authorize"]["p99_ms"],
            r["callback"]["p99_ms"],
            r["token"]["p99_ms"],
            r["upstream_authorize"]["p99_ms"]
        )
    } else {
        format!(
            "deps (upstream token + Kratos lookup) {} ms | upstream token p99 {} | Kratos lookup p99 {}",
            p("deps"),
            r["upstream_token"]["p99_ms"],
            r["kratos_lookup"]["p99_ms"]
        )
    };
    format!(
        "{}: {}/s achieved, {} errors, {} updates | {} | lag p99 {} ms | server CPU {} µs/login ({} cores) | driver {} µs/login | other processes {} cores",
        r["phase"].as_str().unwrap_or_default(),
        r["achieved_rate"],
        r["errors"],
        r["updates"],
        main,
        r["lag"]["p99_ms"],
        r["server_cpu_us_per_login"],
        r["server_cores"],
        r["driver_cpu_us_per_login"],
        r["other_processes_cores"]
    )
}

async fn main_async(args: Args) -> Result<(), String> {
    let mut world = world(&args);
    // The double's endpoints, from its discovery document (the issuer the hop was given).
    let discovery: Value = world
        .browser
        .get(format!(
            "{}/.well-known/openid-configuration",
            upstream_issuer(&world).await?
        ))
        .send()
        .await
        .map_err(|e| format!("the upstream double's discovery: {e}"))?
        .json()
        .await
        .map_err(|e| format!("the upstream double's discovery: {e}"))?;
    world.upstream_authorize = discovery["authorization_endpoint"]
        .as_str()
        .ok_or("no authorization_endpoint")?
        .to_owned();
    world.upstream_token = discovery["token_endpoint"]
        .as_str()
        .ok_or("no token_endpoint")?
        .to_owned();
    let world = Arc::new(world);
    eprintln!(
        "hop-load: {} returning users, {} update subjects over {} providers; every user logs in once first",
        world.returning.len(),
        world.updates.len(),
        world.providers.len()
    );
    // First logins, one at a time: each creates its identity (or finds it from an earlier run).
    let firsts = world
        .returning
        .iter()
        .chain(world.updates.iter().flat_map(|u| u.cases.iter()));
    for user in firsts {
        world
            .login(user)
            .await
            .map_err(|f| format!("first login of {}: {f}", user.hint))?;
    }
    let mut results = Vec::new();
    let mut failed = false;
    let mut phases = vec![(Phase::Logins, "logins")];
    if args.deps {
        phases.push((Phase::Deps, "deps"));
    }
    for (phase, name) in phases {
        if args.warmup > 0.0 {
            let (_, failures, _) = run(&world, phase, args.rate, args.warmup).await;
            if !failures.is_empty() {
                eprintln!(
                    "hop-load: warm-up of {name}: {} errors, e.g. {}",
                    failures.len(),
                    failures[0]
                );
            }
        }
        let before = cpu(args.server_pid);
        let (samples, failures, elapsed) = run(&world, phase, args.rate, args.duration).await;
        let after = cpu(args.server_pid);
        let result = report(
            name,
            phase,
            args.rate,
            (&samples, &failures, elapsed),
            (&before, &after),
            args.server_pid,
        );
        failed |= !failures.is_empty();
        println!("{}", line(&result));
        results.push(result);
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&results).expect("JSON");
        std::fs::write(path, text).map_err(|e| format!("{path:?}: {e}"))?;
    }
    if failed {
        return Err("some logins failed (see errors above)".into());
    }
    Ok(())
}

/// The double's issuer: where the hop's authorize sends the browser.
async fn upstream_issuer(world: &World) -> Result<String, String> {
    let user = world.returning.first().ok_or("no returning user")?;
    let p = &world.providers[user.provider];
    let mut url = reqwest::Url::parse(&format!("{}/hop/{}/authorize", world.hop, p.id))
        .map_err(|e| e.to_string())?;
    url.query_pairs_mut()
        .append_pair("client_id", &p.client_id)
        .append_pair("redirect_uri", &p.redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair("state", &random())
        .append_pair("code_challenge", &s256(&random()))
        .append_pair("code_challenge_method", "S256");
    let (location, _) = redirect(&world.browser, "authorize", url.as_str())
        .await
        .map_err(|f| format!("the hop at {}: {f}", world.hop))?;
    let parsed = reqwest::Url::parse(&location).map_err(|e| e.to_string())?;
    Ok(parsed.origin().ascii_serialization())
}

fn main() {
    let args = Args::parse();
    // One thread: the driver's own CPU stays off the second core as much as it can.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    if let Err(error) = runtime.block_on(main_async(args)) {
        eprintln!("hop-load: {error}");
        std::process::exit(1);
    }
}
