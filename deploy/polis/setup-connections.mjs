// Creates (or refreshes) one Ory Polis SAML connection per SAML provider of the local stack,
// each trusting one realm of the test IdP (Keycloak). Its client (tenant=<provider>&product=…)
// is kratos-jit's hop in hop mode, whose callback is <HOP_PUBLIC_URL>/hop/<provider>/callback,
// and Kratos itself in web hook mode (deploy/kratos/kratos.hooks.yml): both redirect URLs are
// registered, the hop's as the default. Run by the `polis-setup` service of
// docker-compose.yml once Polis and the IdP are healthy; safe to run again (Polis keys a
// connection by tenant, product and IdP entity id, and keeps its client secret on a re-create).
//
// The IdP metadata is fetched here and handed to Polis as XML: Polis itself only fetches
// metadata over https or from localhost.

const polis = process.env.POLIS_URL;
const apiKey = process.env.POLIS_API_KEY;
const idp = process.env.SAML_IDP_URL;
const kratos = process.env.KRATOS_PUBLIC_URL;
const product = process.env.POLIS_PRODUCT;
const hop = process.env.HOP_PUBLIC_URL;

for (const [name, value] of Object.entries({ POLIS_URL: polis, POLIS_API_KEY: apiKey, SAML_IDP_URL: idp, KRATOS_PUBLIC_URL: kratos, POLIS_PRODUCT: product, HOP_PUBLIC_URL: hop })) {
  if (!value) {
    console.error(`polis-setup: ${name} is not set`);
    process.exit(2);
  }
}

// Kratos provider id (= Polis tenant) -> test IdP realm.
const connections = [
  { tenant: 'okta-acme', realm: 'acme', name: 'Acme Corp (Okta, emulated)' },
  { tenant: 'entra-globex', realm: 'globex', name: 'Globex (Entra ID, emulated)' },
  { tenant: 'onelogin-initech', realm: 'initech', name: 'Initech (OneLogin, emulated)' },
];

async function main() {
  for (const c of connections) {
    const metadataUrl = `${idp}/realms/${c.realm}/protocol/saml/descriptor`;
    const metadata = await fetch(metadataUrl);
    if (!metadata.ok) {
      throw new Error(`${metadataUrl}: HTTP ${metadata.status}`);
    }
    // The hop's callback (hop mode); Kratos's OIDC callback for the provider (web hook mode;
    // with `pkce: force` Kratos would use the provider-less one).
    const hopCallback = `${hop.replace(/\/+$/, '')}/hop/${c.tenant}/callback`;
    const callback = new URL('self-service/methods/oidc/callback', kratos).toString();
    const answer = await fetch(`${polis}/api/v1/sso`, {
      method: 'POST',
      headers: { Authorization: `Api-Key ${apiKey}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({
        tenant: c.tenant,
        product,
        name: c.name,
        rawMetadata: await metadata.text(),
        defaultRedirectUrl: hopCallback,
        redirectUrl: [hopCallback, `${callback}/${c.tenant}`, callback],
      }),
    });
    const text = await answer.text();
    if (!answer.ok) {
      throw new Error(`Polis refused the ${c.tenant} connection: HTTP ${answer.status} ${text}`);
    }
    console.log(`polis-setup: ${c.tenant} -> ${metadataUrl}`);
  }
}

main().catch((error) => {
  console.error(`polis-setup: ${error.message}`);
  process.exit(1);
});
