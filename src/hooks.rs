//! Kratos web hooks: the same JIT decision, called by Kratos during OIDC registration and login.
//!
//! Facts from Kratos's code this module is built on (RESEARCH.md §1–2):
//!
//! - Kratos never passes OIDC claims to a web hook. The Kratos-side claims mapper kratos-jit
//!   ships ([`crate::carrier`]) carries them in `metadata_public.kratos_jit_claims`.
//! - Registration hooks with `response.parse: true` run *before* the identity is persisted; a
//!   `200 {"identity": {...}}` answer replaces the named fields wholesale (an empty field is not
//!   copied, so an emptied `metadata_public` is sent as `{}`), and any 4xx with a `messages`
//!   body interrupts the flow and shows the messages. 5xx and 429 are retried by Kratos and their
//!   bodies lost, so this module never answers them.
//! - Login hooks cannot change the identity (Kratos persists only the session), so changes go
//!   through the admin API; a 4xx with `messages` refuses the sign-in.
//! - Kratos retries a call (same `Ory-Webhook-Trigger-ID`); answers are remembered per trigger id
//!   so that a retry gets the first answer and nothing is applied twice.
//! - Kratos v26.2.0 never re-runs the mapper at login, so the claims a login hook sees there are
//!   the registration's (or none, since registration removes them). Claims issued before the
//!   session's authentication are *stale*: they are never re-applied; the login is only checked
//!   against the policy with the identity's current traits. Where Kratos re-runs the mapper at
//!   login (`update_identity_on_login: automatic`, Kratos master and the enterprise build
//!   ≥ v26.2.2) the claims are fresh and the identity is updated through the admin API.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::carrier::CARRIED_CLAIMS_KEY;
use crate::decision::{self, Decision, Provenance};
use crate::kratos::{KratosAdmin, PatchOp};
use crate::mapper::MappedIdentity;
use crate::policy::{self, Denial};
use crate::provision::{ProvisionError, Provisioner, subject_tag};

/// Kratos's message ids are numbers; kratos-jit's live in their own range.
const MESSAGE_REFUSED: u64 = 4_170_001;
const MESSAGE_NOT_PROVISIONED: u64 = 4_170_002;
const MESSAGE_ACCOUNT_EXISTS: u64 = 4_170_003;
const MESSAGE_UNAVAILABLE: u64 = 4_170_004;

const TEXT_REFUSED: &str = "Your organisation's sign-in cannot be used for this application. Please contact your administrator.";

/// A hook answer: status and JSON body (or no body for 204).
#[derive(Debug, Clone, PartialEq)]
pub struct HookAnswer {
    pub status: u16,
    pub body: Option<Value>,
}

impl HookAnswer {
    fn no_change() -> Self {
        HookAnswer {
            status: 204,
            body: None,
        }
    }

    /// Kratos's `messages` body: a global message (`instance_ptr: "#/"`, shown above the form
    /// in OIDC flows, which have no trait inputs) with the reason in its context for support.
    fn refuse(status: u16, id: u64, text: &str, reason: Option<&str>) -> Self {
        let mut message = json!({"id": id, "text": text, "type": "error"});
        if let Some(reason) = reason {
            message["context"] = json!({"reason": reason});
        }
        HookAnswer {
            status,
            body: Some(json!({"messages": [{"instance_ptr": "#/", "messages": [message]}]})),
        }
    }

    fn denied(denial: &Denial) -> Self {
        let (id, text) = match denial {
            Denial::CreateDisabled { .. } => (
                MESSAGE_NOT_PROVISIONED,
                "Your account has not been set up for this application yet. Please ask your administrator for access.",
            ),
            Denial::Linking(_) => (
                MESSAGE_ACCOUNT_EXISTS,
                "An account with this e-mail address already exists. Sign in the way you did before.",
            ),
            _ => (MESSAGE_REFUSED, TEXT_REFUSED),
        };
        Self::refuse(403, id, text, Some(&denial.to_string()))
    }

    fn unavailable(reason: &str) -> Self {
        // A 4xx, not a 503: Kratos would retry a 5xx and then drop our message.
        Self::refuse(
            400,
            MESSAGE_UNAVAILABLE,
            "Sign-in is temporarily unavailable. Please try again in a minute.",
            Some(reason),
        )
    }
}

/// Answers remembered per `Ory-Webhook-Trigger-ID`, so a retried call is answered the same way.
pub struct TriggerCache {
    answers: Mutex<HashMap<String, (Instant, HookAnswer)>>,
    ttl: Duration,
    capacity: usize,
}

