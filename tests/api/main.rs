//! API tests: the real `serve` application over HTTP against the loopback Kratos stand-in.

#[path = "../common/audit_events.rs"]
mod audit_events;
#[path = "../common/issuer.rs"]
mod issuer;
#[path = "../common/personal.rs"]
mod personal;
#[path = "../common/tree.rs"]
mod tree;

mod audit;
mod concurrency;
mod helpers;
mod hooks;
mod input;
mod limits;
mod logs;
mod privacy;
mod provision;
mod readiness;
mod robustness;
mod tokens;
mod trace;
