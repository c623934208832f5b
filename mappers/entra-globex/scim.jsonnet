// SCIM mapper for provider "entra-globex": Globex Corporation's Microsoft Entra ID pushes its
// users with SCIM 2.0 (Entra's provisioning service).
//
// What arrives (std.extVar('scim')): the SCIM User as Entra sent it — userName (the UPN),
// externalId, name.givenName/familyName, emails[type eq "work"], roles (app roles, when the
// provisioning maps them), the enterprise extension under its URN key
// (urn:ietf:params:scim:schemas:extension:enterprise:2.0:User: employeeNumber, department, …),
// `active` as a boolean or as the string "True"/"False" — with `groups` replaced by the user's
// current memberships, each {value, display, displayName, externalId}. Globex's provisioning maps
// a group's objectId to its SCIM externalId, so the groups are recognised by the same object ids
// as in mapper.jsonnet. `active` is not read here: kratos-jit deactivates the identity itself.
//
// Output: the same traits as mapper.jsonnet. [scim] subject = "externalId": Globex's provisioning
// maps externalId to the same source attribute as the enterprise app's persistent NameID.

local scim = std.extVar('scim');
local identity = std.extVar('identity');

local provider = 'entra-globex';
local tenant = 'tenant-globex';

local adminGroup = '0a3c9a57-1f0e-4b7e-8d55-6a2f0d9c1b11';
local userGroup = '7e4b2d18-9c3a-4f6e-b1d0-3e8f5a7c2d22';
local adminAppRole = 'Globex.Admin';
local enterprise = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';

local asArray(x) = if std.isArray(x) then x else [];
local asObject(x) = if std.isObject(x) then x else {};
local isText(v) = std.isString(v) && v != '';
local text(x) = if isText(x) then x else null;
// Entra sends `"primary": "True"` (a string) as often as `true`.
local isPrimary(e) = std.get(e, 'primary') == true || std.asciiLower(std.toString(std.get(e, 'primary', ''))) == 'true';

// E-mail: Entra's mail, sent as emails[type eq "work"]; else the primary one, else the first.
local emails = [e for e in asArray(std.get(scim, 'emails')) if std.isObject(e) && isText(std.get(e, 'value'))];
local pick(list) = if std.length(list) > 0 then list[0].value else null;
local email =
  local work = pick([e for e in emails if std.get(e, 'type') == 'work']);
  local primary = pick([e for e in emails if isPrimary(e)]);
  if work != null then work else if primary != null then primary else pick(emails);

local name = asObject(std.get(scim, 'name'));
local firstName = text(std.get(name, 'givenName'));
local lastName = text(std.get(name, 'familyName'));

local groupIds = [g.externalId for g in asArray(std.get(scim, 'groups')) if isText(std.get(g, 'externalId'))];
local appRoles = [r.value for r in asArray(std.get(scim, 'roles')) if std.isObject(r) && isText(std.get(r, 'value'))];
local role =
  if std.member(appRoles, adminAppRole) || std.member(groupIds, adminGroup) then 'admin'
  else if std.member(groupIds, userGroup) then 'user'
  else 'guest';

local employeeNumber = text(std.get(asObject(std.get(scim, enterprise)), 'employeeNumber'));

if email == null then
  error provider + ': the SCIM user has no e-mail address (emails[type eq "work"]); ask Globex to map user.mail in the provisioning attribute mappings'
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
      // SCIM always carries the memberships, so no group overage: clear a flag an earlier
      // sign-in may have left. The employee number is kept for Globex's support desk.
      metadata_admin: {
        groups_overage: false,
        [if employeeNumber != null then 'employee_number']: employeeNumber,
      },
      verified_addresses: [{ value: email, via: 'email' }],
    },
  }