impl TriggerCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        TriggerCache {
            answers: Mutex::new(HashMap::new()),
            ttl,
            capacity,
        }
    }

    fn get(&self, trigger: &str) -> Option<HookAnswer> {
        let answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        answers
            .get(trigger)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, a)| a.clone())
    }

    fn put(&self, trigger: String, answer: HookAnswer) {
        let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        if answers.len() >= self.capacity {
            let ttl = self.ttl;
            answers.retain(|_, (at, _)| at.elapsed() < ttl);
            if answers.len() >= self.capacity {
                // Still full of live answers: forget the oldest rather than grow without bound.
                if let Some(oldest) = answers
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k.clone())
                {
                    answers.remove(&oldest);
                }
            }
        }
        answers.insert(trigger, (Instant::now(), answer));
    }
}

/// What the shipped body templates send (deploy/kratos/hooks/*.jsonnet).
#[derive(Debug, Deserialize)]
pub struct HookBody {
    #[serde(default)]
    pub flow_id: Option<String>,
    pub identity: HookIdentity,
    #[serde(default)]
    pub session: Option<HookSession>,
}

#[derive(Debug, Deserialize)]
pub struct HookIdentity {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub traits: Value,
    #[serde(default)]
    pub metadata_public: Option<PublicMetadata>,
}

/// `metadata_public` as a hook reads it: the carried claims kept as the JSON text they arrived
/// as (they go to the mapper worker unparsed), every other key as a value. Anything but an
/// object reads as empty.
#[derive(Debug, Default)]
pub struct PublicMetadata {
    carried: Option<Box<RawValue>>,
    rest: Map<String, Value>,
}

