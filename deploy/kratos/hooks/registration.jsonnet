// Body of Kratos's registration web hook (selfservice.flows.registration.after.oidc) to
// kratos-jit's POST /v1/hooks/registration.
//
// Kratos calls it with `ctx` as a top-level argument (docs/kratos.md §1.3), before the identity
// is persisted (response.parse: true), so ctx.identity.id is still the nil UUID and is not sent.
// ctx.identity carries what the Kratos-side claims mapper (deploy/kratos/mappers/) produced:
// the traits, and the IdP's claims under metadata_public.kratos_jit_claims (Kratos never gives
// a web hook the claims themselves, §1.6). metadata_admin is never in ctx (§1.5).
//
// Only the identity is forwarded: never ctx.request_cookies (Kratos puts every cookie of the
// browser there, CSRF and session cookies included) nor ctx.request_headers.
function(ctx) {
  flow_id: ctx.flow.id,
  identity: {
    traits: ctx.identity.traits,
    // null when the mapper wrote none; kratos-jit treats null and {} alike.
    metadata_public: std.get(ctx.identity, 'metadata_public'),
    // Kratos omits the key when there is no address.
    verifiable_addresses: std.get(ctx.identity, 'verifiable_addresses', []),
  },
}
