//! Load driver of an IdP's SCIM push against `kratos-jit serve --dev` (see bench/README.md,
//! "SCIM push"; the wrapper is `bench/scim-load.sh`). The provider is `entra-globex`, and the
//! requests are those of Microsoft Entra ID's provisioning service (docs/scim.md §3.1):
//!
//! 1. **push**: the initial cycle. Each user is `GET /Users?filter=userName eq "…"` (empty
//!    ListResponse), then `POST /Users` (201). Users arrive at a fixed rate (`--rate` users/s,
//!    open loop: a user's requests start at its scheduled time whether or not earlier ones
//!    finished), or with `--rate 0` as fast as `--concurrency` workers go (closed loop). Then
//!    each group: `GET /Groups?excludedAttributes=members&filter=displayName eq "…"`,
//!    `POST /Groups` with an empty `members` list and Entra's extra schema URN, then its members
//!    added by `PATCH` (`{"op":"Add","path":"members","value":[…]}`, `--members-per-patch`
//!    members each; 204 or 200), one request after the other, groups at `--group-rate`
//!    groups/s. Every added member is re-mapped by kratos-jit (its role follows its groups); the
//!    first group is Globex's staff group, so its members change role (guest → user) and their
//!    Kratos identities are written.
//! 2. **load**: `POST /Users` of more users (no filter) with `--concurrency` workers, until
//!    `--identities` users exist: each is an identity in the Kratos stand-in and a user in
//!    kratos-jit's SCIM store, which answers the filter.
//! 3. **filter**: `GET /Users?filter=userName eq "…"` of random existing users at
//!    `--filter-rate` requests/s for `--filter-duration` s (open loop); every answer must find
//!    exactly one user.
//!
//! For every request: **whole** = the latency the driver sees; **own share** = whole less the
//! `Server-Timing: dep` of the answer (the server's wall time in calls to the Kratos stand-in and
//! to the SCIM store; the server runs with `scim.server_timing`). CPU is read from
//! `/proc/<pid>/stat` of the server (with its mapper workers; in `serve --dev` the stand-in runs
//! in the same process) and of the driver around each phase; "other processes" is the machine's
//! busy time less both.
//!
//! `cargo bench --bench scim_load -- --server-pid <pid of serve --dev>`

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use kratos_jit::serve::DEV_SCIM_SECRET;
use serde_json::{Value, json};

#[derive(Parser, Debug, Clone)]
#[command(
    about = "An IdP's SCIM push (Entra's sequence) and the userName filter against kratos-jit serve --dev"
)]
struct Args {
    /// The provider's SCIM base URL.
    #[arg(long, default_value = "http://127.0.0.1:4480/scim/v2/entra-globex")]
    scim: String,
    /// Users of the initial push.
    #[arg(long, default_value_t = 10_000)]
    users: u64,
    /// Groups of the initial push; the users are split evenly among them.
    #[arg(long, default_value_t = 100)]
    groups: u64,
    /// Members added by one group PATCH.
    #[arg(long, default_value_t = 10)]
    members_per_patch: u64,
    /// Users per second of the push (open loop); 0: as fast as `--concurrency` workers go.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Groups per second of the push (open loop); 0: one group after the other.
    #[arg(long, default_value_t = 10.0)]
    group_rate: f64,
    /// Workers of the closed-loop push (`--rate 0`) and of the load phase.
    #[arg(long, default_value_t = 4)]
    concurrency: u64,
    /// Users that exist before the filter phase (the push's included; 0: no load phase).
    #[arg(long, default_value_t = 100_000)]
    identities: u64,
    /// Filter requests per second (open loop).
    #[arg(long, default_value_t = 500.0)]
    filter_rate: f64,
    /// Seconds of the filter phase.
    #[arg(long, default_value_t = 20.0)]
    filter_duration: f64,
    /// Seconds of unmeasured filter requests at the same rate before it.
    #[arg(long, default_value_t = 3.0)]
    filter_warmup: f64,
    /// Phases to run, comma-separated: push, load, filter.
    #[arg(long, default_value = "push,load,filter")]
    phases: String,
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

/// What a request was, for the per-kind figures.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    UserFilter,
    UserPost,
    GroupFilter,
    GroupPost,
    GroupPatch,
    LoadPost,
    Filter,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::UserFilter,
        Kind::UserPost,
        Kind::GroupFilter,
        Kind::GroupPost,
        Kind::GroupPatch,
        Kind::LoadPost,
        Kind::Filter,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::UserFilter => "GET /Users?filter (miss)",
            Kind::UserPost => "POST /Users",
            Kind::GroupFilter => "GET /Groups?filter (miss)",
            Kind::GroupPost => "POST /Groups",
            Kind::GroupPatch => "PATCH /Groups/{id} (add members)",
            Kind::LoadPost => "POST /Users (load)",
            Kind::Filter => "GET /Users?filter=userName eq (hit)",
        }
    }
}

