//! API tests: the real `serve` application over HTTP against the loopback Kratos stand-in.

mod concurrency;
mod helpers;
mod provision;
mod robustness;
