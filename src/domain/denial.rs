//! Why a login is refused: one type from the policy to every protocol's answer.
//!
//! A [`Denial`] has three faces, each for its own reader:
//!
//! - [`Denial::code`]: a stable `snake_case` code. Logs, metrics and audit events carry the code
//!   (and the provider) and nothing else of the denial, because the reason may hold the user's
//!   data;
//! - `Display`: the reason, for the caller that asked (the API's `reason`, `kratos-jit check`,
//!   the `context` of a hook message). It may name what the login itself carried (the e-mail
//!   domain, the tenant the IdP asserted, the mapper's own `error` text) but never another
//!   person's data: a linking refusal never names the e-mail or the identity that holds it;
//! - [`Denial::user_message`]: what the person signing in reads, saying what they can do.

use std::fmt;

use crate::domain::ids::{ProviderId, TenantId};

/// Why an existing identity that holds the e-mail is not linked to this login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRefusal {
    /// `jit.link_by_verified_email = false` (the default).
    Disabled,
    /// The IdP did not assert the e-mail verified.
    Unverified,
    /// The identity holding the e-mail belongs to another tenant.
    OtherTenant,
}

/// Why a login was refused. Nothing was written for it.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// The mapper refused with `error "..."`; the text is the customer's own and may quote claims.
    #[error("{message}")]
    MapperRefused { message: String },
    /// The mapper failed to run (a claim it reads is missing, a type error, a limit).
    #[error("the mapper of provider {provider} failed: {detail}")]
    MapperFailed {
        provider: ProviderId,
        detail: String,
    },
    /// The mapper's output breaks Kratos's output contract.
    #[error("the mapper of provider {provider} {detail}")]
    InvalidOutput {
        provider: ProviderId,
        detail: String,
    },
    #[error("the mapper output has no `tenant_id` trait; provider {provider} must map the tenant")]
    NoTenant { provider: ProviderId },
    #[error("provider {provider} is not bound to tenant \"{tenant}\" (bound: {bound})")]
    ForeignTenant {
        provider: ProviderId,
        tenant: TenantId,
        bound: String,
    },
    #[error("the mapper output has no `email` trait")]
    NoEmail,
    #[error("the `email` trait is not an e-mail address (no local part and domain around an @)")]
    NotAnEmail,
    #[error("e-mail domain \"{domain}\" is not a verified domain of tenant \"{tenant}\"")]
    ForeignDomain { domain: String, tenant: TenantId },
    #[error(
        "the mapper marks an address in \"{domain}\" verified, but it is not the identity's e-mail in a verified domain of tenant \"{tenant}\""
    )]
    ForeignVerifiedAddress { domain: String, tenant: TenantId },
    /// The traits do not validate against the identity schema (field paths, no values).
    #[error("{0}")]
    Schema(String),
    #[error("provider {provider} does not create identities at first login (jit.create = false)")]
    CreateDisabled { provider: ProviderId },
    #[error("an identity with this e-mail address already exists and is not linked to provider {provider}: {}", link_reason(.why))]
    Linking {
        provider: ProviderId,
        why: LinkRefusal,
    },
    /// Kratos refused the write because a unique value (the e-mail as an identifier, a verifiable
    /// or recovery address) belongs to an identity kratos-jit cannot find or may not touch.
    #[error(
        "the e-mail address or another unique value of this login already belongs to another identity in Kratos, which provider {provider} may not change; an administrator must resolve the duplicate"
    )]
    ValueTaken { provider: ProviderId },
    /// The identity is deactivated in Kratos (`state: inactive`, for example by the IdP's SCIM
    /// push); only the IdP's provisioning reactivates it, never a sign-in.
    #[error(
        "the identity is deactivated (state inactive); provider {provider} reactivates it only through provisioning (SCIM active: true)"
    )]
    Deactivated { provider: ProviderId },
}

fn link_reason(why: &LinkRefusal) -> &'static str {
    match why {
        LinkRefusal::Disabled => {
            "linking by e-mail is off for this provider (jit.link_by_verified_email = false)"
        }
        LinkRefusal::Unverified => "the IdP did not assert the e-mail verified",
        LinkRefusal::OtherTenant => "it belongs to another tenant",
    }
}

// The reason may hold the login's data; `Debug` shows the code only, so that a `?denial` in a
// log line stays safe.
impl fmt::Debug for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Denial({})", self.code())
    }
}

