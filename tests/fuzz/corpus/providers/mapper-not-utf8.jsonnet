// Claims mapper for provider "okta-À¯acme": Acme Corp's Okta, SAML, bridged to OIDC by Ory Polis.
//
// What arrives (std.extVar('claims')):
//   claims.email                      the address Polis put in the id_token (Kratos' standard claim)
//   claims.raw_claims.email, .firstName, .lastName, .groups
//                                     Polis' profile, built from the SAML attributes it recognises
//   claims.raw_claims.raw             every SAML attribute by its own name, including
//     "https://your-app.com/tenant_id"  the tenant Acme's Okta app asserts for the user
//     "groups"                          the user's Okta groups (a list, or one string)
//
// Output: Kratos' mapper contract, {identity: {traits, verified_addresses}}. Traits are overwritten
// at every sign-in, so everything here must come from the IdP.

local claims = std.extVar('claims');
// The current identity ({traits: {}, ...} at first sign-in). This mapper does not need it: every
// trait is IdP-owned. Declared only so the contract is visible; Jsonnet never evaluates it.
local identity = std.extVar('identity');

local provider = 'okta-acme';

// A SAML attribute with a single value may arrive as a plain string instead of a list.
local asArray(x) = if x == null then [] else if std.isArray(x) then x else [x];
// A missing (or oddly typed) claim object reads as empty, so lookups below never crash.
local asObject(x) = if std.isObject(x) then x else {};
// The first of up to three candidates that is a non-empty string, or null. Candidates are only
// evaluated until one fits (plain conditionals: cheaper than filtering a list of them).
local isText(v) = std.isString(v) && v != '';
local firstString(a, b=null, c=null) =
  if isText(a) then a else if isText(b) then b else if isText(c) then c else null;

local rawClaims = asObject(std.get(claims, 'raw_claims'));
local saml = asObject(std.get(rawClaims, 'raw'));

// E-mail: required. Kept exactly as sent (no lower-casing: the address is the user's, and
// the tenant's domain check is done case-insensitively by the sidecar's policy).
local email = firstString(std.get(claims, 'email'), std.get(rawClaims, 'email'), std.get(saml, 'email'));

// Tenant: Acme's Okta app sends it as a custom SAML attribute. It is passed through as sent,
// even when it names another tenant: the sidecar's policy refuses a tenant this provider is not
// bound to, and that refusal must stay visible (do not "fix" the value here).
local tenantClaim = 'https://your-app.com/tenant_id';
local tenant = firstString(std.get(saml, tenantClaim), std.get(rawClaims, tenantClaim));

// Groups from Polis' profile, falling back to the raw SAML attribute.
local groups = asArray(
  if std.objectHas(rawClaims, 'groups') then rawClaims.groups else std.get(saml, 'groups')
);

// Role: the highest role any Acme group grants; nothing matching means guest.
// Group names are compared exactly, as Okta sends them.
local role =
  if std.member(groups, 'Acme-Admins') then 'admin'
  else if std.member(groups, 'Acme-Users') then 'user'
  else 'guest';

local firstName = firstString(std.get(rawClaims, 'firstName'), std.get(saml, 'firstName'));
local lastName = firstString(std.get(rawClaims, 'lastName'), std.get(saml, 'lastName'));

if email == null then
  error provider + ': the IdP sent no e-mail address (SAML attribute "email"); ask Acme to map user.email to the "email" attribute of the Okta SAML app'
else if tenant == null then
  error provider + ': the IdP sent no tenant (SAML attribute "' + tenantClaim + '"); ask Acme to add it to the attribute statements of the Okta SAML app'
else
  {
    identity: {
      traits: {
        email: email,
        tenant_id: tenant,
        [if firstName != null then 'first_name']: firstName,
        [if lastName != null then 'last_name']: lastName,
        role: role,
      },
      // Acme's Okta is authoritative for addresses in its own domain, and the sidecar's policy
      // refuses any address outside the tenant's verified domains, so the address is marked
      // verified: Acme users are not asked to verify an e-mail their employer already manages.
      // The groups are deliberately not copied into the identity (a user may be in hundreds).
      verified_addresses: [{ value: email, via: 'email' }],
    },
  }
