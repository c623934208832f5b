//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the `traceparent` a request
//! arrives with, the trace it belongs to while it is served, and the `traceparent` every call
//! it makes carries onwards.
//!
//! The contract:
//!
//! - **Incoming.** [`RequestTrace::from_headers`] reads `traceparent` strictly (the fixed
//!   55-character form of version `00`, lower-case hex, neither id all zeros; a later version is
//!   read by its first 55 characters as the specification asks). A missing, repeated or invalid
//!   header starts a new trace with a random trace id; the request is never refused for it. A
//!   valid header's `tracestate` is kept (at most 512 bytes of visible ASCII) and passed on.
//! - **While serving.** The HTTP layer runs each request inside [`scope`]: [`current_trace_id`]
//!   is then the request's trace id (32 lower-case hex digits) on that task, and `None` outside
//!   one. The request's `tracing` span carries it as the `trace_id` field, so every log line of
//!   the request shows it, in the text and the JSON log formats alike.
//! - **Outgoing.** [`propagate`] adds `traceparent` (the same trace id, a new parent id for
//!   each call, the caller's flags) and the kept `tracestate` to a `reqwest` request: every
//!   call to the Kratos admin API and to an upstream IdP (discovery, JWKS, token endpoint).
//!
//! Why a parser of our own rather than a crate: docs/crates.md §4.
//!
//! Nothing here is exported: no span is recorded or sent anywhere. The ids only join
//! kratos-jit's log lines to the traces of its caller and of Kratos.

use std::fmt;
use std::future::Future;

/// The header's name (HTTP header names are case-insensitive).
pub const TRACEPARENT: &str = "traceparent";
/// The companion header, passed on untouched when `traceparent` was valid.
pub const TRACESTATE: &str = "tracestate";

/// The length of a version `00` `traceparent`: `vv-<32 hex>-<16 hex>-ff`.
const LENGTH: usize = 55;
/// W3C: a `tracestate` of at most 512 characters must be propagated; longer ones may be cut.
/// Rather than cut list members, kratos-jit passes on only one that fits.
const MAX_TRACESTATE: usize = 512;

/// A trace id: 16 bytes, never all zeros.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 16]);

/// A span (parent) id: 8 bytes, never all zeros.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId([u8; 8]);

impl TraceId {
    /// A random trace id (never all zeros).
    pub fn random() -> TraceId {
        loop {
            let bytes: [u8; 16] = rand::random();
            if bytes != [0; 16] {
                return TraceId(bytes);
            }
        }
    }
}

impl SpanId {
    /// A random span id (never all zeros).
    pub fn random() -> SpanId {
        loop {
            let bytes: [u8; 8] = rand::random();
            if bytes != [0; 8] {
                return SpanId(bytes);
            }
        }
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// A valid `traceparent`, as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub parent_id: SpanId,
    /// `trace-flags`; bit 0 is `sampled`.
    pub flags: u8,
}

/// Why a `traceparent` value was not accepted (the request then starts a new trace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTraceParent {
    #[error("not 55 characters long (version 00)")]
    Length,
    #[error("a field is not lower-case hexadecimal, or a separator is not '-'")]
    Syntax,
    #[error("version ff is forbidden")]
    Version,
    #[error("the trace id is all zeros")]
    ZeroTraceId,
    #[error("the parent id is all zeros")]
    ZeroParentId,
}

/// `n` lower-case hex digits into bytes; anything else (upper case included) is `None`.
fn lower_hex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

impl std::str::FromStr for TraceParent {
    type Err = InvalidTraceParent;