/// One request: µs of the whole request and of the server's dependency calls.
#[derive(Clone, Copy, Debug)]
struct Sample {
    kind: Kind,
    whole: u32,
    dep: u32,
}

impl Sample {
    fn own(&self) -> u32 {
        self.whole.saturating_sub(self.dep)
    }
}

type Job = Pin<Box<dyn Future<Output = Result<Vec<Sample>, String>> + Send>>;
/// Job `i` of a phase.
type JobFn = Arc<dyn Fn(u64) -> Job + Send + Sync>;

struct World {
    scim: String,
    http: reqwest::Client,
    /// Set when an answer carried no `Server-Timing` (the server runs without it).
    untimed: AtomicU64,
}

fn micros(since: Instant) -> u32 {
    since.elapsed().as_micros().min(u32::MAX as u128) as u32
}

/// The `dep` duration of a `Server-Timing` header, in µs.
fn dependency_time(response: &reqwest::Response) -> Option<u32> {
    let header = response.headers().get("Server-Timing")?.to_str().ok()?;
    header.split(',').find_map(|metric| {
        let (name, params) = metric.trim().split_once(';')?;
        let ms: f64 = params.trim().strip_prefix("dur=")?.parse().ok()?;
        (name == "dep").then_some((ms * 1e3).round() as u32)
    })
}

fn user_name(i: u64) -> String {
    format!("u{i:06}@globex.example")
}

/// A user as Entra's provisioning sends it (its create example: externalId, userName, active,
/// work e-mail, name, the enterprise extension, empty roles, meta.resourceType).
fn user_body(i: u64) -> String {
    json!({
        "schemas": [
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
        ],
        "externalId": format!("bench-{i:06}"),
        "userName": user_name(i),
        "active": true,
        "displayName": format!("Bench User {i}"),
        "name": {"formatted": format!("Bench User {i}"), "givenName": "Bench", "familyName": format!("User{i}")},
        "emails": [{"primary": true, "type": "work", "value": user_name(i)}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "department": "Sales",
            "employeeNumber": format!("{i}")
        },
        "roles": [],
        "meta": {"resourceType": "User"}
    })
    .to_string()
}

/// Globex's staff group (scim.jsonnet: its members get the role `user`).
const STAFF_GROUP: &str = "7e4b2d18-9c3a-4f6e-b1d0-3e8f5a7c2d22";

fn group_body(g: u64) -> String {
    let external_id = if g == 0 {
        STAFF_GROUP.to_owned()
    } else {
        format!("00000000-0000-4000-8000-{g:012}")
    };
    json!({
        "schemas": [
            "urn:ietf:params:scim:schemas:core:2.0:Group",
            "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"
        ],
        "externalId": external_id,
        "displayName": format!("Bench Group {g:03}"),
        "members": []
    })
    .to_string()
}

