#!/usr/bin/env python3
"""Validate custom resources in rendered manifests against upstream CRD schemas.

Usage:
    validate_crs.py --crd-dir DIR FILE...      validate every custom resource in FILEs
    validate_crs.py --crd-dir DIR --list-kinds print the served (group/version, kind) pairs

DIR holds apiextensions.k8s.io/v1 CustomResourceDefinition files (*.yaml). Every FILE is a
multi-document YAML stream such as `kubectl kustomize` output. For each document:

* its group has a CRD in DIR: it is validated against the served version's openAPIV3Schema,
  translated to JSON Schema with the API server's `fieldValidation=Strict` semantics (unknown
  fields are errors). A version or kind that no CRD serves is an error.
* a built-in group (core "v1", apps, batch, policy, autoscaling, *.k8s.io, ...): skipped, another
  tool validates those.
* any other group (has a dot, is not *.k8s.io, no CRD in DIR): an error, since nothing would check
  it, unless --allow-unknown-groups is given.

Not checked (documented gaps): CEL rules (`x-kubernetes-validations`), list-type uniqueness
(`x-kubernetes-list-type: set/map`), and formats other than date-time, date, byte, ipv4, ipv6,
uuid, int32 and int64.

Output: `FILE: KIND/NAME: <json path>: <message>` per error, then `crs: N validated, M errors`.
Exit status: 0 no errors, 1 errors, 2 usage error or unreadable CRD dir / input file.
"""
import argparse
import base64
import ipaddress
import re
import sys
import uuid
from pathlib import Path

import jsonschema
import yaml

DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
OBJECT_META_FIELDS = (
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers", "managedFields")
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
# Value keywords that mean the same in OpenAPI v3.0 (CRD) and JSON Schema 2020-12.
COPIED = ("enum", "minLength", "maxLength", "minimum", "maximum", "multipleOf",
          "minItems", "maxItems", "minProperties", "maxProperties", "uniqueItems")


class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml is much faster
    """SafeLoader reading values the way sigs.k8s.io/yaml does: timestamps stay strings."""


Loader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)
Loader.add_constructor("tag:yaml.org,2002:value", yaml.SafeLoader.construct_yaml_str)  # "="


def metadata_schema(top_level):
    """ObjectMeta, checked loosely: known fields only, DNS names, string maps."""
    props = {k: {} for k in OBJECT_META_FIELDS}
    props.update(labels=STRING_MAP, annotations=STRING_MAP,
                 name={"type": "string", "maxLength": 253, "pattern": DNS1123_SUBDOMAIN},
                 namespace={"type": "string", "maxLength": 63, "pattern": DNS1123_LABEL})
    schema = {"type": "object", "properties": props, "additionalProperties": False}
    if top_level:
        schema["required"] = ["name"]
    return schema


def go_pattern(pattern):
    """Go RE2 allows inline flags such as ^(?i)... anywhere; Python wants them first."""
    pattern = pattern.replace(r"\z", r"\Z")
    flags = "".join(re.findall(r"\(\?([ims]+)\)", pattern))
    return f"(?{flags})" + re.sub(r"\(\?[ims]+\)", "", pattern) if flags else pattern


def convert(s, structural=True):
    """Translate one CRD OpenAPI v3 schema node into JSON Schema (Kubernetes strict semantics).

    `structural` is False inside allOf/anyOf/oneOf/not: those only add value checks, field
    pruning (hence unknown-field errors) follows the structural properties alone.
    """
    out = {k: s[k] for k in COPIED if k in s}
    if "pattern" in s:
        out["pattern"] = go_pattern(s["pattern"])
    if s.get("exclusiveMinimum") is True and "minimum" in s:  # OpenAPI 3.0 boolean form
        out["exclusiveMinimum"] = out.pop("minimum")
    if s.get("exclusiveMaximum") is True and "maximum" in s:
        out["exclusiveMaximum"] = out.pop("maximum")
    if s.get("format") in FORMATS:
        out["format"] = s["format"]
    if s.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    elif "type" in s:
        out["type"] = s["type"]
    props = {k: convert(v) for k, v in s.get("properties", {}).items()}
    # The API server applies defaults before validating, so a defaulted field may be omitted.
    required = [k for k in s.get("required", [])
                if "default" not in s.get("properties", {}).get(k, {})]
    if s.get("x-kubernetes-embedded-resource"):
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props["metadata"] = metadata_schema(top_level=False)
        required += ["apiVersion", "kind"]
    if props:
        out["properties"] = props
    if required:
        out["required"] = sorted(set(required))
    preserve = s.get("x-kubernetes-preserve-unknown-fields") is True
    addl = s.get("additionalProperties")
    if isinstance(addl, dict):
        out["additionalProperties"] = convert(addl)
    elif isinstance(addl, bool):
        out["additionalProperties"] = addl
    elif structural and not preserve and (props or s.get("type") == "object"):
        # Strict field validation: anything the schema does not declare is an unknown field
        # (an object with no properties at all would have every field pruned).
        out["additionalProperties"] = False
    if isinstance(s.get("items"), dict):
        out["items"] = convert(s["items"])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in s and not (key == "anyOf" and "x-kubernetes-int-or-string" in s):
            out[key] = [convert(x, structural=False) for x in s[key]]
    if "not" in s:
        out["not"] = convert(s["not"], structural=False)
    # x-kubernetes-validations (CEL) is deliberately not evaluated: there is no CEL
    # interpreter in the stdlib. Such rules are skipped silently.
    if s.get("nullable"):
        return {"if": {"type": "null"}, "else": out}  # null passes, other values checked
    return out


