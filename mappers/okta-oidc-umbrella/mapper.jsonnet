// Claims mapper for provider "okta-oidc-umbrella": Umbrella Corporation's Okta, connected
// directly with OpenID Connect (no SAML bridge).
//
// What arrives (std.extVar('claims')): Kratos puts the standard OIDC claims at the top level
//   claims.email, claims.email_verified, claims.given_name, claims.family_name
// and every id_token claim under claims.raw_claims, among them two that Umbrella's Okta
// authorization server adds:
//   raw_claims.groups                           the user's Okta groups (a list, or one string)
//   raw_claims["https://your-app.com/tenant_id"] the tenant Umbrella's Okta asserts for the user
//
// Output: Kratos' mapper contract, {identity: {traits, verified_addresses}}.

local claims = std.extVar('claims');
// The current identity ({traits: {}, ...} at first sign-in). This mapper does not need it: every
// trait is IdP-owned. Declared only so the contract is visible; Jsonnet never evaluates it.
local identity = std.extVar('identity');

local provider = 'okta-oidc-umbrella';

// A claim with a single value may arrive as a plain string instead of a list.
local asArray(x) = if x == null then [] else if std.isArray(x) then x else [x];
// A missing (or oddly typed) claim object reads as empty, so lookups below never crash.
local asObject(x) = if std.isObject(x) then x else {};
// The first of up to three candidates that is a non-empty string, or null. Candidates are only
// evaluated until one fits (plain conditionals: cheaper than filtering a list of them).
local isText(v) = std.isString(v) && v != '';
local firstString(a, b=null, c=null) =
  if isText(a) then a else if isText(b) then b else if isText(c) then c else null;

local rawClaims = asObject(std.get(claims, 'raw_claims'));

// E-mail: required. Kept exactly as sent; the tenant's domain check is case-insensitive in the
// sidecar's policy.
local email = firstString(std.get(claims, 'email'), std.get(rawClaims, 'email'));

// Unlike a SAML connection, an OIDC IdP says whether it checked the address. Only an explicit
// `email_verified: true` counts; a missing claim means "not verified".
local emailVerified =
  std.get(claims, 'email_verified', std.get(rawClaims, 'email_verified', false)) == true;

// Tenant: passed through as sent, even when it names another tenant: the sidecar's policy
// refuses a tenant this provider is not bound to, and that refusal must stay visible.
local tenantClaim = 'https://your-app.com/tenant_id';
local tenant = firstString(std.get(rawClaims, tenantClaim));

local firstName = firstString(std.get(claims, 'given_name'), std.get(rawClaims, 'given_name'));
local lastName = firstString(std.get(claims, 'family_name'), std.get(rawClaims, 'family_name'));

// Role: the highest role any Umbrella group grants; nothing matching means guest.
local groups = asArray(std.get(rawClaims, 'groups'));
local role =
  if std.member(groups, 'Umbrella-Admins') then 'admin'
  else if std.member(groups, 'Umbrella-Users') then 'user'
  else 'guest';

if email == null then
  error provider + ': the IdP sent no e-mail address (claim "email"); ask Umbrella to grant the "email" scope to the Okta OIDC app'
else if tenant == null then
  error provider + ': the IdP sent no tenant (claim "' + tenantClaim + '"); ask Umbrella to add this claim to the id_token in their Okta authorization server'
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
      // Marked verified only when Okta says so. An unverified address still gets an identity
      // (found again by its OIDC subject), but it is never verified here, so it can never be
      // used to link this sign-in to another identity by e-mail.
      // The groups themselves are not stored in the identity.
      [if emailVerified then 'verified_addresses']: [{ value: email, via: 'email' }],
    },
  }
