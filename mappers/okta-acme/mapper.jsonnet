// Claims mapper for provider "okta-acme": Acme Corp's Okta, SAML, bridged to OIDC by Ory Polis
// (or SATOSA).
//
// What arrives (std.extVar('claims')): Kratos's standard claims at the top level and every claim
// of the bridge's id_token under claims.raw_claims. The SAML attributes Acme's Okta app sends are
//   "email"                           the user's address
//   "firstName", "lastName"
//   "https://your-app.com/tenant_id"  the tenant Acme's Okta app asserts for the user
//   "groups"                          the user's Okta groups
// and where they are depends on the bridge:
//   Ory Polis   raw_claims.raw, each attribute by its SAML name (one value: a plain string, several:
//               a list). Polis's own profile beside it (raw_claims.email, the top-level email) is
//               not read for the address: Polis fills it from an emailAddress-format NameID even
//               when the IdP sent no email attribute.
//   SATOSA      raw_claims itself, every attribute a list (["tenant-acme"]), the names as OIDC
//               claims (given_name, family_name, email) besides the SAML names.
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
local isText(v) = std.isString(v) && v != '';
// A single-valued attribute: a non-empty string, or a list holding only one (SATOSA); anything
// else (absent, empty, several values) is null.
local single(x) =
  if isText(x) then x
  else if std.isArray(x) && std.length(x) == 1 && isText(x[0]) then x[0]
  else null;
// The first of up to three candidates that is a single value, or null. Candidates are only
// evaluated until one fits (plain conditionals: cheaper than filtering a list of them).
local first(a, b=null, c=null) =
  local x = single(a);
  if x != null then x
  else local y = single(b);
  if y != null then y else single(c);

local rawClaims = asObject(std.get(claims, 'raw_claims'));
// The SAML attributes by name: Polis nests them under `raw`, SATOSA puts them at the top.
local polis = std.isObject(std.get(rawClaims, 'raw'));
local saml = if polis then rawClaims.raw else rawClaims;

// E-mail: required, from the email attribute only. Kept exactly as sent (no lower-casing: the
// address is the user's, and the tenant's domain check is done case-insensitively by the
// sidecar's policy).
local email = single(std.get(saml, 'email'));

// Tenant: Acme's Okta app sends it as a custom SAML attribute. It is passed through as sent,
// even when it names another tenant: the sidecar's policy refuses a tenant this provider is not
// bound to, and that refusal must stay visible (do not "fix" the value here).
local tenantClaim = 'https://your-app.com/tenant_id';
local tenant = single(std.get(saml, tenantClaim));

// Groups from the SAML attribute, falling back to Polis' profile.
local groups = asArray(
  if std.objectHas(saml, 'groups') then saml.groups else std.get(rawClaims, 'groups')
);

// Role: the highest role any Acme group grants; nothing matching means guest.
// Group names are compared exactly, as Okta sends them.
local role =
  if std.member(groups, 'Acme-Admins') then 'admin'
  else if std.member(groups, 'Acme-Users') then 'user'
  else 'guest';

local firstName = first(std.get(saml, 'firstName'), std.get(rawClaims, 'given_name'), std.get(rawClaims, 'firstName'));
local lastName = first(std.get(saml, 'lastName'), std.get(rawClaims, 'family_name'), std.get(rawClaims, 'lastName'));

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
