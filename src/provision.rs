//! What happens to a login: claims in, the right Kratos identity out.
//!
//! [`Provisioner::provision`] runs the whole use case against the Kratos port:
//!
//! 1. find the identity holding the OIDC credential `<provider-id>:<subject>`;
//! 2. run the provider's mapper with the claims and that identity (`std.extVar('identity')`);
//! 3. check Kratos's output contract and the policy (tenant, domains, schema);
//! 4. decide ([`crate::decision`]) and write at most one change.
//!
//! Concurrency and faults are resolved by Kratos's own uniqueness rather than by locks, so the
//! guarantees hold across any number of kratos-jit processes: two logins of a new subject both
//! try to create; Kratos accepts one and answers 409 to the other, which re-reads and continues
//! as an update of the identity that now exists. A create whose answer was lost to a timeout is
//! retried and ends the same way. Updates are JSON Patches of the owned fields only, applied
//! atomically by Kratos, so an update is never half-applied and never clobbers a field written
//! concurrently by the application.

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::decision::{self, Decision, Provenance};
use crate::kratos::{Identity, KratosAdmin, KratosError, OidcCredential};
use crate::mapper::{Claims, MappedIdentity, MapperEngine, MapperError, identity_ext_var};
use crate::policy::{self, Denial, EMAIL_TRAIT};
use crate::provider::{Provider, Providers};
use crate::schema::IdentitySchemas;

/// What a provisioning did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Created,
    Updated,
    Unchanged,
    Denied,
}

/// The result reported to the caller.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub action: Action,
    pub identity_id: Option<String>,
    pub changed: Vec<String>,
    pub reason: Option<String>,
}

impl Outcome {
    fn denied(denial: &Denial) -> Self {
        Outcome {
            action: Action::Denied,
            identity_id: None,
            changed: vec![],
            reason: Some(denial.to_string()),
        }
    }
}

/// Why a provisioning could not be carried out (as opposed to being denied).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProvisionError {
    #[error("unknown provider `{0}`")]
    UnknownProvider(String),
    #[error("the claims have no `sub` (subject) string")]
    NoSubject,
    #[error(transparent)]
    Kratos(#[from] KratosError),
    #[error("the mapper engine could not evaluate: {0}")]
    Engine(MapperError),
}

