// Claims mapper for provider "onelogin-initech": Initech's OneLogin, SAML, bridged to OIDC by
// Ory Polis (or SATOSA).
//
// What arrives (std.extVar('claims')): Kratos's standard claims at the top level and every claim
// of the bridge's id_token under claims.raw_claims. The SAML attributes Initech's OneLogin app
// sends are
//   "User.email"       the user's address
//   "User.FirstName", "User.LastName"
//   "memberOf"         the user's OneLogin roles (a list, or one string for a single role)
// and where they are depends on the bridge:
//   Ory Polis   raw_claims.raw, each attribute by its SAML name. Polis recognises none of these
//               names for its own profile; but it copies an emailAddress-format NameID into
//               raw_claims.email and the top-level email (and into raw's emailaddress claim),
//               also when OneLogin sent no User.email. That copy is never used as the address:
//               the NameID is an identifier, not an address the IdP vouches for.
//   SATOSA      raw_claims itself, every attribute a list; SATOSA translates User.email to
//               `email`, the names to given_name / family_name, and keeps memberOf. SATOSA never
//               copies the NameID, so its `email` is the IdP's attribute.
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

// E-mail: required, from the User.email attribute (SATOSA: its translation `email`); never Polis'
// profile or NameID. Kept exactly as sent; the tenant's domain check is case-insensitive in the
// sidecar's policy.
local email = first(std.get(saml, 'User.email'), if polis then null else std.get(rawClaims, 'email'));

local firstName = first(std.get(saml, 'User.FirstName'), std.get(rawClaims, 'given_name'), std.get(rawClaims, 'firstName'));
local lastName = first(std.get(saml, 'User.LastName'), std.get(rawClaims, 'family_name'), std.get(rawClaims, 'lastName'));

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