impl World {
    /// Sends one request; checks its status; returns the sample and the body.
    async fn call(
        &self,
        kind: Kind,
        request: reqwest::RequestBuilder,
        expect: u16,
    ) -> Result<(Sample, Vec<u8>), String> {
        let request = request.bearer_auth(DEV_SCIM_SECRET);
        let started = Instant::now();
        let response = request
            .send()
            .await
            .map_err(|e| format!("{}: {e}", kind.name()))?;
        let status = response.status().as_u16();
        let dep = dependency_time(&response);
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("{}: {e}", kind.name()))?
            .to_vec();
        let whole = micros(started);
        // A group PATCH may answer 204 (what Entra expects) or 200 with the group (RFC 7644).
        if status != expect && !(expect == 204 && status == 200) {
            return Err(format!(
                "{}: HTTP {status} ({})",
                kind.name(),
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ));
        }
        if dep.is_none() {
            self.untimed.fetch_add(1, Ordering::Relaxed);
        }
        Ok((
            Sample {
                kind,
                whole,
                dep: dep.unwrap_or(0),
            },
            body,
        ))
    }

    fn filter_users(&self, i: u64) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}/Users", self.scim))
            .query(&[("filter", format!("userName eq \"{}\"", user_name(i)))])
    }

    fn post_user(&self, i: u64) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/Users", self.scim))
            .header("Content-Type", "application/scim+json")
            .body(user_body(i))
    }

    /// Entra's create of one user: the existence check, then the POST. Returns the user's id.
    async fn push_user(&self, i: u64) -> Result<(Vec<Sample>, String), String> {
        let (filter, body) = self
            .call(Kind::UserFilter, self.filter_users(i), 200)
            .await?;
        if !contains(&body, b"\"totalResults\":0") {
            return Err(format!("user {i} exists before the push"));
        }
        let (post, body) = self.call(Kind::UserPost, self.post_user(i), 201).await?;
        Ok((vec![filter, post], id_of(&body)?))
    }

    /// Entra's create of one group and its members' additions.
    async fn push_group(
        &self,
        g: u64,
        members: &[String],
        per_patch: u64,
    ) -> Result<Vec<Sample>, String> {
        let name = format!("Bench Group {g:03}");
        let filter = self.http.get(format!("{}/Groups", self.scim)).query(&[
            ("excludedAttributes", "members".to_owned()),
            ("filter", format!("displayName eq \"{name}\"")),
        ]);
        let (filter, body) = self.call(Kind::GroupFilter, filter, 200).await?;
        if !contains(&body, b"\"totalResults\":0") {
            return Err(format!("group {g} exists before the push"));
        }
        let post = self
            .http
            .post(format!("{}/Groups", self.scim))
            .header("Content-Type", "application/scim+json")
            .body(group_body(g));
        let (post, body) = self.call(Kind::GroupPost, post, 201).await?;
        let id = id_of(&body)?;
        let mut samples = vec![filter, post];
        for chunk in members.chunks(per_patch.max(1) as usize) {
            let value: Vec<Value> = chunk.iter().map(|m| json!({ "value": m })).collect();
            let patch = json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "Add", "path": "members", "value": value}]
            });
            let request = self
                .http
                .patch(format!("{}/Groups/{id}", self.scim))
                .header("Content-Type", "application/scim+json")
                .body(patch.to_string());
            let (sample, _) = self.call(Kind::GroupPatch, request, 204).await?;
            samples.push(sample);
        }
        Ok(samples)
    }
}

fn contains(body: &[u8], needle: &[u8]) -> bool {
    body.windows(needle.len()).any(|w| w == needle)
}

fn id_of(body: &[u8]) -> Result<String, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("answer: {e}"))?;
    value["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "an answer without id".to_owned())
}

/// How jobs are started.
#[derive(Clone, Copy, Debug)]
enum Pace {
    /// Job i starts at i / rate (open loop).
    Rate(f64),
    /// This many workers, each starting its next job when the last one ended (closed loop).
    Workers(u64),
}

