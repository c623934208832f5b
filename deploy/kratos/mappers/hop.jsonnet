// The claims mapper of every provider in hop mode (deploy/kratos/kratos.yml): the identity kratos-jit
// wrote at the hop's callback, carried in its id_token's kratos_jit_identity claim (docs/hop.md).
// Kratos finds that identity and runs a login, so it does not run this mapper; should it ever
// register instead, it registers the same identity. It never fails: without the claim it gives
// empty traits, which the identity schema refuses.
local raw = std.get(std.extVar('claims'), 'raw_claims', {});
local carried = if std.isObject(raw) then std.get(raw, 'kratos_jit_identity') else null;
{
  identity: if std.isObject(carried) && std.isObject(std.get(carried, 'traits')) then carried else { traits: {} },
}
