//! A Kratos port that holds one identity and writes nothing: `kratos-jit check` and
//! `kratos-jit map` run the login use case against it, so a fixture takes exactly the path of a
//! live login, the decision included, without a Kratos.

use std::sync::Mutex;

use super::{
    Identity, IdentityPage, KratosAdmin, KratosError, NewIdentity, OidcCredential, PatchOp,
};
use crate::domain::IdentityId;

/// The identity a fixture says Kratos holds (none for a first login).
#[derive(Debug, Default)]
pub struct FixtureKratos {
    current: Mutex<Option<Identity>>,
}

impl FixtureKratos {
    /// Kratos holds `identity` (found by its credential identifiers), or nothing.
    pub fn hold(&self, identity: Option<Identity>) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = identity;
    }

    fn current(&self) -> Option<Identity> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn no_writes() -> KratosError {
    KratosError::Rejected {
        status: 405,
        message: "a dry run writes nothing".into(),
    }
}

impl KratosAdmin for FixtureKratos {
    async fn find_by_credential_identifier(
        &self,
        identifier: &str,
    ) -> Result<Option<Identity>, KratosError> {
        Ok(self.current().filter(|identity| {
            identity
                .credential_identifiers
                .values()
                .flatten()
                .any(|held| held == identifier)
        }))
    }

    async fn get(&self, id: &IdentityId) -> Result<Identity, KratosError> {
        self.current()
            .filter(|identity| identity.id == *id)
            .ok_or_else(|| KratosError::NotFound {
                detail: "no such identity in the fixture".into(),
            })
    }

    async fn create(&self, _: &NewIdentity) -> Result<Identity, KratosError> {
        Err(no_writes())
    }

    async fn patch(&self, _: &IdentityId, _: &[PatchOp]) -> Result<Identity, KratosError> {
        Err(no_writes())
    }

    async fn link_oidc(&self, _: &Identity, _: &OidcCredential) -> Result<Identity, KratosError> {
        Err(no_writes())
    }

    async fn deactivate(&self, _: &IdentityId) -> Result<Identity, KratosError> {
        Err(no_writes())
    }

    async fn reactivate(&self, _: &IdentityId) -> Result<Identity, KratosError> {
        Err(no_writes())
    }

    async fn delete(&self, _: &IdentityId) -> Result<(), KratosError> {
        Err(no_writes())
    }

    async fn revoke_sessions(&self, _: &IdentityId) -> Result<(), KratosError> {
        Err(no_writes())
    }

    async fn list(&self, _: u32, _: Option<&str>) -> Result<IdentityPage, KratosError> {
        Ok(IdentityPage {
            identities: self.current().into_iter().collect(),
            next_page_token: None,
        })
    }
}
