//! Kratos web hooks: the login use case, called by Kratos during OIDC registration and login.
//!
//! Facts from Kratos's code this module is built on (docs/kratos.md §1–2):
//!
//! - Kratos never passes OIDC claims to a web hook. The Kratos-side claims mapper kratos-jit
//!   ships ([`crate::carrier`]) carries them in `metadata_public.kratos_jit_claims`.
//! - Registration hooks with `response.parse: true` run *before* the identity is persisted; a
//!   `200 {"identity": {...}}` answer replaces the named fields wholesale (an empty field is not
//!   copied, so an emptied `metadata_public` is sent as `{}`), and any 4xx with a `messages`
//!   body interrupts the flow and shows the messages. 5xx and 429 are retried by Kratos and their
//!   bodies lost, so this module never answers them ([`answer`]).
//! - Login hooks cannot change the identity (Kratos persists only the session), so the use case
//!   writes through the admin API; a 4xx with `messages` refuses the sign-in.
//! - Kratos retries a call (same `Ory-Webhook-Trigger-ID`); answers are remembered per hook,
//!   trigger id and body ([`triggers`]) so that a retry gets the first answer and nothing is
//!   applied twice.
//! - Kratos v26.2.0 never re-runs the mapper at login, so the claims a login hook sees there are
//!   the registration's (or none, since registration removes them). Claims issued before the
//!   session's authentication are *stale*: they are never re-applied; the login is only checked
//!   against the policy with the identity's current traits. Where Kratos re-runs the mapper at
//!   login (`update_identity_on_login: automatic`, Kratos master and the enterprise build
//!   ≥ v26.2.2) the claims are fresh and the login use case updates the identity.
//!
//! Both hooks run [`crate::login`]: the registration as [`Current::Registering`] (Kratos persists
//! what the use case decides; the identity that already holds the e-mail is looked up and the
//! linking rule applied, as for the API), the login as [`Current::Session`].

pub mod answer;
pub mod body;
pub mod triggers;

use std::time::{Duration, SystemTime};

use actix_web::http::StatusCode;
use actix_web::http::header::ContentType;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::carrier::CARRIED_CLAIMS_KEY;
use crate::domain::IdentityId;
use crate::kratos::{KratosAdmin, PatchOp};
use crate::login::{Action, Current, EntryPoint, Login, LoginError, Logins};
use crate::provider::Provider;
use answer::HookAnswer;
use body::{HookBody, HookSession, issued_at, subject_of, take_carried};
use serde_json::value::RawValue;
use triggers::{Call, Hook, Sent, TriggerCache, trigger_id};

use super::auth::{Secrets, hook_secret};
use super::read_body;

/// Everything the hook endpoints need besides the login use case.
pub struct HookSettings {
    pub secrets: Secrets,
    /// The Kratos calls of one hook call end within this.
    pub deadline: Duration,
    pub claims_max_age: Duration,
    /// `hooks.max_body_bytes`: larger than the API's, for the bodies Kratos sends (see
    /// [`crate::config::HooksConfig::max_body_bytes`]).
    pub max_body_bytes: usize,
    /// The whole body arrives within this, or the call is refused (408) and the connection
    /// closed.
    pub body_timeout: Duration,
}

