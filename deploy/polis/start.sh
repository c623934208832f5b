#!/bin/sh
# Starts Ory Polis (the boxyhq/jackson image) for the local stack with OpenID Connect signing keys
# made for this container's life: Polis issues id_tokens only when OPENID_RSA_PRIVATE_KEY and
# OPENID_RSA_PUBLIC_KEY (base64 of PKCS#8 / SPKI PEM) are set, and a dev stack should not ship a
# private key. Kratos fetches the new key from Polis's JWKS when it meets the new key id.
# Production: generate the pair once, keep it in a secret store, and set both variables.
set -eu

if [ -z "${OPENID_RSA_PRIVATE_KEY:-}" ]; then
  eval "$(node -e '
    const { generateKeyPairSync } = require("crypto");
    const pair = generateKeyPairSync("rsa", {
      modulusLength: 2048,
      publicKeyEncoding: { type: "spki", format: "pem" },
      privateKeyEncoding: { type: "pkcs8", format: "pem" },
    });
    const b64 = (pem) => Buffer.from(pem).toString("base64");
    console.log("export OPENID_RSA_PRIVATE_KEY=" + b64(pair.privateKey));
    console.log("export OPENID_RSA_PUBLIC_KEY=" + b64(pair.publicKey));
  ')"
fi

# The image's own command.
exec node server.js
