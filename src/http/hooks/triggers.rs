//! The answers of recent hook calls, so that a call Kratos retries is answered as the first one
//! was and nothing is applied twice.
//!
//! Kratos sends one `Ory-Webhook-Trigger-ID` per hook execution, the same on each of its retries
//! (docs/kratos.md §1.3). A call is a retry of an earlier one only if it is to the same hook,
//! with the same trigger id and the same body (compared by SHA-256): a login hook's answer is
//! never replayed to a registration, nor an answer to a body it was not computed from. A call
//! with no trigger id, or an empty one, is never remembered; an id longer than
//! [`MAX_TRIGGER_ID_BYTES`] is refused.
//!
//! The cache is bounded by entries and by bytes, insertion and eviction are O(1) (moka, least
//! recently used first), and an answer is forgotten after [`RETRY_WINDOW_TTL`].

use std::time::Duration;

use actix_web::web::Bytes;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use sha2::{Digest, Sha256};

/// The longest trigger id accepted. Kratos sends a UUID (36 characters, docs/kratos.md §1.3);
/// anything far longer is not Kratos, and would otherwise be kept in memory as a key.
pub const MAX_TRIGGER_ID_BYTES: usize = 256;

/// How long an answer is remembered. Kratos makes three attempts, each of up to 30 s, with 1 s
/// and then 2 s between them (docs/kratos.md §1.3): its last retry starts at most 93 s after
/// the first call. Five minutes is more than three times that.
pub const RETRY_WINDOW_TTL: Duration = Duration::from_secs(300);

/// At most this many answers are remembered, whatever their size. Over the retry window this
/// covers about 1,000 hook calls a second.
pub const MAX_ENTRIES: u64 = 100_000;

/// The default byte budget of the cache (`hooks.retry_cache_bytes`).
pub const DEFAULT_BUDGET_BYTES: u64 = 64 << 20;

/// What an entry holds besides its trigger id and its answer's body: the key's fixed part, the
/// answer's, and moka's own bookkeeping (hash table slot, entry header, queue nodes), estimated.
const ENTRY_OVERHEAD_BYTES: usize = 256;

/// Which hook a call was made to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    Registration,
    Login,
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Registration => "registration",
            Hook::Login => "login",
        }
    }
}

/// A trigger id kratos-jit refuses. Its message never quotes the id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadTriggerId {
    #[error(
        "the Ory-Webhook-Trigger-ID header is {0} bytes long; Kratos sends a UUID, and at most {MAX_TRIGGER_ID_BYTES} bytes are accepted"
    )]
    TooLong(usize),
    #[error("the Ory-Webhook-Trigger-ID header is not printable ASCII text; Kratos sends a UUID")]
    NotText,
}

/// The trigger id of a call from its `Ory-Webhook-Trigger-ID` header value: `None` when there
/// is none or it is empty (such a call is never remembered).
pub fn trigger_id(header: Option<&[u8]>) -> Result<Option<&str>, BadTriggerId> {
    let Some(value) = header.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if value.len() > MAX_TRIGGER_ID_BYTES {
        return Err(BadTriggerId::TooLong(value.len()));
    }
    if !value.iter().all(|b| b.is_ascii_graphic()) {
        return Err(BadTriggerId::NotText);
    }
    // Printable ASCII is UTF-8.
    std::str::from_utf8(value)
        .map(Some)
        .map_err(|_| BadTriggerId::NotText)
}

/// What makes a call a retry of an earlier one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Call {
    hook: Hook,
    trigger: Box<str>,
    body_sha256: [u8; 32],
}

impl Call {
    pub fn new(hook: Hook, trigger: &str, body: &[u8]) -> Call {
        Call {
            hook,
            trigger: trigger.into(),
            body_sha256: Sha256::digest(body).into(),
        }
    }
}

/// An answer as it was sent: the status and the JSON body's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub status: u16,
    pub body: Option<Bytes>,
}

/// The answers of recent calls, keyed by [`Call`].
pub struct TriggerCache {
    answers: Cache<Call, Sent>,
}

impl TriggerCache {
    /// A cache of at most [`MAX_ENTRIES`] answers and `budget_bytes`, kept [`RETRY_WINDOW_TTL`].
    pub fn new(budget_bytes: u64) -> Self {
        Self::with_limits(RETRY_WINDOW_TTL, budget_bytes, MAX_ENTRIES)
    }

    pub fn with_limits(ttl: Duration, budget_bytes: u64, max_entries: u64) -> Self {
        // One weight bounds both: each entry weighs its estimated size, but never less than an
        // equal share of the budget (rounded up), so that no more than `max_entries` fit either.
        let share = budget_bytes.div_ceil(max_entries.max(1)).max(1);
        let answers = Cache::builder()
            .max_capacity(budget_bytes)
            .weigher(move |call: &Call, sent: &Sent| {
                let size = ENTRY_OVERHEAD_BYTES
                    + call.trigger.len()
                    + sent.body.as_ref().map_or(0, Bytes::len);
                u32::try_from((size as u64).max(share)).unwrap_or(u32::MAX)
            })
            .time_to_live(ttl)
            // moka's default admission policy (TinyLFU) may turn a new entry away when the cache
            // is full; every answer must be remembered, so the least recently used goes instead.
            .eviction_policy(EvictionPolicy::lru())
            .build();
        TriggerCache { answers }
    }

