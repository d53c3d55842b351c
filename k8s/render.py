#!/usr/bin/env python3
"""Renders a kustomization directory to one multi-document YAML stream, as
`kubectl kustomize DIR` would for the subset of kustomize that faultline's
k8s/ uses; it exists because no cluster and no `kustomize` binary are here,
so `make test` renders and validates every overlay offline.

Supported, with kustomize's documented meaning
(https://kubectl.docs.kubernetes.io/references/kustomize/kustomization/):
  resources          files (one or more YAML documents) and directories
                     holding a kustomization.yaml, rendered first, in order
  namespace          set on every namespaced object, and on the
                     ServiceAccount subjects of (Cluster)RoleBindings
  configMapGenerator name + files (KEY=PATH or PATH, key = file name),
                     with options.disableNameSuffixHash: true only
  labels             pairs added to every object's metadata.labels
                     (includeSelectors is not supported)
Anything else in a kustomization is refused, never ignored.

Usage: python3 k8s/render.py DIR > rendered.yaml
"""
import os
import sys

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "configMapGenerator", "labels"}
CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "PersistentVolume", "StorageClass", "PriorityClass", "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration", "APIService", "Node",
}


class RenderError(Exception):
    pass


def _load_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def _config_map(base, gen):
    unknown = set(gen) - {"name", "files", "options"}
    if unknown:
        raise RenderError(f"{base}: configMapGenerator {gen.get('name')}: unsupported {sorted(unknown)}")
    if not (gen.get("options") or {}).get("disableNameSuffixHash"):
        raise RenderError(
            f"{base}: configMapGenerator {gen.get('name')}: only disableNameSuffixHash: true is supported"
        )
    data = {}
    for entry in gen.get("files", []):
        key, _, path = entry.partition("=") if "=" in entry else (os.path.basename(entry), "", entry)
        with open(os.path.join(base, path), encoding="utf-8") as f:
            data[key] = f.read()
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data}


def render(directory):
    """The objects of the kustomization in `directory`, as dicts."""
    path = os.path.join(directory, "kustomization.yaml")
    if not os.path.isfile(path):
        raise RenderError(f"{directory} holds no kustomization.yaml")
    with open(path, encoding="utf-8") as f:
        k = yaml.safe_load(f) or {}
    unknown = set(k) - SUPPORTED
    if unknown:
        raise RenderError(f"{path}: unsupported fields {sorted(unknown)}")
    objects = []
    for r in k.get("resources", []):
        full = os.path.join(directory, r)
        objects.extend(render(full) if os.path.isdir(full) else _load_docs(full))
    objects.extend(_config_map(directory, g) for g in k.get("configMapGenerator", []))
    ns = k.get("namespace")
    for o in objects:
        meta = o.setdefault("metadata", {})
        if ns and o.get("kind") not in CLUSTER_SCOPED:
            meta["namespace"] = ns
        if ns and o.get("kind") in ("RoleBinding", "ClusterRoleBinding"):
            for s in o.get("subjects", []):
                if s.get("kind") == "ServiceAccount":
                    s["namespace"] = ns
        for group in k.get("labels", []):
            if set(group) - {"pairs"}:
                raise RenderError(f"{path}: labels: only pairs are supported")
            meta.setdefault("labels", {}).update(group["pairs"])
    # Namespaces first, so that a stream applied in order finds them.
    objects.sort(key=lambda o: o.get("kind") != "Namespace")
    return objects


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    try:
        objects = render(argv[1])
    except (RenderError, OSError, yaml.YAMLError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
