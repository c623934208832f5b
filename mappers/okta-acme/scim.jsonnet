// SCIM mapper for provider "okta-acme": Acme Corp's Okta pushes its users with SCIM 2.0.
//
// What arrives (std.extVar('scim')): the SCIM User as Okta sent it (userName, name.givenName,
// name.familyName, emails, active, externalId = the Okta user id), with `groups` replaced by the
// user's current memberships of groups Okta pushed, each
//   {value: <group id>, display: <displayName>, displayName: <displayName>, externalId: ...}.
// `active` is not read here: kratos-jit itself deactivates the identity and ends its sessions.
//
// Output: the same traits as mapper.jsonnet, so a user looks the same whether SCIM or the first
// sign-in came first. [scim] subject = "userName": Acme's Okta SAML app sends the Okta username
// as the NameID, the `sub` of a sign-in through Polis.

local scim = std.extVar('scim');
local identity = std.extVar('identity');

local provider = 'okta-acme';
local tenant = 'tenant-acme';

local asArray(x) = if std.isArray(x) then x else [];
local asObject(x) = if std.isObject(x) then x else {};
local isText(v) = std.isString(v) && v != '';
local text(x) = if isText(x) then x else null;
// Okta sends `primary: true`; Entra-style strings ("True") are accepted too.
local isPrimary(e) = std.get(e, 'primary') == true || std.asciiLower(std.toString(std.get(e, 'primary', ''))) == 'true';

// E-mail: the primary one, else the work one, else the first.
local emails = [e for e in asArray(std.get(scim, 'emails')) if std.isObject(e) && isText(std.get(e, 'value'))];
local pick(list) = if std.length(list) > 0 then list[0].value else null;
local email =
  local primary = pick([e for e in emails if isPrimary(e)]);
  local work = pick([e for e in emails if std.get(e, 'type') == 'work']);
  if primary != null then primary else if work != null then work else pick(emails);

local name = asObject(std.get(scim, 'name'));
local firstName = text(std.get(name, 'givenName'));
local lastName = text(std.get(name, 'familyName'));

// Role: from group membership, by the group's displayName (as the claims mapper reads the SAML
// groups attribute). Removing a user from Acme-Admins in Okta re-maps them at once.
local groups = [g.displayName for g in asArray(std.get(scim, 'groups')) if isText(std.get(g, 'displayName'))];
local role =
  if std.member(groups, 'Acme-Admins') then 'admin'
  else if std.member(groups, 'Acme-Users') then 'user'
  else 'guest';

if email == null then
  error provider + ': the SCIM user has no e-mail address (emails); ask Acme to map the Okta primary e-mail in the app\'s provisioning attributes'
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
      verified_addresses: [{ value: email, via: 'email' }],
    },
  }