impl<'de> Deserialize<'de> for PublicMetadata {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = PublicMetadata;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<PublicMetadata, A::Error> {
                let mut public = PublicMetadata::default();
                while let Some(key) = map.next_key::<String>()? {
                    if key == CARRIED_CLAIMS_KEY {
                        public.carried = Some(map.next_value()?);
                    } else {
                        public.rest.insert(key, map.next_value()?);
                    }
                }
                Ok(public)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<PublicMetadata, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(PublicMetadata::default())
            }
            fn visit_unit<E>(self) -> Result<PublicMetadata, E> {
                Ok(PublicMetadata::default())
            }
            fn visit_bool<E>(self, _: bool) -> Result<PublicMetadata, E> {
                Ok(PublicMetadata::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<PublicMetadata, E> {
                Ok(PublicMetadata::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<PublicMetadata, E> {
                Ok(PublicMetadata::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<PublicMetadata, E> {
                Ok(PublicMetadata::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<PublicMetadata, E> {
                Ok(PublicMetadata::default())
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

#[derive(Debug, Deserialize)]
pub struct HookSession {
    #[serde(default)]
    pub authenticated_at: Option<String>,
    #[serde(default)]
    pub authentication_methods: Vec<Value>,
}

/// The provider named by carried claims, and the claims as JSON text.
type Carried = (String, Box<RawValue>);

/// Takes the carried claims out of `metadata_public`: the provider and claims they name (when
/// well-formed; the claims as JSON text), and what remains of `metadata_public` (always an
/// object: `{}` when nothing is left).
fn take_carried(identity: &mut HookIdentity) -> (Option<Carried>, Map<String, Value>) {
    #[derive(Deserialize)]
    struct Parts {
        #[serde(default)]
        provider: Value,
        #[serde(default)]
        claims: Option<Box<RawValue>>,
    }
    let public = identity.metadata_public.take().unwrap_or_default();
    let carried = public
        .carried
        .and_then(|raw| serde_json::from_str::<Parts>(raw.get()).ok())
        .and_then(|carried| match (carried.provider, carried.claims) {
            (Value::String(provider), Some(claims)) if claims.get().starts_with('{') => {
                Some((provider, claims))
            }
            _ => None,
        });
    (carried, public.rest)
}

/// The `sub` claim of claims in JSON text, `""` when there is none.
fn subject_of(claims: &RawValue) -> String {
    #[derive(Deserialize)]
    struct Subject {
        #[serde(default)]
        sub: Value,
    }
    match serde_json::from_str::<Subject>(claims.get()) {
        Ok(Subject {
            sub: Value::String(sub),
        }) => sub,
        _ => String::new(),
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Registration (pre-persist): decide, and tell Kratos what to persist. No Kratos call.
pub async fn registration<K: KratosAdmin>(
    provisioner: &Provisioner<K>,
    mut body: HookBody,
) -> HookAnswer {
    let (carried, mut public) = take_carried(&mut body.identity);
    let Some((provider_id, claims)) = carried else {
        tracing::error!(
            message = "A registration hook carried no claims; is the provider's mapper_url the kratos-jit carrier mapper?"
        );
        return HookAnswer::unavailable(
            "kratos-jit received no claims from Kratos (configuration)",
        );
    };
    let Some(provider) = provisioner.providers().get(&provider_id) else {
        tracing::error!(message = "A registration hook named a provider kratos-jit does not have.", provider = %provider_id);
        return HookAnswer::unavailable("kratos-jit does not know this provider (configuration)");
    };
    let subject = subject_of(&claims);
    let tag = subject_tag(&provider_id, &subject);
    let mapped = match provisioner.map(provider, (&*claims).into(), None).await {
        Ok(Ok(mapped)) => mapped,
        Ok(Err(denial)) => {
            tracing::info!(message = "Refused a registration.", provider = %provider_id, subject = %tag, reason = %denial);
            return HookAnswer::denied(&denial);
        }
        Err(error) => {
            tracing::error!(message = "Could not evaluate a registration.", provider = %provider_id, %error);
            return HookAnswer::unavailable("the mapper could not be evaluated");
        }
    };
    let provenance = Provenance {
        provider: provider_id.clone(),
        subject,
        synced_at: now_rfc3339(),
        mapper_sha256: provider.mapper.sha256.clone(),
    };
    let new = match decision::decide(provider, &mapped, None, &provenance) {
        Decision::Create(new) => new,
        Decision::Denied(denial) => {
            tracing::info!(message = "Refused a registration.", provider = %provider_id, subject = %tag, reason = %denial);
            return HookAnswer::denied(&denial);
        }
        // Without an existing identity the decision is create or deny.
        other => {
            tracing::error!(message = "Unexpected registration decision.", decision = ?other);
            return HookAnswer::unavailable("internal decision error");
        }
    };
    if let Some(owned) = &mapped.metadata_public {
        public.extend(owned.clone());
    }
    let mut identity = json!({
        "traits": new.traits,
        "metadata_public": public,
        "metadata_admin": new.metadata_admin,
    });
    if !new.verified_addresses.is_empty() {
        identity["verifiable_addresses"] = new
            .verified_addresses
            .iter()
            .map(|a| json!({"value": a.value, "via": a.via, "verified": true, "status": "completed"}))
            .collect();
    }
    tracing::info!(message = "Accepted a registration.", provider = %provider_id, subject = %tag);
    HookAnswer {
        status: 200,
        body: Some(json!({ "identity": identity })),
    }
}

/// The provider of an OIDC login, from the session's authentication methods.
fn login_provider(session: Option<&HookSession>) -> Option<String> {
    session?
        .authentication_methods
        .iter()
        .rev()
        .find(|m| m.get("method").and_then(Value::as_str) == Some("oidc"))
        .and_then(|m| m.get("provider")?.as_str().map(str::to_owned))
}

/// Seconds since the epoch of an RFC 3339 time.
fn epoch_seconds(rfc3339: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(rfc3339.trim_end_matches('Z').split('.').next()?).ok()?;
    Some(t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs() as i64)
}

/// Claims are fresh when they were issued for this sign-in: `iat` no earlier than `max_age`
/// before the session's authentication.
fn fresh(claims: &Value, session: Option<&HookSession>, max_age: Duration) -> bool {
    let iat = claims
        .get("raw_claims")
        .and_then(|r| r.get("iat"))
        .or_else(|| claims.get("iat"))
        .and_then(Value::as_i64);
    let authenticated = session
        .and_then(|s| s.authenticated_at.as_deref())
        .and_then(epoch_seconds);
    match (iat, authenticated) {
        (Some(iat), Some(at)) => iat >= at - max_age.as_secs() as i64,
        _ => false,
    }
}

/// Login (after): refuse what the policy refuses; apply fresh claims through the admin API.
pub async fn login<K: KratosAdmin>(
    provisioner: &Provisioner<K>,
    mut body: HookBody,
    max_age: Duration,
    deadline: Duration,
) -> HookAnswer {
    let Some(provider_id) = login_provider(body.session.as_ref()) else {
        return HookAnswer::no_change();
    };
    let Some(provider) = provisioner.providers().get(&provider_id) else {
        // A provider kratos-jit does not manage: not ours to judge.
        return HookAnswer::no_change();
    };
    let identity_id = body.identity.id.clone().unwrap_or_default();
    let (carried, public) = take_carried(&mut body.identity);
    // The login hook needs the claims as a value (freshness, the provisioning use case).
    let carried = carried.map(|(provider, raw)| {
        let claims = serde_json::from_str::<Value>(raw.get()).unwrap_or_default();
        (provider, claims)
    });
    match carried {
        Some((_, claims)) if fresh(&claims, body.session.as_ref(), max_age) => {
            // Policy first: a refusal needs no Kratos call and must not wait for one.
            let current = json!({"traits": body.identity.traits, "metadata_public": public});
            match provisioner
                .map(provider, (&claims).into(), Some(&current))
                .await
            {
                Ok(Err(denial)) => {
                    tracing::info!(message = "Refused a login.", provider = %provider_id, identity_id = %identity_id, reason = %denial);
                    return HookAnswer::denied(&denial);
                }
                Err(error) => {
                    tracing::error!(message = "Could not evaluate a login.", provider = %provider_id, %error);
                    return HookAnswer::unavailable("the mapper could not be evaluated");
                }
                Ok(Ok(_)) => {}
            }
            let apply = async {
                let outcome = provisioner.provision(&provider_id, &claims).await?;
                if outcome.action == crate::provision::Action::Denied {
                    return Ok(Err(outcome));
                }
                // The claims have served their purpose; they must not stay visible to the user.
                let remove = [PatchOp::Remove {
                    path: format!("/metadata_public/{CARRIED_CLAIMS_KEY}"),
                }];
                if let Err(error) = provisioner.kratos().patch(&identity_id, &remove).await {
                    tracing::warn!(message = "Could not remove carried claims after a login.", identity_id = %identity_id, %error);
                }
                Ok::<_, ProvisionError>(Ok(outcome))
            };
            match tokio::time::timeout(deadline, apply).await {
                Ok(Ok(Ok(outcome))) => {
                    tracing::info!(message = "Applied a login.", provider = %provider_id, identity_id = %identity_id, action = ?outcome.action, changed = ?outcome.changed);
                    HookAnswer::no_change()
                }
                Ok(Ok(Err(outcome))) => {
                    let reason = outcome.reason.unwrap_or_default();
                    HookAnswer::refuse(403, MESSAGE_REFUSED, TEXT_REFUSED, Some(&reason))
                }
                // Documented outcome: the policy already passed, so the sign-in proceeds; the
                // update is applied at the next login (or by the provisioning API).
                Ok(Err(error)) => {
                    tracing::warn!(message = "Kratos refused or failed a login update; the sign-in proceeds without it.", provider = %provider_id, identity_id = %identity_id, %error);
                    HookAnswer::no_change()
                }
                Err(_) => {
                    tracing::warn!(message = "The Kratos admin API did not answer within the hook deadline; the sign-in proceeds without the update.", provider = %provider_id, identity_id = %identity_id);
                    HookAnswer::no_change()
                }
            }
        }
        stale_or_absent => {
            if stale_or_absent.is_some() {
                tracing::info!(message = "Stale claims at login are not re-applied (Kratos did not refresh them).", provider = %provider_id, identity_id = %identity_id);
            }
            // Re-check what the identity holds against the policy as it is today.
            let Some(traits) = body.identity.traits.as_object() else {
                return HookAnswer::no_change();
            };
            let mapped = MappedIdentity {
                traits: traits.clone(),
                metadata_public: None,
                metadata_admin: None,
                verified_addresses: vec![],
            };
            match policy::admit(provider, &mapped, provisioner.schemas()) {
                Ok(_) => HookAnswer::no_change(),
                Err(denial) => {
                    tracing::info!(message = "Refused a login.", provider = %provider_id, identity_id = %identity_id, reason = %denial);
                    HookAnswer::denied(&denial)
                }
            }
        }
    }
}

/// Everything the hook endpoints need besides the provisioning use case.
pub struct HookSettings {
    /// SHA-256 of each accepted secret.
    pub secrets: Vec<[u8; 32]>,
    pub deadline: Duration,
    pub claims_max_age: Duration,
    pub max_body_bytes: usize,
}

impl HookSettings {
    /// Kratos's `web_hook` authenticates with an `api_key` header (`Authorization: Bearer …` or
    /// the bare secret) or `basic_auth` (any user, the secret as password).
    fn authenticated(&self, request: &HttpRequest) -> bool {
        let Some(value) = request
            .headers()
            .get("Authorization")
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let presented = match value.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim().to_owned(),
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("basic") => {
                use base64::Engine as _;
                let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest.trim())
                else {
                    return false;
                };
                let Ok(text) = String::from_utf8(decoded) else {
                    return false;
                };
                match text.split_once(':') {
                    Some((_, password)) => password.to_owned(),
                    None => return false,
                }
            }
            _ => value.trim().to_owned(),
        };
        crate::server::secret_matches(&self.secrets, &presented)
    }
}

/// The web hook HTTP entry point shared by both hooks.
pub async fn handle<F, Fut>(
    request: &HttpRequest,
    payload: web::Payload,
    settings: &HookSettings,
    cache: &TriggerCache,
    run: F,
) -> HttpResponse
where
    F: FnOnce(HookBody) -> Fut,
    Fut: std::future::Future<Output = HookAnswer>,
{
    let answer = async {
        if !settings.authenticated(request) {
            return HookAnswer::refuse(
                401,
                MESSAGE_UNAVAILABLE,
                "Sign-in is misconfigured. Please contact support.",
                Some("the web hook call was not authenticated"),
            );
        }
        let trigger = request
            .headers()
            .get("Ory-Webhook-Trigger-ID")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(previous) = trigger.as_deref().and_then(|t| cache.get(t)) {
            return previous;
        }
        let body = match payload.to_bytes_limited(settings.max_body_bytes).await {
            Ok(Ok(bytes)) => bytes,
            _ => {
                return HookAnswer::refuse(
                    413,
                    MESSAGE_UNAVAILABLE,
                    "Sign-in could not be completed.",
                    Some("the web hook body is too large"),
                );
            }
        };
        let answer = match serde_json::from_slice::<HookBody>(&body) {
            Ok(body) => run(body).await,
            Err(_) => HookAnswer::refuse(
                400,
                MESSAGE_UNAVAILABLE,
                "Sign-in could not be completed.",
                Some("the web hook body is not what kratos-jit's body template sends"),
            ),
        };
        if let Some(trigger) = trigger {
            cache.put(trigger, answer.clone());
        }
        answer
    }
    .await;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_REQUEST);
    match answer.body {
        Some(body) => HttpResponse::build(status).json(body),
        None => HttpResponse::build(status).finish(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(metadata_public: &str) -> HookIdentity {
        serde_json::from_str(&format!(
            r#"{{"traits": {{}}, "metadata_public": {metadata_public}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn carried_claims_are_taken_as_text_and_the_rest_is_kept() {
        let mut id = identity(
            r#"{"theme": "dark", "kratos_jit_claims": {"provider": "okta-acme",
                "claims": {"sub": "ada",
                           "email": "ada@acme.example"}}}"#,
        );
        let (carried, rest) = take_carried(&mut id);
        let (provider, claims) = carried.expect("carried claims");
        assert_eq!(provider, "okta-acme");
        let parsed: Value = serde_json::from_str(claims.get()).unwrap();
        assert_eq!(parsed, json!({"sub": "ada", "email": "ada@acme.example"}));
        assert_eq!(subject_of(&claims), "ada");
        assert_eq!(Value::Object(rest), json!({"theme": "dark"}));
    }

    #[test]
    fn malformed_carried_claims_are_absent_not_an_error() {
        for carried in [
            r#""text""#,
            r#"{"provider": 7, "claims": {}}"#,
            r#"{"provider": "p", "claims": ["not", "an", "object"]}"#,
            r#"{"provider": "p"}"#,
        ] {
            let mut id = identity(&format!(r#"{{"kratos_jit_claims": {carried}, "a": 1}}"#));
            let (taken, rest) = take_carried(&mut id);
            assert!(taken.is_none(), "{carried}");
            assert_eq!(Value::Object(rest), json!({"a": 1}), "{carried}");
        }
    }

    #[test]
    fn metadata_public_that_is_not_an_object_reads_as_empty() {
        for value in ["null", "\"x\"", "3", "true", "[1, {\"a\": 2}]"] {
            let mut id = identity(value);
            let (taken, rest) = take_carried(&mut id);
            assert!(taken.is_none() && rest.is_empty(), "{value}");
        }
    }

    #[test]
    fn claims_without_a_string_subject_have_an_empty_one() {
        for claims in [r#"{}"#, r#"{"sub": 5}"#, r#"{"sub": null, "x": [1]}"#] {
            let raw: Box<RawValue> = serde_json::from_str(claims).unwrap();
            assert_eq!(subject_of(&raw), "", "{claims}");
        }
    }
}
