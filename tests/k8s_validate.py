"""Run by the Triton environment's Python (tests/test_triton_server.py), which holds the
Kubernetes and KServe Python SDKs: slimbert's own environment has neither.

Checks Kubernetes manifests against the SDKs' typed models, each generated from its project's
published OpenAPI schema: every key must be a field of its model, every value of the model's type,
every required field set (the models' client-side validation). Reads YAML file paths as arguments,
prints {"path": ["error", ...]} as JSON.
"""

import json
import sys

import kserve.models as kserve_models
import kubernetes.client.models as kubernetes_models
import yaml

PRIMITIVES = {
    "str": str,
    "int": int,
    "bool": bool,
    "float": (int, float),
    "datetime": str,
    "date": str,
    "object": object,  # IntOrString, quantities, free-form
}
PREFIX = {"serving.kserve.io/v1beta1": "V1beta1", "apps/v1": "V1", "v1": "V1"}


def model_class(name):
    return getattr(kserve_models, name, None) or getattr(kubernetes_models, name, None)


def check(value, kind, path, errors):
    # type names: "list[X]" / "dict(str, X)" (KServe's generator), "List[X]" / "Dict[str, X]"
    # (the Kubernetes client's)
    if kind.lower().startswith("list["):
        if not isinstance(value, list):
            errors.append(f"{path}: a list expected")
            return
        for i, item in enumerate(value):
            check(item, kind[5:-1], f"{path}[{i}]", errors)
        return
    if kind.startswith(("dict(", "Dict[")):
        if not isinstance(value, dict):
            errors.append(f"{path}: a mapping expected")
            return
        inner = kind[kind.index(",") + 1 : -1].strip()
        for key, item in value.items():
            check(item, inner, f"{path}.{key}", errors)
        return
    if kind in PRIMITIVES:
        if not isinstance(value, PRIMITIVES[kind]) or (kind == "int" and isinstance(value, bool)):
            errors.append(f"{path}: {kind} expected, got {type(value).__name__}")
        return
    model = model_class(kind)
    if model is None:
        errors.append(f"{path}: no model {kind} in either SDK")
        return
    if not isinstance(value, dict):
        errors.append(f"{path}: a {kind} mapping expected")
        return
    by_key = {key: attribute for attribute, key in model.attribute_map.items()}
    for key, item in value.items():
        if key not in by_key:
            errors.append(f"{path}.{key}: not a field of {kind}")
            continue
        check(item, model.openapi_types[by_key[key]], f"{path}.{key}", errors)
    try:  # the setters refuse a missing required field and values outside an enum
        model(**{by_key[k]: v for k, v in value.items() if k in by_key})
    except (ValueError, TypeError) as error:
        errors.append(f"{path}: {error}")


def main() -> None:
    report = {}
    for path in sys.argv[1:]:
        errors = []
        with open(path) as handle:
            for number, document in enumerate(yaml.safe_load_all(handle)):
                prefix = PREFIX.get(document.get("apiVersion"))
                if prefix is None:
                    errors.append(f"document {number}: apiVersion {document.get('apiVersion')}")
                    continue
                check(document, prefix + document["kind"], f"{document['kind']}", errors)
        report[path] = errors
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