    /// Trace Context Level 1, §3.2 and §4.3: version `00` is exactly 55 characters; a higher
    /// version (not `ff`) is at least 55, and when longer its 56th character is `-`; its first
    /// 55 are read as version `00`'s fields. Surrounding blanks (HTTP's optional white space)
    /// are ignored.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let value = value.trim_matches([' ', '\t']).as_bytes();
        if value.len() < LENGTH {
            return Err(InvalidTraceParent::Length);
        }
        let version = lower_hex::<1>(&value[0..2]).ok_or(InvalidTraceParent::Syntax)?[0];
        match version {
            0xff => return Err(InvalidTraceParent::Version),
            0x00 if value.len() != LENGTH => return Err(InvalidTraceParent::Length),
            _ if value.len() > LENGTH && value[LENGTH] != b'-' => {
                return Err(InvalidTraceParent::Syntax);
            }
            _ => {}
        }
        if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return Err(InvalidTraceParent::Syntax);
        }
        let trace_id = lower_hex::<16>(&value[3..35]).ok_or(InvalidTraceParent::Syntax)?;
        let parent_id = lower_hex::<8>(&value[36..52]).ok_or(InvalidTraceParent::Syntax)?;
        let flags = lower_hex::<1>(&value[53..55]).ok_or(InvalidTraceParent::Syntax)?[0];
        if trace_id == [0; 16] {
            return Err(InvalidTraceParent::ZeroTraceId);
        }
        if parent_id == [0; 8] {
            return Err(InvalidTraceParent::ZeroParentId);
        }
        Ok(TraceParent {
            trace_id: TraceId(trace_id),
            parent_id: SpanId(parent_id),
            flags,
        })
    }
}

impl fmt::Display for TraceParent {
    /// Always version `00`, whatever version was read.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id, self.parent_id, self.flags
        )
    }
}

/// The trace of the request being served: its trace id, the span id kratos-jit's own work on
/// it has, the caller's flags, and the `tracestate` to pass on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTrace {
    trace_id: TraceId,
    span_id: SpanId,
    /// The caller's parent id, when it sent a valid `traceparent`.
    parent_id: Option<SpanId>,
    flags: u8,
    tracestate: Option<String>,
}

impl RequestTrace {
    /// A new trace, for a request that came without a valid `traceparent`. Its flags are
    /// `00`: kratos-jit records nothing, so it does not ask the services it calls to.
    pub fn new_root() -> RequestTrace {
        RequestTrace {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            parent_id: None,
            flags: 0,
            tracestate: None,
        }
    }

    /// The trace a request continues: its one valid `traceparent` (with its `tracestate`),
    /// or else a new one. `traceparents` are every value of the header as received: more than
    /// one makes the header invalid (W3C §3.2: it must not be combined).
    pub fn from_headers<'a>(
        traceparents: impl IntoIterator<Item = &'a [u8]>,
        tracestate: Option<&[u8]>,
    ) -> RequestTrace {
        let mut values = traceparents.into_iter();
        let parsed = match (values.next(), values.next()) {
            (Some(one), None) => std::str::from_utf8(one)
                .ok()
                .and_then(|text| text.parse::<TraceParent>().ok()),
            _ => None,
        };
        let Some(parent) = parsed else {
            return RequestTrace::new_root();
        };
        RequestTrace {
            trace_id: parent.trace_id,
            span_id: SpanId::random(),
            parent_id: Some(parent.parent_id),
            flags: parent.flags,
            tracestate: tracestate.and_then(kept_tracestate),
        }
    }

    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The id of kratos-jit's span for this request.
    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// The caller's parent id, when the request continued a trace.
    pub fn parent_id(&self) -> Option<SpanId> {
        self.parent_id
    }

    /// The `traceparent` for one outgoing call: the same trace id and flags, a new parent id.
    pub fn outgoing(&self) -> TraceParent {
        TraceParent {
            trace_id: self.trace_id,
            parent_id: SpanId::random(),
            flags: self.flags,
        }
    }

    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }
}

/// A `tracestate` worth passing on: at most 512 bytes of visible ASCII, spaces and tabs, not
/// blank. Its list members are not checked one by one; the next service reads them.
fn kept_tracestate(value: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(value).ok()?.trim_matches([' ', '\t']);
    let visible = |c: char| c == ' ' || c == '\t' || c.is_ascii_graphic();
    (!text.is_empty() && text.len() <= MAX_TRACESTATE && text.chars().all(visible))
        .then(|| text.to_owned())
}