impl Denial {
    /// The stable code of this denial, safe for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::MapperRefused { .. } => "mapper_refused",
            Denial::MapperFailed { .. } => "mapper_failed",
            Denial::InvalidOutput { .. } => "invalid_output",
            Denial::NoTenant { .. } => "no_tenant",
            Denial::ForeignTenant { .. } => "foreign_tenant",
            Denial::NoEmail => "no_email",
            Denial::NotAnEmail => "not_an_email",
            Denial::ForeignDomain { .. } => "foreign_domain",
            Denial::ForeignVerifiedAddress { .. } => "foreign_verified_address",
            Denial::Schema(_) => "schema",
            Denial::CreateDisabled { .. } => "create_disabled",
            Denial::Linking {
                why: LinkRefusal::Disabled,
                ..
            } => "linking_disabled",
            Denial::Linking {
                why: LinkRefusal::Unverified,
                ..
            } => "linking_unverified",
            Denial::Linking {
                why: LinkRefusal::OtherTenant,
                ..
            } => "linking_other_tenant",
            Denial::ValueTaken { .. } => "value_taken",
            Denial::Deactivated { .. } => "deactivated",
        }
    }

    /// What the person signing in is told: what happened and what they can do about it.
    pub fn user_message(&self) -> String {
        match self {
            Denial::MapperRefused { message } => format!(
                "Your organisation's sign-in refused this account: {message}"
            ),
            Denial::MapperFailed { .. } | Denial::InvalidOutput { .. } => {
                "Sign-in through your organisation is misconfigured for this application. Please contact your administrator.".to_owned()
            }
            Denial::NoTenant { .. } | Denial::ForeignTenant { .. } => {
                "Your organisation's sign-in cannot be used for this application. Please contact your administrator.".to_owned()
            }
            Denial::NoEmail | Denial::NotAnEmail => {
                "Your organisation's sign-in did not provide a usable e-mail address. Please ask your administrator to add one to your account.".to_owned()
            }
            Denial::ForeignDomain { domain, .. } | Denial::ForeignVerifiedAddress { domain, .. } => format!(
                "E-mail addresses in {domain} cannot sign in through your organisation's sign-in. Please use your organisation's e-mail address or contact your administrator."
            ),
            Denial::Schema(_) => {
                "Your account details from your organisation's sign-in are incomplete. Please contact your administrator.".to_owned()
            }
            Denial::CreateDisabled { .. } => {
                "Your account has not been set up for this application yet. Please ask your administrator for access.".to_owned()
            }
            Denial::Linking { .. } | Denial::ValueTaken { .. } => {
                "An account with this e-mail address already exists. Sign in the way you did before, or ask your administrator to connect it to your organisation's sign-in.".to_owned()
            }
            Denial::Deactivated { .. } => {
                "Your account has been deactivated by your organisation. Please contact your administrator.".to_owned()
            }
        }
    }

    /// `provider` is not bound to `tenant`; the reason lists the tenants it is bound to.
    pub fn foreign_tenant<'a>(
        provider: &ProviderId,
        tenant: &str,
        bound: impl IntoIterator<Item = &'a TenantId>,
    ) -> Denial {
        let bound: Vec<&str> = bound.into_iter().map(TenantId::as_str).collect();
        Denial::ForeignTenant {
            provider: provider.clone(),
            tenant: TenantId::new(tenant),
            bound: bound.join(", "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme() -> ProviderId {
        "okta-acme".parse().unwrap()
    }

    #[test]
    fn a_linking_refusal_names_neither_the_e_mail_nor_the_other_identity() {
        let denial = Denial::Linking {
            provider: acme(),
            why: LinkRefusal::OtherTenant,
        };
        let reason = denial.to_string();
        assert!(!reason.contains('@'), "{reason}");
        assert!(reason.contains("another tenant"), "{reason}");
        assert_eq!(denial.code(), "linking_other_tenant");
    }

    #[test]
    fn debug_output_shows_the_code_and_not_the_reason() {
        let denial = Denial::MapperRefused {
            message: "sign-in from directory 99999999 refused".into(),
        };
        assert_eq!(format!("{denial:?}"), "Denial(mapper_refused)");
    }

    #[test]
    fn each_kind_of_refusal_has_its_own_user_message() {
        let create = Denial::CreateDisabled { provider: acme() };
        let linking = Denial::Linking {
            provider: acme(),
            why: LinkRefusal::Disabled,
        };
        let domain = Denial::ForeignDomain {
            domain: "evil.example".into(),
            tenant: TenantId::new("tenant-acme"),
        };
        assert!(create.user_message().contains("not been set up"));
        assert!(linking.user_message().contains("already exists"));
        assert!(domain.user_message().contains("evil.example"));
        assert!(!domain.user_message().contains("tenant-acme"));
    }
}