def top_level_schema(openapi):
    schema = convert(openapi)
    props = schema.setdefault("properties", {})
    props.update(apiVersion={"type": "string"}, kind={"type": "string"},
                 metadata=metadata_schema(top_level=True))
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    return schema


def _check(fn):
    def checker(value):
        if not isinstance(value, str):
            return True
        try:
            return fn(value) is not False
        except ValueError:
            return False
    return checker


FORMATS = {
    "date-time": _check(lambda v: re.fullmatch(
        r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:?\d\d)?", v) is not None),
    "date": _check(lambda v: re.fullmatch(r"\d{4}-\d\d-\d\d", v) is not None),
    "byte": _check(lambda v: base64.b64decode(re.sub(r"[\r\n]", "", v), validate=True)),
    "ipv4": _check(ipaddress.IPv4Address),
    "ipv6": _check(ipaddress.IPv6Address),
    "uuid": _check(uuid.UUID),
    "int32": lambda v: not isinstance(v, int) or -2**31 <= v < 2**31,
    "int64": lambda v: not isinstance(v, int) or -2**63 <= v < 2**63,
}
FORMAT_CHECKER = jsonschema.FormatChecker(formats=())
for _name, _fn in FORMATS.items():
    FORMAT_CHECKER.checks(_name)(_fn)


def load_yaml_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.load_all(f, Loader=Loader) if d is not None]


def load_crds(crd_dir):
    """Return {(group, version, kind): openAPIV3Schema} for served versions, and the groups."""
    served, groups = {}, set()
    for path in sorted(Path(crd_dir).glob("*.yaml")):
        for doc in load_yaml_docs(path):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition" \
                    or doc.get("apiVersion") != "apiextensions.k8s.io/v1":
                continue
            spec = doc["spec"]
            groups.add(spec["group"])
            for v in spec.get("versions", []):
                if v.get("served"):
                    key = (spec["group"], v["name"], spec["names"]["kind"])
                    served[key] = v["schema"]["openAPIV3Schema"]
    return served, groups


def is_builtin_group(group):
    return "." not in group or group == "k8s.io" or group.endswith(".k8s.io")


def error_lines(validator, doc):
    """Yield (json path, message) for every schema violation, unknown fields one by one."""
    for e in sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.path]):
        if e.validator == "additionalProperties" and e.validator_value is False:
            known = e.schema.get("properties", {})
            for field in sorted(k for k in e.instance if k not in known):
                yield f"{e.json_path}.{field}", "unknown field"
        else:
            yield e.json_path, e.message


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crd-dir", required=True, help="directory of CRD *.yaml files")
    ap.add_argument("--list-kinds", action="store_true", help="print served kinds and exit")
    ap.add_argument("--allow-unknown-groups", action="store_true",
                    help="skip (instead of failing) custom groups that have no CRD in DIR")
    ap.add_argument("files", nargs="*", metavar="FILE")
    args = ap.parse_args(argv)
    if not Path(args.crd_dir).is_dir():
        print(f"error: CRD dir {args.crd_dir} is not a readable directory", file=sys.stderr)
        return 2
    try:
        served, groups = load_crds(args.crd_dir)
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        print(f"error: reading CRDs from {args.crd_dir}: {exc!r}", file=sys.stderr)
        return 2
    if not served:
        print(f"error: no served CRD versions found in {args.crd_dir}", file=sys.stderr)
        return 2
    if args.list_kinds:
        for group, version, kind in sorted(served):
            print(f"{group}/{version} {kind}")
        return 0
    if not args.files:
        ap.print_usage(sys.stderr)
        return 2

    validators, validated, errors = {}, 0, 0
    for file in args.files:
        try:
            docs = load_yaml_docs(file)
        except (OSError, yaml.YAMLError) as exc:
            print(f"error: reading {file}: {exc}", file=sys.stderr)
            return 2
        for doc in docs:
            if not isinstance(doc, dict) or "/" not in str(doc.get("apiVersion", "")):
                continue  # not an object, or core group "v1": built-in
            api_version, kind = str(doc["apiVersion"]), str(doc.get("kind", ""))
            meta = doc.get("metadata")
            name = meta.get("name", "<no name>") if isinstance(meta, dict) else "<no name>"
            group, version = api_version.split("/", 1)
            if group not in groups and (is_builtin_group(group) or args.allow_unknown_groups):
                continue
            key = (group, version, kind)
            problems = []
            if key not in served:
                problems = [("$", f"no served CRD for {api_version} {kind or '<no kind>'}")]
            else:
                if key not in validators:
                    schema = top_level_schema(served[key])
                    validators[key] = jsonschema.Draft202012Validator(
                        schema, format_checker=FORMAT_CHECKER)
                validated += 1
                problems = list(error_lines(validators[key], doc))
            for path, message in problems:
                print(f"{file}: {kind}/{name}: {path}: {message}")
            errors += len(problems)
    print(f"crs: {validated} validated, {errors} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
