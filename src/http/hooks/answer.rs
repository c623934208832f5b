//! What a hook answers Kratos: nothing to change (204), the identity to persist (200), or a
//! 4xx with Kratos's `messages` body, which Kratos shows in its flow UI.
//!
//! Never a 5xx or a 429: Kratos retries those and then drops the body, so the user would see a
//! generic error instead of what kratos-jit had to say (docs/kratos.md §1.7).

use serde_json::{Value, json};

use crate::domain::Denial;

/// Kratos's message ids are numbers; kratos-jit's live in their own range, one per kind of
/// refusal so that a UI can tell them apart.
mod id {
    pub const REFUSED: u64 = 4_170_001;
    pub const NOT_PROVISIONED: u64 = 4_170_002;
    pub const ACCOUNT_EXISTS: u64 = 4_170_003;
    pub const UNAVAILABLE: u64 = 4_170_004;
    pub const LINKED: u64 = 4_170_005;
    pub const MISCONFIGURED: u64 = 4_170_006;
    pub const DOMAIN: u64 = 4_170_007;
    pub const NO_EMAIL: u64 = 4_170_008;
    pub const MAPPER: u64 = 4_170_009;
    pub const INCOMPLETE: u64 = 4_170_010;
    pub const BAD_REQUEST: u64 = 4_170_011;
    pub const DEACTIVATED: u64 = 4_170_012;
}

/// A hook answer: status and JSON body (or no body for 204).
#[derive(Debug, Clone, PartialEq)]
pub struct HookAnswer {
    pub status: u16,
    pub body: Option<Value>,
}

impl HookAnswer {
    pub fn no_change() -> Self {
        HookAnswer {
            status: 204,
            body: None,
        }
    }

    pub fn identity(identity: Value) -> Self {
        HookAnswer {
            status: 200,
            body: Some(json!({ "identity": identity })),
        }
    }

    /// Kratos's `messages` body: a global message (`instance_ptr: "#/"`, shown above the form
    /// in OIDC flows, which have no trait inputs), with the reason and a code in its context for
    /// support.
    fn refuse(status: u16, id: u64, text: &str, code: &str, reason: Option<&str>) -> Self {
        let mut context = json!({ "code": code });
        if let Some(reason) = reason {
            context["reason"] = json!(reason);
        }
        let message = json!({"id": id, "text": text, "type": "error", "context": context});
        HookAnswer {
            status,
            body: Some(json!({"messages": [{"instance_ptr": "#/", "messages": [message]}]})),
        }
    }

    /// The refusal of a login: a message for the person signing in, specific to the denial.
    pub fn denied(denial: &Denial) -> Self {
        let id = match denial {
            Denial::CreateDisabled { .. } => id::NOT_PROVISIONED,
            Denial::Linking { .. } | Denial::ValueTaken { .. } => id::ACCOUNT_EXISTS,
            Denial::ForeignDomain { .. } | Denial::ForeignVerifiedAddress { .. } => id::DOMAIN,
            Denial::NoEmail | Denial::NotAnEmail => id::NO_EMAIL,
            Denial::MapperRefused { .. } => id::MAPPER,
            Denial::MapperFailed { .. } | Denial::InvalidOutput { .. } => id::MISCONFIGURED,
            Denial::Schema(_) => id::INCOMPLETE,
            Denial::NoTenant { .. } | Denial::ForeignTenant { .. } => id::REFUSED,
            Denial::Deactivated { .. } => id::DEACTIVATED,
        };
        Self::refuse(
            403,
            id,
            &denial.user_message(),
            denial.code(),
            Some(&denial.to_string()),
        )
    }

    /// An existing account was connected to the user's IdP during a registration: Kratos must
    /// not create a second identity, and the user's next sign-in finds the linked one.
    pub fn linked() -> Self {
        Self::refuse(
            409,
            id::LINKED,
            "Your existing account is now connected to your organisation's sign-in. Please sign in again.",
            "linked",
            None,
        )
    }

    /// kratos-jit or Kratos could not be reached in time: worth trying again. A 4xx, not a
    /// 503: Kratos would retry a 5xx and then drop this message.
    pub fn unavailable(reason: &str) -> Self {
        Self::refuse(
            400,
            id::UNAVAILABLE,
            "Sign-in is temporarily unavailable. Please try again in a minute.",
            "unavailable",
            Some(reason),
        )
    }

    /// The deployment is wired wrongly (no carried claims, an unknown provider, a wrong hook
    /// secret): trying again will not help, the operator must fix it.
    pub fn misconfigured(status: u16, reason: &str) -> Self {
        Self::refuse(
            status,
            id::MISCONFIGURED,
            "Sign-in is misconfigured for this application. Please contact support.",
            "misconfigured",
            Some(reason),
        )
    }

    /// The call itself is malformed (a body the templates never send, one over the limit).
    pub fn bad_request(status: u16, reason: &str) -> Self {
        Self::refuse(
            status,
            id::BAD_REQUEST,
            "Sign-in could not be completed.",
            "bad_request",
            Some(reason),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{LinkRefusal, ProviderId};

    fn message_id(answer: &HookAnswer) -> u64 {
        answer.body.as_ref().unwrap()["messages"][0]["messages"][0]["id"]
            .as_u64()
            .unwrap()
    }

    #[test]
    fn each_kind_of_denial_gets_its_own_message() {
        let provider: ProviderId = "okta-acme".parse().unwrap();
        let create = HookAnswer::denied(&Denial::CreateDisabled {
            provider: provider.clone(),
        });
        let linking = HookAnswer::denied(&Denial::Linking {
            provider,
            why: LinkRefusal::Disabled,
        });
        let no_email = HookAnswer::denied(&Denial::NoEmail);
        assert_eq!(message_id(&create), id::NOT_PROVISIONED);
        assert_eq!(message_id(&linking), id::ACCOUNT_EXISTS);
        assert_eq!(message_id(&no_email), id::NO_EMAIL);
        assert!(create.status == 403 && linking.status == 403);
    }

    #[test]
    fn no_answer_is_a_5xx_or_a_429() {
        for answer in [
            HookAnswer::unavailable("x"),
            HookAnswer::misconfigured(401, "x"),
            HookAnswer::bad_request(413, "x"),
            HookAnswer::linked(),
        ] {
            assert!((400..500).contains(&answer.status) && answer.status != 429);
        }
    }
}
