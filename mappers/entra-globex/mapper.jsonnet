// Claims mapper for provider "entra-globex": Globex Corporation's Microsoft Entra ID, SAML,
// bridged to OIDC by Ory Polis (or SATOSA).
//
// What arrives (std.extVar('claims')): Kratos's standard claims at the top level and every claim
// of the bridge's id_token under claims.raw_claims. Entra names its SAML attributes by claim URI:
//   .../identity/claims/tenantid     the Entra directory (tenant) the user signed in from
//   .../claims/emailaddress          user.mail; givenname, surname
//   .../identity/claims/groups       group object ids (a list, or one string for one group)
//   .../identity/claims/role         app roles assigned in the Globex enterprise app
//   .../claims/groups.link           sent INSTEAD of groups when the user is in more than
//                                    150 groups (Entra "group overage")
// and where they are depends on the bridge:
//   Ory Polis   raw_claims.raw, by claim URI, beside Polis' profile (raw_claims.email,
//               firstName, lastName, roles). With an emailAddress-format NameID, Polis copies the
//               NameID into the emailaddress claim and the profile's email: see the e-mail below.
//   SATOSA      raw_claims itself, by claim URI, every attribute a list; given_name / family_name.
//
// There is no tenant claim: this connection is Globex's, so the tenant is a constant.
//
// Output: Kratos' mapper contract, {identity: {traits, metadata_admin, verified_addresses}}.

local claims = std.extVar('claims');
// The current identity ({traits: {}, ...} at first sign-in). Read only on group overage (below),
// so the mapper also runs where Kratos provides no 'identity' ext var, except in that case.
local identity = std.extVar('identity');

local provider = 'entra-globex';
local tenant = 'tenant-globex';

// Globex's Entra directory. Another directory behind the same connection (a guest tenant, a
// misconfigured multi-tenant app) must not sign in as Globex.
local globexDirectory = '5f1c0b9e-3d2a-4c1e-9a8b-7c6d5e4f3a21';

// Entra group object ids and app roles, as agreed with Globex.
local adminGroup = '0a3c9a57-1f0e-4b7e-8d55-6a2f0d9c1b11';
local userGroup = '7e4b2d18-9c3a-4f6e-b1d0-3e8f5a7c2d22';
local adminAppRole = 'Globex.Admin';

// Entra's SAML claim names.
local tenantIdClaim = 'http://schemas.microsoft.com/identity/claims/tenantid';
local emailClaim = 'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress';
local nameIdClaim = 'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier';
local givenNameClaim = 'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname';
local surnameClaim = 'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname';
local groupsClaim = 'http://schemas.microsoft.com/ws/2008/06/identity/claims/groups';
local roleClaim = 'http://schemas.microsoft.com/ws/2008/06/identity/claims/role';
local groupsLinkClaim = 'http://schemas.microsoft.com/claims/groups.link';

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

local directory = single(std.get(saml, tenantIdClaim));

// E-mail: required, from Entra's mail attribute (emailaddress) only. The UPN (the "name" claim)
// is deliberately not used: it is often shaped like an address but need not be a mailbox.
// Globex's enterprise app sends a persistent NameID; an emailaddress equal to the NameID is what
// Polis writes there when the NameID is in emailAddress format (typically the UPN) and the user
// has no mail — it cannot be told from a real mail attribute, so it counts as no address and the
// sign-in is refused (a deliberate choice: never an unvouched address marked verified). Kept
// exactly as sent; the tenant's domain check is case-insensitive in the sidecar's policy.
local sentEmail = single(std.get(saml, emailClaim));
local nameId = single(std.get(saml, nameIdClaim));
local email = if sentEmail != null && sentEmail == nameId then null else sentEmail;
local nameIdOnly = sentEmail != null && email == null;

local firstName = first(std.get(saml, givenNameClaim), std.get(rawClaims, 'given_name'), std.get(rawClaims, 'firstName'));
local lastName = first(std.get(saml, surnameClaim), std.get(rawClaims, 'family_name'), std.get(rawClaims, 'lastName'));

local groups = asArray(std.get(saml, groupsClaim));
local appRoles = asArray(std.get(saml, roleClaim)) + (if polis then asArray(std.get(rawClaims, 'roles')) else []);

// Group overage: Entra left the groups out and sent a Graph link instead. The groups are
// unknown on this sign-in, so they can neither grant nor revoke a role. Deliberate outcome:
//   - an existing identity keeps the role it has (a revocation waits for a sign-in with groups);
//   - a new identity starts as guest;
//   - never a grant, and metadata_admin.groups_overage records it for support.
// The lasting fix is on Globex's side: emit only "Groups assigned to the application" in the
// enterprise app, so the claim stays under the limit. App roles are not subject to overage.
local groupsOverage = std.objectHas(saml, groupsLinkClaim) && !std.objectHas(saml, groupsClaim);

local currentRole =
  local r = std.get(asObject(std.get(asObject(identity), 'traits')), 'role');
  if std.member(['admin', 'user', 'guest'], r) then r else 'guest';

local role =
  if std.member(appRoles, adminAppRole) || std.member(groups, adminGroup) then 'admin'
  else if groupsOverage then currentRole
  else if std.member(groups, userGroup) then 'user'
  else 'guest';

if directory == null then
  error provider + ': the IdP sent no Entra directory id (claim ' + tenantIdClaim + '), so the sign-in cannot be tied to Globex\'s directory ' + globexDirectory + '; ask Globex to keep the default tenantid claim in the enterprise app'
else if directory != globexDirectory then
  error provider + ': sign-in from Entra directory ' + directory + ' refused; this connection only accepts Globex\'s directory ' + globexDirectory
else if nameIdOnly then
  error provider + ': the IdP sent no e-mail address besides the NameID (claim ' + emailClaim + ' only repeats it), and the NameID is not used as an address; ask Globex to keep a persistent NameID and to give the user a mail address'
else if email == null then
  error provider + ': the IdP sent no e-mail address (claim ' + emailClaim + '); ask Globex to map user.mail to the emailaddress claim of the enterprise app, and to give the user a mail address'
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
      // Always written, so a flag from an earlier overage sign-in is cleared once the groups
      // come back. (Kratos replaces metadata_admin with what the mapper outputs.)
      // The group ids themselves are not stored.
      metadata_admin: { groups_overage: groupsOverage },
      // Globex's Entra is authoritative for addresses in its own domain, and the sidecar's policy
      // refuses any address outside the tenant's verified domains: mark it verified.
      verified_addresses: [{ value: email, via: 'email' }],
    },
  }