/// Registration (pre-persist): decide, and tell Kratos what to persist.
pub async fn registration<K: KratosAdmin>(
    logins: &Logins<K>,
    settings: &HookSettings,
    mut body: HookBody,
) -> HookAnswer {
    let (carried, mut public) = take_carried(&mut body.identity);
    let Some((provider_id, claims)) = carried else {
        tracing::error!(
            message = "A registration hook carried no claims; is the provider's mapper_url the kratos-jit carrier mapper?"
        );
        return HookAnswer::misconfigured(400, "kratos-jit received no claims from Kratos");
    };
    let Some(provider) = logins.providers().get(&provider_id) else {
        tracing::error!(message = "A registration hook named a provider kratos-jit does not have.");
        return HookAnswer::misconfigured(400, "kratos-jit does not know this provider");
    };
    let login = match carried_login(provider, &claims, settings, Current::Registering) {
        Ok(login) => login,
        Err(answer) => return answer,
    };
    let outcome = match logins.run(login).await {
        Ok(outcome) => outcome,
        Err(_) => return HookAnswer::unavailable("kratos-jit could not complete the registration"),
    };
    match (outcome.action, outcome.to_create, outcome.denial) {
        (Action::Denied, _, Some(denial)) => HookAnswer::denied(&denial),
        (Action::Linked, ..) => HookAnswer::linked(),
        (Action::Created, Some(new), _) => {
            if let Some(owned) = outcome.mapped.and_then(|m| m.metadata_public) {
                public.extend(owned);
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
            HookAnswer::identity(identity)
        }
        // A registration holds no credential yet, so nothing else can be decided.
        _ => HookAnswer::unavailable("kratos-jit could not complete the registration"),
    }
}

/// The login a hook describes with the claims Kratos carried to it.
fn carried_login<'a>(
    provider: &'a Provider,
    claims: &'a RawValue,
    settings: &HookSettings,
    current: Current,
) -> Result<Login<'a>, HookAnswer> {
    let subject = subject_of(claims).map_err(|reason| HookAnswer::bad_request(400, &reason))?;
    let entry = match current {
        Current::Registering => EntryPoint::RegistrationHook,
        _ => EntryPoint::LoginHook,
    };
    Ok(Login {
        entry,
        provider,
        subject,
        claims: claims.into(),
        current,
        kratos_budget: settings.deadline,
        cleanup: vec![],
    })
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
fn fresh(iat: Option<i64>, session: Option<&HookSession>, max_age: Duration) -> bool {
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
    logins: &Logins<K>,
    settings: &HookSettings,
    mut body: HookBody,
) -> HookAnswer {
    let Some(provider_id) = login_provider(body.session.as_ref()) else {
        return HookAnswer::no_change();
    };
    let Some(provider) = logins.providers().get(&provider_id) else {
        // A provider kratos-jit does not manage: not ours to judge.
        return HookAnswer::no_change();
    };
    let Some(identity_id) = body
        .identity
        .id
        .as_deref()
        .and_then(|id| id.parse::<IdentityId>().ok())
    else {
        return HookAnswer::bad_request(400, "identity.id is not a Kratos identity id (a UUID)");
    };
    let (carried, public) = take_carried(&mut body.identity);
    // Claims carried for another provider are not this login's.
    let carried = carried.filter(|(provider, _)| *provider == provider_id);
    let fresh_claims = carried.filter(|(_, claims)| {
        fresh(
            issued_at(claims),
            body.session.as_ref(),
            settings.claims_max_age,
        )
    });
    let Some((_, claims)) = fresh_claims else {
        // Stale or absent claims are never re-applied; what the identity holds is re-checked
        // against the policy as it is today.
        return match logins.recheck(provider, &body.identity.traits) {
            Ok(()) => HookAnswer::no_change(),
            Err(denial) => {
                tracing::info!(message = "Refused a login on the identity's current traits.", provider = provider.id.as_str(), identity_id = %identity_id, denial = denial.code());
                use crate::audit::{AuditAction, Record};
                logins.audit().refusal(&Record {
                    identity_id: Some(identity_id),
                    denial_code: Some(denial.code()),
                    ..Record::new(
                        EntryPoint::LoginHook.as_str(),
                        &provider.id,
                        AuditAction::Denied,
                    )
                });
                HookAnswer::denied(&denial)
            }
        };
    };
    let current = Current::Session {
        view: json!({"traits": body.identity.traits, "metadata_public": public}),
    };
    let mut login = match carried_login(provider, &claims, settings, current) {
        Ok(login) => login,
        Err(answer) => return answer,
    };
    // The claims have served their purpose; they must not stay visible to the user.
    login.cleanup.push(PatchOp::Remove {
        path: format!("/metadata_public/{CARRIED_CLAIMS_KEY}"),
    });
    match logins.run(login).await {
        Ok(outcome) => match outcome.denial {
            Some(denial) => HookAnswer::denied(&denial),
            None => HookAnswer::no_change(),
        },
        // A change whose audit event cannot be written is refused, and so is the sign-in that
        // needs it (a demotion must not wait for the next login).
        Err(LoginError::Audit(_)) => {
            HookAnswer::unavailable("kratos-jit cannot record the sign-in's changes right now")
        }
        // Documented outcome: the policy passed (or could not run for want of Kratos, which
        // the use case has checked on what the hook was shown), so the sign-in proceeds; the
        // update is applied at the next login (or by the provisioning API).
        Err(_) => {
            tracing::warn!(message = "The login's update could not be written; the sign-in proceeds without it.", provider = provider.id.as_str(), identity_id = %identity_id);
            HookAnswer::no_change()
        }
    }
}

