// Claims mapper for provider "okta-acme": Acme Corp's Okta, SAML, bridged to OIDC by Ory Polis.
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
local email = firstString(std.get(claims, 'email'), std.get(raw