/// A short, stable, non-reversible tag of a subject for logs (never log the subject itself).
pub fn subject_tag(provider: &str, subject: &str) -> String {
    let digest = Sha256::digest(format!("{provider}:{subject}").as_bytes());
    hex::encode(&digest[..6])
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// The provisioning use case, over any Kratos adapter.
pub struct Provisioner<K> {
    kratos: K,
    engine: MapperEngine,
    providers: Arc<Providers>,
    schemas: Arc<IdentitySchemas>,
}

/// How many times a decision is re-taken after Kratos reported a concurrent change.
const MAX_ROUNDS: usize = 3;

impl<K: KratosAdmin> Provisioner<K> {
    pub fn new(
        kratos: K,
        engine: MapperEngine,
        providers: Arc<Providers>,
        schemas: Arc<IdentitySchemas>,
    ) -> Self {
        Provisioner {
            kratos,
            engine,
            providers,
            schemas,
        }
    }

    pub fn providers(&self) -> &Providers {
        &self.providers
    }

    pub fn kratos(&self) -> &K {
        &self.kratos
    }

    pub fn schemas(&self) -> &IdentitySchemas {
        &self.schemas
    }

    /// Provisions one login of `provider_id` with the Kratos claims object `claims`.
    pub async fn provision(
        &self,
        provider_id: &str,
        claims: &Value,
    ) -> Result<Outcome, ProvisionError> {
        let provider = self
            .providers
            .get(provider_id)
            .ok_or_else(|| ProvisionError::UnknownProvider(provider_id.to_owned()))?;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(ProvisionError::NoSubject)?;
        let credential = OidcCredential {
            provider: provider.id.to_string(),
            subject: subject.to_owned(),
        };
        let tag = subject_tag(provider_id, subject);
        let outcome = self
            .provision_credential(provider, &credential, claims)
            .await;
        match &outcome {
            Ok(o) => tracing::info!(
                message = "Provisioned a login.",
                provider = provider_id,
                subject = %tag,
                action = ?o.action,
                identity_id = o.identity_id.as_deref().unwrap_or(""),
                changed = ?o.changed,
                reason = o.reason.as_deref().unwrap_or(""),
            ),
            Err(error) => {
                tracing::warn!(message = "Could not provision a login.", provider = provider_id, subject = %tag, %error)
            }
        }
        outcome
    }

    async fn provision_credential(
        &self,
        provider: &Provider,
        credential: &OidcCredential,
        claims: &Value,
    ) -> Result<Outcome, ProvisionError> {
        let mut existing = self
            .kratos
            .find_by_credential_identifier(&credential.identifier())
            .await?;
        let mut linked = false;
        for _ in 0..MAX_ROUNDS {
            let current = existing.as_ref().map(|i| {
                serde_json::json!({
                    "traits": i.traits,
                    "metadata_public": i.metadata_public,
                    "metadata_admin": i.metadata_admin,
                })
            });
            let mapped = match self.map(provider, claims.into(), current.as_ref()).await? {
                Ok(mapped) => mapped,
                Err(denial) => return Ok(Outcome::denied(&denial)),
            };
            let provenance = Provenance {
                provider: credential.provider.clone(),
                subject: credential.subject.clone(),
                synced_at: now_rfc3339(),
                mapper_sha256: provider.mapper.sha256.clone(),
            };
            match decision::decide(provider, &mapped, existing.as_ref(), &provenance) {
                Decision::Denied(denial) => return Ok(Outcome::denied(&denial)),
                Decision::Unchanged { id } => {
                    let action = if linked {
                        Action::Updated
                    } else {
                        Action::Unchanged
                    };
                    let changed = if linked {
                        vec!["credentials.oidc".to_owned()]
                    } else {
                        vec![]
                    };
                    return Ok(Outcome {
                        action,
                        identity_id: Some(id),
                        changed,
                        reason: None,
                    });
                }
                Decision::Update {
                    id,
                    ops,
                    mut changed,
                } => match self.kratos.patch(&id, &ops).await {
                    Ok(identity) => {
                        if linked {
                            changed.insert(0, "credentials.oidc".to_owned());
                        }
                        return Ok(Outcome {
                            action: Action::Updated,
                            identity_id: Some(identity.id),
                            changed,
                            reason: None,
                        });
                    }
                    // Deleted meanwhile: decide again from what Kratos holds now.
                    Err(KratosError::NotFound { .. }) => {
                        existing = self
                            .kratos
                            .find_by_credential_identifier(&credential.identifier())
                            .await?;
                    }
                    Err(e) => return Err(e.into()),
                },
                Decision::Create(new) => match self.kratos.create(&new).await {
                    Ok(identity) => {
                        return Ok(Outcome {
                            action: Action::Created,
                            identity_id: Some(identity.id),
                            changed: vec![],
                            reason: None,
                        });
                    }
                    Err(KratosError::Conflict { .. }) => {
                        // Either this subject was just created by a concurrent login (or by our
                        // own attempt whose answer was lost), or the e-mail belongs to another
                        // identity. The credential lookup tells which.
                        existing = self
                            .kratos
                            .find_by_credential_identifier(&credential.identifier())
                            .await?;
                        if existing.is_none() {
                            match self.link_candidate(provider, &mapped, credential).await? {
                                Ok(identity) => {
                                    linked = true;
                                    existing = Some(identity);
                                }
                                Err(denial) => return Ok(Outcome::denied(&denial)),
                            }
                        }
                    }
                    Err(e) => return Err(e.into()),
                },
            }
        }
        Err(ProvisionError::Kratos(KratosError::Unavailable {
            detail: "the identity kept changing concurrently; try again".into(),
        }))
    }

    /// Mapper, output contract and policy. `Ok(Err(_))` is a denial; `Err(_)` a failure to run.
    /// `current` is the identity as the mapper sees it (`{traits, metadata_public,
    /// metadata_admin}`; missing parts are `{}`), `None` for a new one.
    pub async fn map(
        &self,
        provider: &Provider,
        claims: Claims<'_>,
        current: Option<&Value>,
    ) -> Result<Result<MappedIdentity, Denial>, ProvisionError> {
        let output = match self
            .engine
            .evaluate(provider.id.as_str(), claims, &identity_ext_var(current))
            .await
        {
            Ok(output) => output,
            Err(MapperError::UnknownProvider(p)) => return Err(ProvisionError::UnknownProvider(p)),
            // The evaluator itself failed, not the mapper's judgement: a 503 the caller may
            // retry, never a denial it would take for a refusal.
            Err(e @ (MapperError::EngineStopped | MapperError::WorkerCrashed(_))) => {
                return Err(ProvisionError::Engine(e));
            }
            Err(MapperError::Denied { message, .. }) => return Ok(Err(Denial::Mapper(message))),
            Err(e) => {
                tracing::error!(message = "A mapper failed; the login is refused.", provider = provider.id.as_str(), error = %e);
                return Ok(Err(Denial::Mapper(format!(
                    "the mapper of provider {} failed: {e}",
                    provider.id
                ))));
            }
        };
        let mapped = match MappedIdentity::from_output(&output) {
            Ok(mapped) => mapped,
            Err(e) => {
                return Ok(Err(Denial::Mapper(format!(
                    "the mapper of provider {} {e}",
                    provider.id
                ))));
            }
        };
        Ok(policy::admit(provider, &mapped, &self.schemas).map(|_| mapped))
    }

    /// The identity that holds the mapped e-mail, linked to this credential if the rules allow.
    async fn link_candidate(
        &self,
        provider: &Provider,
        mapped: &MappedIdentity,
        credential: &OidcCredential,
    ) -> Result<Result<Identity, Denial>, ProvisionError> {
        let email = mapped
            .traits
            .get(EMAIL_TRAIT)
            .and_then(Value::as_str)
            .unwrap_or_default();
        // Kratos keeps password/code identifiers lower-cased (`NormalizeIdentifier`).
        let Some(candidate) = self
            .kratos
            .find_by_credential_identifier(&email.trim().to_lowercase())
            .await?
        else {
            return Ok(Err(Denial::Linking(format!(
                "Kratos refused to create the identity: its e-mail {email} or another unique value is already taken by an identity kratos-jit cannot look up"
            ))));
        };
        if let Err(denial) = decision::may_link(provider, mapped, &candidate) {
            return Ok(Err(denial));
        }
        Ok(Ok(self.kratos.link_oidc(&candidate, credential).await?))
    }
}