/// The web hook HTTP entry point shared by both hooks: authentication, the trigger id, the body
/// (within `hooks.max_body_bytes` and the body deadline), retries.
pub async fn handle<F, Fut>(
    request: &HttpRequest,
    payload: web::Payload,
    hook: Hook,
    settings: &HookSettings,
    cache: &TriggerCache,
    run: F,
) -> HttpResponse
where
    F: FnOnce(HookBody) -> Fut,
    Fut: std::future::Future<Output = HookAnswer>,
{
    let header = request
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok());
    if !hook_secret(header).is_some_and(|secret| settings.secrets.accepts(&secret)) {
        let answer = HookAnswer::misconfigured(401, "the web hook call was not authenticated");
        return respond(&Sent::from(answer), false);
    }
    let trigger = request
        .headers()
        .get("Ory-Webhook-Trigger-ID")
        .map(|v| v.as_bytes());
    let trigger = match trigger_id(trigger) {
        Ok(trigger) => trigger,
        Err(bad) => {
            tracing::info!(
                message =
                    "Refused a web hook call whose Ory-Webhook-Trigger-ID is not one Kratos sends.",
                hook = hook.as_str(),
                length = trigger.map_or(0, <[u8]>::len)
            );
            return respond(
                &Sent::from(HookAnswer::bad_request(400, &bad.to_string())),
                false,
            );
        }
    };
    let body = match read_body(
        request,
        payload,
        settings.max_body_bytes,
        settings.body_timeout,
    )
    .await
    {
        Ok(body) => body,
        Err(error) => {
            tracing::info!(
                message = "Refused a web hook call's body.",
                hook = hook.as_str(),
                status = error.status()
            );
            let answer = HookAnswer::bad_request(error.status(), &error.to_string());
            // What is left of the body is not read: the connection cannot carry another request.
            return respond(&Sent::from(answer), true);
        }
    };
    let call = trigger.map(|trigger| Call::new(hook, trigger, &body));
    if let Some(previous) = call.as_ref().and_then(|call| cache.get(call)) {
        return respond(&previous, false);
    }
    let answer = match body::parse(&body) {
        Ok(body) => crate::audit::with_trigger(trigger, run(body)).await,
        Err(reason) => HookAnswer::bad_request(400, &reason),
    };
    let sent = Sent::from(answer);
    if let Some(call) = call {
        cache.put(call, sent.clone());
    }
    respond(&sent, false)
}

impl From<HookAnswer> for Sent {
    fn from(answer: HookAnswer) -> Sent {
        Sent {
            status: answer.status,
            body: answer
                .body
                .map(|body| Bytes::from(body.to_string().into_bytes().into_boxed_slice())),
        }
    }
}

fn respond(sent: &Sent, close: bool) -> HttpResponse {
    let status = StatusCode::from_u16(sent.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = HttpResponse::build(status);
    if close {
        response.force_close();
    }
    match &sent.body {
        Some(body) => response
            .content_type(ContentType::json())
            .body(body.clone()),
        None => response.finish(),
    }
}