tokio::task_local! {
    static CURRENT: RequestTrace;
}

/// Runs `future` as part of `trace`: [`current_trace_id`] and [`propagate`] see it on this
/// task. A task spawned from it does not inherit it.
pub async fn scope<F: Future>(trace: RequestTrace, future: F) -> F::Output {
    CURRENT.scope(trace, future).await
}

/// The trace of the request being served on this task, if any.
pub fn current() -> Option<RequestTrace> {
    CURRENT.try_with(Clone::clone).ok()
}

/// The W3C trace id of the request being served on this task: 32 lower-case hex digits;
/// `None` outside a request (start-up, background probes).
pub fn current_trace_id() -> Option<String> {
    CURRENT.try_with(|trace| trace.trace_id.to_string()).ok()
}

/// `request` with `traceparent` (and `tracestate`) for the request being served on this task;
/// unchanged outside a request.
pub fn propagate(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    let Ok((traceparent, tracestate)) = CURRENT.try_with(|trace| {
        (
            trace.outgoing().to_string(),
            trace.tracestate.as_ref().cloned(),
        )
    }) else {
        return request;
    };
    let request = request.header(TRACEPARENT, traceparent);
    match tracestate {
        Some(state) => request.header(TRACESTATE, state),
        None => request,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn parse(value: &str) -> Result<TraceParent, InvalidTraceParent> {
        value.parse()
    }

    #[test]
    fn the_specifications_example_is_read_field_by_field_and_written_back_the_same() {
        let parent = parse(EXAMPLE).unwrap();
        assert_eq!(
            parent.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent.parent_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(parent.flags, 1);
        assert_eq!(parent.to_string(), EXAMPLE);
        assert_eq!(parse(&format!(" {EXAMPLE}\t")).unwrap(), parent);
    }

    #[test]
    fn every_malformed_traceparent_is_refused_with_its_reason() {
        let (short, longer, extended, upper) = (
            &EXAMPLE[..54],
            format!("{EXAMPLE}0"),
            format!("{EXAMPLE}-extra"),
            EXAMPLE.to_uppercase(),
        );
        let cases: Vec<(&str, InvalidTraceParent)> = vec![
            ("", InvalidTraceParent::Length),
            (short, InvalidTraceParent::Length),
            (&longer, InvalidTraceParent::Length),
            (&extended, InvalidTraceParent::Length),
            (&upper, InvalidTraceParent::Syntax),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                InvalidTraceParent::Syntax,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
                InvalidTraceParent::Syntax,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0X",
                InvalidTraceParent::Syntax,
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                InvalidTraceParent::Syntax,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
                InvalidTraceParent::Syntax,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
                InvalidTraceParent::Syntax,
            ),
            (
                "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                InvalidTraceParent::Syntax,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
                InvalidTraceParent::Syntax,
            ),
            (
                "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                InvalidTraceParent::Syntax,
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                InvalidTraceParent::Version,
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                InvalidTraceParent::ZeroTraceId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                InvalidTraceParent::ZeroParentId,
            ),
        ];
        for (value, reason) in cases {
            assert_eq!(parse(value), Err(reason), "{value:?}");
        }
        // Multi-byte text of the right byte length never panics on a char boundary.
        let wide = format!("00-{}-00f067aa0ba902b7-01", "é".repeat(16));
        assert_eq!(wide.len(), LENGTH);
        assert_eq!(parse(&wide), Err(InvalidTraceParent::Syntax));
    }

    #[test]
    fn a_later_version_is_read_by_its_first_55_characters() {
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09";
        assert_eq!(parse(later).unwrap().flags, 9);
        let longer = format!("{later}-what-comes-next");
        let parent = parse(&longer).unwrap();
        assert_eq!(
            parent.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        // Written back as version 00, the only version kratos-jit speaks.
        assert_eq!(
            parent.to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09"
        );
        assert_eq!(parse(&format!("{later}x")), Err(InvalidTraceParent::Syntax));
    }

    #[test]
    fn a_request_continues_one_valid_traceparent_and_starts_a_new_trace_otherwise() {
        let trace = RequestTrace::from_headers([EXAMPLE.as_bytes()], Some(b"congo=t61rcWkgMzE"));
        assert_eq!(
            trace.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            trace.parent_id().map(|p| p.to_string()).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert_eq!(trace.tracestate(), Some("congo=t61rcWkgMzE"));

        let missing = RequestTrace::from_headers(std::iter::empty(), Some(b"congo=t61rcWkgMzE"));
        let invalid = RequestTrace::from_headers([b"00-zz".as_slice()], None);
        let twice = RequestTrace::from_headers([EXAMPLE.as_bytes(), EXAMPLE.as_bytes()], None);
        for fresh in [&missing, &invalid, &twice] {
            assert_ne!(fresh.trace_id(), trace.trace_id());
            assert_eq!(fresh.parent_id(), None);
            assert_eq!(
                fresh.tracestate(),
                None,
                "no tracestate without a traceparent"
            );
            assert_eq!(fresh.trace_id().to_string().len(), 32);
        }
        assert_ne!(
            missing.trace_id(),
            invalid.trace_id(),
            "each new trace is new"
        );
    }

    #[test]
    fn an_oversized_or_binary_tracestate_is_not_passed_on() {
        let long = format!("k={}", "v".repeat(MAX_TRACESTATE));
        for bad in [long.as_bytes(), b"a=\x01", b"   ", "a=é".as_bytes()] {
            let trace = RequestTrace::from_headers([EXAMPLE.as_bytes()], Some(bad));
            assert_eq!(trace.tracestate(), None, "{bad:?}");
        }
    }

    #[test]
    fn each_outgoing_call_keeps_the_trace_id_and_flags_with_a_new_parent_id() {
        let trace = RequestTrace::from_headers([EXAMPLE.as_bytes()], None);
        let first = trace.outgoing();
        let second = trace.outgoing();
        assert_eq!(first.trace_id, trace.trace_id());
        assert_eq!(first.flags, 1);
        assert_ne!(first.parent_id, second.parent_id);
        assert_ne!(Some(first.parent_id), trace.parent_id());
        let text = first.to_string();
        assert_eq!(text.len(), LENGTH);
        assert_eq!(text.parse::<TraceParent>().unwrap(), first);
        // A new trace asks nobody to record it.
        assert_eq!(RequestTrace::new_root().outgoing().flags, 0);
    }

    #[tokio::test]
    async fn the_current_trace_id_is_the_scoped_requests_and_none_outside() {
        assert_eq!(current_trace_id(), None);
        let trace = RequestTrace::from_headers([EXAMPLE.as_bytes()], None);
        let seen = scope(trace, async {
            tokio::task::yield_now().await;
            current_trace_id()
        })
        .await;
        assert_eq!(seen.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(current_trace_id(), None);
    }

    #[tokio::test]
    async fn propagate_adds_the_headers_only_inside_a_request() {
        let client = reqwest::Client::new();
        let outside = propagate(client.get("http://127.0.0.1:9/"))
            .build()
            .unwrap();
        assert!(outside.headers().get(TRACEPARENT).is_none());

        let trace = RequestTrace::from_headers([EXAMPLE.as_bytes()], Some(b"congo=t61rcWkgMzE"));
        let inside = scope(trace, async {
            propagate(client.get("http://127.0.0.1:9/"))
                .build()
                .unwrap()
        })
        .await;
        let sent: TraceParent = inside.headers()[TRACEPARENT]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            sent.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_ne!(sent.parent_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(inside.headers()[TRACESTATE], "congo=t61rcWkgMzE");
    }
}
