"""Validates custom resources against their CustomResourceDefinition's openAPIV3Schema.

usage: validate_custom_resources.py CRD_DIR MANIFEST...

Every Tenant and OAuthClient document in the manifests is checked with a JSON Schema
validator (OpenAPI v3 schemas are a JSON Schema dialect; the `x-kubernetes-*` extensions are
ignored, and CEL rules are left to the Rust validation that mirrors them). Other kinds are
skipped. Prints one line per problem, naming file, document, resource and field; exits 1 if
there is any.
"""
import glob
import os
import sys

import jsonschema
import yaml


def schemas(crd_dir):
    out = {}
    for path in glob.glob(os.path.join(crd_dir, "*.yaml")):
        with open(path) as f:
            crd = yaml.safe_load(f)
        group = crd["spec"]["group"]
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            out[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return out


def main():
    known = schemas(sys.argv[1])
    problems, checked = [], 0
    for path in sys.argv[2:]:
        with open(path) as f:
            docs = list(yaml.safe_load_all(f))
        for i, doc in enumerate(docs, start=1):
            if not isinstance(doc, dict):
                continue
            key = (doc.get("apiVersion"), doc.get("kind"))
            if key[0] is None or not key[0].startswith("gatehouse.dev/"):
                continue
            schema = known.get(key)
            if schema is None:
                problems.append(f"{path} document {i}: no CRD for {key[0]} {key[1]}")
                continue
            checked += 1
            name = doc.get("metadata", {}).get("name", "?")
            validator = jsonschema.Draft7Validator(schema)
            for error in validator.iter_errors(doc):
                field = ".".join(str(p) for p in error.absolute_path) or "(root)"
                problems.append(f"{path} document {i} ({key[1]} {name}): {field}: {error.message}")
    for p in problems:
        print(p)
    print(f"{checked} custom resources checked, {len(problems)} problems", file=sys.stderr)
    sys.exit(1 if problems or checked == 0 else 0)


if __name__ == "__main__":
    main()
