#!/usr/bin/env python3
"""Evaluate a claims mapper the way Ory Kratos does, with go-jsonnet (the reference engine).

Usage: gojsonnet-eval.py [--no-identity] MAPPER.jsonnet CLAIMS.json [IDENTITY.json]

Kratos (selfservice/strategy/oidc, go-jsonnet v0.21.0 via ory/x jsonnetsecure) binds the
claims object as ext code `claims` and, on master with `update_identity_on_login`, the
current identity as ext code `identity` ({"traits":{},"metadata_public":{},"metadata_admin":{}}
at registration). It allows no imports (ErrorImporter: "import not available").
--no-identity binds `claims` alone, as Kratos v26.2.0 does.

Needs `pip install gojsonnet==0.21.0` (the version Kratos pins).
Prints the result as JSON with sorted keys on stdout; on a Jsonnet error prints the
error on stderr and exits 1. Exit status 2 is a usage or I/O problem.
"""

import json
import sys

import _gojsonnet

EMPTY_IDENTITY = '{"traits":{},"metadata_public":{},"metadata_admin":{}}'
MAX_STACK = 500


def refuse_import(_importing_dir, _path):
    # Kratos' jsonnetsecure.ErrorImporter refuses every import with this text.
    raise RuntimeError("import not available")


def read_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def main(argv):
    bind_identity = "--no-identity" not in argv[1:2]
    args = argv[1:] if bind_identity else argv[2:]
    if len(args) not in (2, 3) or (len(args) == 3 and not bind_identity):
        print("usage: gojsonnet-eval.py [--no-identity] MAPPER.jsonnet CLAIMS.json [IDENTITY.json]", file=sys.stderr)
        return 2
    mapper, claims_path = args[0], args[1]
    try:
        ext_codes = {"claims": read_text(claims_path)}
        if bind_identity:
            ext_codes["identity"] = read_text(args[2]) if len(args) == 3 else EMPTY_IDENTITY
    except OSError as e:
        print(f"gojsonnet-eval: {e}", file=sys.stderr)
        return 2

    try:
        out = _gojsonnet.evaluate_file(
            mapper,
            max_stack=MAX_STACK,
            ext_codes=ext_codes,
            import_callback=refuse_import,
        )
    except RuntimeError as e:
        print(str(e).rstrip(), file=sys.stderr)
        return 1

    print(json.dumps(json.loads(out), sort_keys=True, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