    /// The answer sent to an earlier call that `call` retries.
    pub fn get(&self, call: &Call) -> Option<Sent> {
        self.answers.get(call)
    }

    pub fn put(&self, call: Call, sent: Sent) {
        self.answers.insert(call, sent);
    }

    /// Applies pending evictions now (moka applies them in batches), for exact counts.
    pub fn settle(&self) {
        self.answers.run_pending_tasks();
    }

    pub fn entries(&self) -> u64 {
        self.answers.entry_count()
    }

    /// The weight of the remembered answers, in bytes.
    pub fn weight(&self) -> u64 {
        self.answers.weighted_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(body: &str) -> Sent {
        Sent {
            status: 200,
            body: Some(Bytes::copy_from_slice(body.as_bytes())),
        }
    }

    #[test]
    fn only_the_same_hook_trigger_and_body_is_a_retry() {
        let cache = TriggerCache::new(DEFAULT_BUDGET_BYTES);
        cache.put(Call::new(Hook::Login, "t-1", b"{}"), sent("first"));

        assert_eq!(
            cache.get(&Call::new(Hook::Login, "t-1", b"{}")),
            Some(sent("first"))
        );
        assert_eq!(
            cache.get(&Call::new(Hook::Registration, "t-1", b"{}")),
            None
        );
        assert_eq!(cache.get(&Call::new(Hook::Login, "t-1", b"{ }")), None);
        assert_eq!(cache.get(&Call::new(Hook::Login, "t-2", b"{}")), None);
    }

    #[test]
    fn a_missing_or_empty_trigger_id_is_none_and_an_overlong_one_is_refused() {
        assert_eq!(trigger_id(None), Ok(None));
        assert_eq!(trigger_id(Some(b"")), Ok(None));
        let uuid = "5f0c3e1a-8b2d-4c6e-9f7a-1b2c3d4e5f60";
        assert_eq!(trigger_id(Some(uuid.as_bytes())), Ok(Some(uuid)));
        let longest = vec![b'a'; MAX_TRIGGER_ID_BYTES];
        assert!(trigger_id(Some(&longest)).is_ok());
        let overlong = vec![b'a'; 64_000];
        assert_eq!(
            trigger_id(Some(&overlong)),
            Err(BadTriggerId::TooLong(64_000))
        );
        assert_eq!(trigger_id(Some(b"a b")), Err(BadTriggerId::NotText));
        assert!(!BadTriggerId::TooLong(64_000).to_string().contains("aaaa"));
    }

    /// Applies every pending eviction (moka applies a bounded batch at a time).
    fn settle(cache: &TriggerCache) {
        for _ in 0..10 {
            cache.settle();
        }
    }

    #[test]
    fn the_entry_cap_holds_for_small_answers() {
        // A budget that 1,000 does not divide: a share rounded down would let 1,002 entries in.
        let cache = TriggerCache::with_limits(RETRY_WINDOW_TTL, 400_999, 1_000);
        for i in 0..3_000 {
            cache.put(Call::new(Hook::Login, &format!("t-{i}"), b""), sent(""));
        }
        settle(&cache);
        assert!(cache.entries() <= 1_000, "{} entries", cache.entries());
        assert!(cache.entries() >= 990, "{} entries", cache.entries());
        // The newest are kept: every answer is admitted, the least recently used goes.
        assert!(cache.get(&Call::new(Hook::Login, "t-2999", b"")).is_some());
        assert!(cache.get(&Call::new(Hook::Login, "t-0", b"")).is_none());
    }

    #[test]
    fn the_byte_budget_holds_for_large_answers() {
        let budget = 1 << 20;
        let cache = TriggerCache::with_limits(RETRY_WINDOW_TTL, budget, 100_000);
        let large = "x".repeat(10_000);
        for i in 0..1_000 {
            cache.put(
                Call::new(Hook::Registration, &format!("t-{i}"), b""),
                sent(&large),
            );
        }
        cache.settle();
        assert!(cache.weight() <= budget, "{} bytes", cache.weight());
        assert!(
            cache.entries() <= budget / 10_000,
            "{} entries",
            cache.entries()
        );
        assert!(
            cache
                .get(&Call::new(Hook::Registration, "t-999", b""))
                .is_some()
        );
    }

    #[test]
    fn an_answer_is_forgotten_after_the_time_to_live() {
        let cache = TriggerCache::with_limits(Duration::from_millis(50), 1 << 20, 100);
        let call = Call::new(Hook::Login, "t-1", b"{}");
        cache.put(call.clone(), sent("first"));
        assert!(cache.get(&call).is_some());
        std::thread::sleep(Duration::from_millis(120));
        assert!(cache.get(&call).is_none());
    }

    #[test]
    fn the_retry_window_is_covered_with_margin() {
        // Three attempts of up to 30 s, 1 s and 2 s apart (docs/kratos.md §1.3).
        let window = Duration::from_secs(3 * 30 + 1 + 2);
        assert!(RETRY_WINDOW_TTL >= 3 * window);
    }
}
