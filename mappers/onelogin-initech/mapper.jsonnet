// Claims mapper for provider "onelogin-initech": Initech's OneLogin, SAML, bridged to OIDC by
// Ory Polis.
//
// What arrives (std.extVar('claims')):
//   OneLogin's attribute names ("User.email", "User.FirstName", ...) are not among the few Polis
//   recognises, so claims.email and Polis' profile are usually empty and the data is only in
//   claims.raw_claims.raw, by SAML attribute name:
//     "User.email"       the user's address
//     "User.FirstName", "User.LastName"
//     "memberOf"         the user's OneLogin roles (a list, or one string for a single role)
//   claims.sub is OneLogin's NameID: not used as an address, even when it looks like one.
//
// There is no tenant claim: this connection is Initech's, so the tenant is a constant.
//
// Output: Kratos' mapper contract, {identity: {traits, verified_addresses}}.

local claims = std.extVar('claims');
// The current identity ({traits: {}, ...} at first sign-in). This mapper does not need it: every
// trait is IdP-owned. Declared only so the contract is visible; Jsonnet never evaluates it.
local identity = std.extVar('identity');

local provider = 'onelogin-initech';
local tenant = 'tenant-initech';

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

// E-mail: required. "User.email" first; Polis' own email field is a fallback in case Initech
// ever renames the attribute to "email". Kept exactly as sent; the tenant's domain check is
// case-insensitive in the sidecar's policy.
local email = firstString(std.get(saml, 'User.email'), std.get(claims, 'email'), std.get(rawClaims, 'email'));

local firstName = firstString(std.get(saml, 'User.FirstName'), std.get(rawClaims, 'firstName'));
local lastName = firstString(std.get(saml, 'User.LastName'), std.get(rawClaims, 'lastName'));

// Role: the highest role any Initech OneLogin role grants; nothing matching means guest.
local memberOf = asArray(std.get(saml, 'memberOf'));
local role =
  if std.member(memberOf, 'Initech-Managers') then 'admin'
  else if std.member(memberOf, 'Initech-Staff') then 'user'
  else 'guest';

if email == null then
  error provider + ': the IdP sent no e-mail address (User.email); ask the customer to add the User.email attribute to the SAML app'
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
      // Initech's OneLogin is authoritative for addresses in its own domain, and the sidecar's
      // policy refuses any address outside the tenant's verified domains: mark it verified.
      // The OneLogin roles themselves are not stored in the identity.
      verified_addresses: [{ value: email, via: 'email' }],
    },
  }