struct Outcome {
    samples: Vec<Sample>,
    /// µs between a job's due time and its start (open loop), per job.
    lags: Vec<u32>,
    failures: Vec<String>,
    elapsed: Duration,
}

/// Runs jobs `first..first + count` at `pace`.
async fn drive(pace: Pace, first: u64, count: u64, job: JobFn) -> Outcome {
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let start = Instant::now() + Duration::from_millis(20);
    match pace {
        Pace::Rate(rate) => {
            let period = Duration::from_secs_f64(1.0 / rate);
            for n in 0..count {
                let due = start + period.mul_f64(n as f64);
                tokio::time::sleep_until(due.into()).await;
                let job = job.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    let lag = micros(due);
                    let _ = sender.send((lag, job(first + n).await));
                });
            }
        }
        Pace::Workers(workers) => {
            let next = Arc::new(AtomicU64::new(0));
            for _ in 0..workers.max(1) {
                let job = job.clone();
                let sender = sender.clone();
                let next = next.clone();
                tokio::spawn(async move {
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= count {
                            break;
                        }
                        let _ = sender.send((0, job(first + n).await));
                    }
                });
            }
        }
    }
    drop(sender);
    let mut outcome = Outcome {
        samples: Vec::new(),
        lags: Vec::new(),
        failures: Vec::new(),
        elapsed: Duration::ZERO,
    };
    while let Some((lag, result)) = receiver.recv().await {
        outcome.lags.push(lag);
        match result {
            Ok(samples) => outcome.samples.extend(samples),
            Err(failure) => outcome.failures.push(failure),
        }
    }
    outcome.elapsed = start.elapsed();
    outcome
}

#[path = "common/measure.rs"]
mod measure;
use measure::{Cpu, clock_ticks, cpu, stats};

