// Body of Kratos's login web hook (selfservice.flows.login.after.oidc) to kratos-jit's
// POST /v1/hooks/login.
//
// Kratos calls it with `ctx` as a top-level argument (docs/kratos.md §1.3) after the user is
// authenticated: ctx.identity is the stored identity (real id; metadata_admin and credentials
// are stripped by Kratos, §1.5) and ctx.session the new session, whose
// authentication_methods[].provider names the OIDC provider the user signed in with.
//
// Only the identity and the session's authentication facts are forwarded: never
// ctx.request_cookies (every browser cookie, session cookie included) nor ctx.request_headers.
function(ctx) {
  flow_id: ctx.flow.id,
  identity: {
    id: ctx.identity.id,
    traits: ctx.identity.traits,
    metadata_public: std.get(ctx.identity, 'metadata_public'),
  },
  // Kratos omits ctx.session where a flow has none; the key is then left out.
  [if std.get(ctx, 'session') != null then 'session']: {
    authenticated_at: std.get(ctx.session, 'authenticated_at'),
    authentication_methods: std.get(ctx.session, 'authentication_methods', []),
  },
}
