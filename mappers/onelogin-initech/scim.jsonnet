// SCIM mapper for provider "onelogin-initech": Initech's OneLogin pushes its users with SCIM 2.0.
//
// What arrives (std.extVar('scim')): the SCIM User as OneLogin sent it (userName, name, emails,
// active), with `groups` replaced by the user's current memberships, each
//   {value: <group id>, display: <displayName>, displayName: <displayName>, externalId: ...}.
// OneLogin provisions its roles as SCIM groups, so Initech-Managers and Initech-Staff arrive as
// groups of those names. `active` is not read here: kratos-jit deactivates the identity itself.
//
// Output: the same traits as mapper.jsonnet. [scim] subject = "userName": OneLogin's userName is
// the e-mail address its SAML app sends as the NameID.

local scim = std.extVar('scim');
local identity = std.extVar('identity');

local provider = 'onelogin-initech';
local tenant = 'tenant-initech';

local asArray(x) = if std.isArray(x) then x else [];
local asObject(x) = if std.isObject(x) then x else {};
local isText(v) = std.isString(v) && v != '';
local text(x) = if isText(x) then x else null;
local isPrimary(e) = std.get(e, 'primary') == true || std.asciiLower(std.toString(std.get(e, 'primary', ''))) == 'true';

local emails = [e for e in asArray(std.get(scim, 'emails')) if std.isObject(e) && isText(std.get(e, 'value'))];
local pick(list) = if std.length(list) > 0 then list[0].value else null;
local email =
  local primary = pick([e for e in emails if isPrimary(e)]);
  local work = pick([e for e in emails if std.get(e, 'type') == 'work']);
  if primary != null then primary else if work != null then work else pick(emails);

local name = asObject(std.get(scim, 'name'));
local firstName = text(std.get(name, 'givenName'));
local lastName = text(std.get(name, 'familyName'));

// Role: from the OneLogin roles pushed as groups, by displayName.
local groups = [g.displayName for g in asArray(std.get(scim, 'groups')) if isText(std.get(g, 'displayName'))];
local role =
  if std.member(groups, 'Initech-Managers') then 'admin'
  else if std.member(groups, 'Initech-Staff') then 'user'
  else 'guest';

if email == null then
  error provider + ': the SCIM user has no e-mail address (emails); ask Initech to map User.email in the OneLogin app\'s provisioning'
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