fn report(name: &str, outcome: &Outcome, (before, after): (&Cpu, &Cpu), pid: Option<u32>) -> Value {
    let tick = clock_ticks();
    let requests = outcome.samples.len().max(1) as f64;
    let secs = outcome.elapsed.as_secs_f64();
    let server = after.server.saturating_sub(before.server);
    let driver = after.driver.saturating_sub(before.driver);
    let machine = after.machine.saturating_sub(before.machine);
    let other = machine.saturating_sub(server + driver);
    let per_request_us = |ticks: u64| (ticks as f64 / tick * 1e6 / requests).round();
    let cores = |ticks: u64| ((ticks as f64 / tick / secs) * 100.0).round() / 100.0;
    let mut kinds = serde_json::Map::new();
    for kind in Kind::ALL {
        let of_kind: Vec<&Sample> = outcome.samples.iter().filter(|s| s.kind == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        kinds.insert(
            kind.name().to_owned(),
            json!({
                "whole": stats(of_kind.iter().map(|s| s.whole).collect()),
                "own": stats(of_kind.iter().map(|s| s.own()).collect()),
                "dep": stats(of_kind.iter().map(|s| s.dep).collect()),
            }),
        );
    }
    let mut result = json!({
        "phase": name,
        "requests": outcome.samples.len(),
        "jobs": outcome.lags.len(),
        "errors": outcome.failures.len(),
        "error_examples": outcome.failures.iter().take(5).collect::<Vec<_>>(),
        "seconds": (secs * 100.0).round() / 100.0,
        "requests_per_second": (outcome.samples.len() as f64 / secs * 10.0).round() / 10.0,
        "whole": stats(outcome.samples.iter().map(|s| s.whole).collect()),
        "own": stats(outcome.samples.iter().map(Sample::own).collect()),
        "lag": stats(outcome.lags.clone()),
        "kinds": kinds,
        "driver_cpu_us_per_request": per_request_us(driver),
        "driver_cores": cores(driver),
        "other_processes_cores": cores(other),
    });
    if pid.is_some() {
        result["server_cpu_us_per_request"] = per_request_us(server).into();
        result["server_cores"] = cores(server).into();
    }
    result
}

fn line(r: &Value) -> String {
    let p = |v: &Value| {
        format!(
            "{} / {} / {} / {}",
            v["p50_ms"], v["p90_ms"], v["p99_ms"], v["max_ms"]
        )
    };
    let mut text = format!(
        "{}: {} requests in {} s ({}/s), {} errors | own share {} ms | whole {} ms | lag p99 {} ms | server CPU {} µs/request ({} cores) | driver {} µs/request | other processes {} cores",
        r["phase"].as_str().unwrap_or_default(),
        r["requests"],
        r["seconds"],
        r["requests_per_second"],
        r["errors"],
        p(&r["own"]),
        p(&r["whole"]),
        r["lag"]["p99_ms"],
        r["server_cpu_us_per_request"],
        r["server_cores"],
        r["driver_cpu_us_per_request"],
        r["other_processes_cores"],
    );
    if let Some(kinds) = r["kinds"].as_object() {
        for (name, k) in kinds {
            text.push_str(&format!(
                "\n  {name} ({}): own {} ms | whole {} ms | dep p50 {} / p99 {} ms",
                k["own"]["n"],
                p(&k["own"]),
                p(&k["whole"]),
                k["dep"]["p50_ms"],
                k["dep"]["p99_ms"]
            ));
        }
    }
    if let Some(first) = r["error_examples"].as_array().and_then(|e| e.first()) {
        text.push_str(&format!("\n  first error: {first}"));
    }
    text
}

async fn main_async(args: Args) -> Result<(), String> {
    let world = Arc::new(World {
        scim: args.scim.trim_end_matches('/').to_owned(),
        http: reqwest::Client::builder()
            .tcp_nodelay(true)
            .build()
            .map_err(|e| e.to_string())?,
        untimed: AtomicU64::new(0),
    });
    let phases: Vec<&str> = args.phases.split(',').map(str::trim).collect();
    let mut results = Vec::new();
    let mut failed = false;
    let mut finish = |name: &str, outcome: Outcome, before: Cpu| {
        let after = cpu(args.server_pid);
        let result = report(name, &outcome, (&before, &after), args.server_pid);
        failed |= !outcome.failures.is_empty();
        println!("{}", line(&result));
        results.push(result);
    };

    if phases.contains(&"push") {
        eprintln!(
            "scim-load: push of {} users ({}) and {} groups; load: {}",
            args.users,
            if args.rate > 0.0 {
                format!("{} users/s", args.rate)
            } else {
                format!("{} workers", args.concurrency)
            },
            args.groups,
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
        );
        let ids: Arc<std::sync::Mutex<Vec<Option<String>>>> =
            Arc::new(std::sync::Mutex::new(vec![None; args.users as usize]));
        let pace = if args.rate > 0.0 {
            Pace::Rate(args.rate)
        } else {
            Pace::Workers(args.concurrency)
        };
        let before = cpu(args.server_pid);
        let job: JobFn = {
            let world = world.clone();
            let ids = ids.clone();
            Arc::new(move |i: u64| -> Job {
                let world = world.clone();
                let ids = ids.clone();
                Box::pin(async move {
                    let (samples, id) = world.push_user(i).await?;
                    ids.lock().unwrap()[i as usize] = Some(id);
                    Ok::<_, String>(samples)
                })
            })
        };
        let users = drive(pace, 0, args.users, job).await;
        finish("push users", users, before);

        let ids: Vec<String> = ids.lock().unwrap().iter().flatten().cloned().collect();
        let groups = args.groups.max(1);
        let per_group = (ids.len() as u64).div_ceil(groups).max(1) as usize;
        let members: Arc<Vec<Vec<String>>> = Arc::new(
            (0..groups as usize)
                .map(|g| {
                    ids.iter()
                        .skip(g * per_group)
                        .take(per_group)
                        .cloned()
                        .collect()
                })
                .collect(),
        );
        let per_patch = args.members_per_patch;
        let before = cpu(args.server_pid);
        let job: JobFn = {
            let world = world.clone();
            Arc::new(move |g: u64| -> Job {
                let world = world.clone();
                let members = members.clone();
                Box::pin(async move { world.push_group(g, &members[g as usize], per_patch).await })
            })
        };
        let pace = if args.group_rate > 0.0 {
            Pace::Rate(args.group_rate)
        } else {
            Pace::Workers(1)
        };
        let outcome = drive(pace, 0, groups, job).await;
        finish("push groups", outcome, before);
    }

    if phases.contains(&"load") && args.identities > args.users {
        let extra = args.identities - args.users;
        eprintln!(
            "scim-load: loading {extra} more users through POST /Users with {} workers",
            args.concurrency
        );
        let before = cpu(args.server_pid);
        let job: JobFn = {
            let world = world.clone();
            Arc::new(move |i: u64| -> Job {
                let world = world.clone();
                Box::pin(async move {
                    let (sample, _) = world.call(Kind::LoadPost, world.post_user(i), 201).await?;
                    Ok::<_, String>(vec![sample])
                })
            })
        };
        let outcome = drive(Pace::Workers(args.concurrency), args.users, extra, job).await;
        finish("load", outcome, before);
    }

    if phases.contains(&"filter") {
        // Every user the push and the load created (each a 201: a Kratos identity and a store
        // user); the first and the last must be found. (An unfiltered `GET /Users?count=0`
        // over 100,000 users is not used: it answered 503, past the request deadline.)
        let total = if phases.contains(&"load") {
            args.identities.max(args.users)
        } else {
            args.users
        };
        for i in [0, total - 1] {
            let (_, body) = world.call(Kind::Filter, world.filter_users(i), 200).await?;
            if !contains(&body, b"\"totalResults\":1") {
                return Err(format!("user {i} is not in the store"));
            }
        }
        eprintln!(
            "scim-load: {total} users; filter at {}/s for {} s; load: {}",
            args.filter_rate,
            args.filter_duration,
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
        );
        let job: JobFn = {
            let world = world.clone();
            Arc::new(move |n: u64| -> Job {
                let world = world.clone();
                Box::pin(async move {
                    // A spread of users over the whole range (an odd multiplier mod total).
                    let i = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) % total;
                    let (sample, body) =
                        world.call(Kind::Filter, world.filter_users(i), 200).await?;
                    if !contains(&body, b"\"totalResults\":1") {
                        return Err(format!("filter of user {i} did not find exactly one"));
                    }
                    Ok::<_, String>(vec![sample])
                })
            })
        };
        if args.filter_warmup > 0.0 {
            let n = (args.filter_rate * args.filter_warmup).round() as u64;
            let warm = drive(Pace::Rate(args.filter_rate), 0, n, job.clone()).await;
            if !warm.failures.is_empty() {
                eprintln!(
                    "scim-load: warm-up: {} errors, e.g. {}",
                    warm.failures.len(),
                    warm.failures[0]
                );
            }
        }
        let n = (args.filter_rate * args.filter_duration).round() as u64;
        let before = cpu(args.server_pid);
        let outcome = drive(Pace::Rate(args.filter_rate), 1 << 20, n, job).await;
        finish("filter", outcome, before);
    }

    let untimed = world.untimed.load(Ordering::Relaxed);
    if untimed > 0 {
        eprintln!(
            "scim-load: {untimed} answers carried no Server-Timing: own share = whole (run the server with KRATOS_JIT__SCIM__SERVER_TIMING=true)"
        );
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&results).expect("JSON");
        std::fs::write(path, text).map_err(|e| format!("{path:?}: {e}"))?;
    }
    if failed {
        return Err("some requests failed (see the errors above)".into());
    }
    Ok(())
}

fn main() {
    let args = Args::parse();
    // One thread: the driver's own CPU stays off the second core as much as it can.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    if let Err(error) = runtime.block_on(main_async(args)) {
        eprintln!("scim-load: {error}");
        std::process::exit(1);
    }
}
