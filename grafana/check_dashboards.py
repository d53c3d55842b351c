#!/usr/bin/env python3
"""Checks Grafana dashboard JSON against Grafana's dashboard schema, offline.

No tool on PyPI or crates.io validates a dashboard against Grafana's own
schema (its CUE and JSON Schema files live in Grafana's repository). The
closest is the Grafana Foundation SDK (`grafana-foundation-sdk` on PyPI),
whose types are generated from that schema: a dashboard read into them and
written back keeps every field the schema knows and drops the rest. So a
field that does not survive the round trip (a misspelled key at any depth,
an option a panel type does not have, a non-object where an object goes) is
not in the schema. The SDK does not check scalar types; the checks below do
that for the fields Grafana cannot load a dashboard without.

Usage: check_dashboards.py FILE...      (exit 1 with every finding)
       check_dashboards.py --self-test   (broken copies must be rejected)
"""

import copy
import json
import sys

try:
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard
except ImportError:
    sys.exit("grafana-foundation-sdk is missing: "
             "python3 -m pip install 'grafana-foundation-sdk==1769699590!11.3.0'")

# Grafana's Prometheus annotation queries keep their legend templates on the
# annotation itself; the schema's AnnotationQuery leaves room for what a
# datasource adds, the SDK's generated type does not.
ANNOTATION_EXTRAS = {"titleFormat", "textFormat", "tagKeys", "useValueForTime", "step"}


def diff(a, b, path="$"):
    """What of `a` did not survive as `b`."""
    if isinstance(a, dict):
        if not isinstance(b, dict):
            return [f"{path}: {type(a).__name__} became {type(b).__name__}"]
        out = []
        for k, v in a.items():
            if k not in b:
                out.append(f"{path}.{k}: not in the schema (dropped)")
            else:
                out += diff(v, b[k], f"{path}.{k}")
        return out
    if isinstance(a, list):
        if not isinstance(b, list) or len(a) != len(b):
            return [f"{path}: the list did not survive"]
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += diff(x, y, f"{path}[{i}]")
        return out
    if a != b or type(a) is not type(b):
        return [f"{path}: {a!r} became {b!r}"]
    return []


def expect(found, path, value, kinds):
    if not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
        names = " or ".join(k.__name__ for k in kinds)
        found.append(f"{path}: {value!r} is not {names}")


def types(d):
    """Scalar types the round trip passes through unchecked."""
    found = []
    expect(found, "$.title", d.get("title"), (str,))
    expect(found, "$.uid", d.get("uid"), (str,))
    expect(found, "$.schemaVersion", d.get("schemaVersion"), (int,))
    panels = d.get("panels")
    if not isinstance(panels, list):
        return found + ["$.panels: not a list"]
    for i, p in enumerate(panels):
        at = f"$.panels[{i}]"
        if not isinstance(p, dict):
            found.append(f"{at}: not an object")
            continue
        expect(found, f"{at}.type", p.get("type"), (str,))
        expect(found, f"{at}.title", p.get("title"), (str,))
        expect(found, f"{at}.id", p.get("id"), (int,))
        g = p.get("gridPos")
        if not isinstance(g, dict):
            found.append(f"{at}.gridPos: not an object")
        else:
            for k in ("h", "w", "x", "y"):
                expect(found, f"{at}.gridPos.{k}", g.get(k), (int,))
        targets = p.get("targets", [])
        if not isinstance(targets, list):
            found.append(f"{at}.targets: not a list")
            continue
        for j, t in enumerate(targets):
            if not isinstance(t, dict):
                found.append(f"{at}.targets[{j}]: not an object")
                continue
            expect(found, f"{at}.targets[{j}].expr", t.get("expr"), (str,))
            expect(found, f"{at}.targets[{j}].refId", t.get("refId"), (str,))
    return found


def check(d):
    """Every finding for dashboard `d` (empty: it conforms)."""
    if not isinstance(d, dict):
        return ["$: not an object"]
    found = types(d)
    try:
        back = json.loads(json.dumps(Dashboard.from_json(d), cls=JSONEncoder))
    except Exception as e:  # the SDK raises plain TypeErrors on bad shapes
        return found + [f"$: the schema's types cannot read it ({type(e).__name__}: {e})"]
    for f in diff(d, back):
        field = f.split(":", 1)[0].rsplit(".", 1)[-1]
        if f.startswith("$.annotations.list[") and field in ANNOTATION_EXTRAS:
            continue
        found.append(f)
    return found


def self_test(sample):
    """Each broken copy of `sample` must be rejected."""
    def broken(edit):
        d = copy.deepcopy(sample)
        edit(d)
        return d
    cases = {
        "a misspelled top-level key": lambda d: d.update(pannels=d.pop("panels")),
        "a misspelled panel key": lambda d: d["panels"][0].update(fieldConfg={}),
        "a misspelled query field": lambda d: d["panels"][0]["targets"][0].update(
            exprr=d["panels"][0]["targets"][0].pop("expr")),
        "a panel type that is a number": lambda d: d["panels"][0].update(type=5),
        "a gridPos that is a string": lambda d: d["panels"][0].update(gridPos="abc"),
        "a gridPos height that is a string": lambda d: d["panels"][0]["gridPos"].update(h="9"),
        "targets that are a string": lambda d: d["panels"][0].update(targets="up"),
        "a schemaVersion that is a string": lambda d: d.update(schemaVersion="39"),
        "a legend on a panel type without one": lambda d: d["panels"][0]["options"].update(
            legendd={"showLegend": True}),
    }
    assert not check(sample), check(sample)
    failed = [name for name, edit in cases.items() if not check(broken(edit))]
    return failed


def main(argv):
    register_default_plugins()
    if argv[1:] == ["--self-test"] or (argv[1:2] == ["--self-test"]):
        path = argv[2] if len(argv) > 2 else "grafana/dashboards/overview.json"
        with open(path) as f:
            sample = json.load(f)
        failed = self_test(sample)
        for name in failed:
            print(f"self-test: {name} was accepted")
        return 1 if failed else 0
    bad = 0
    for path in argv[1:]:
        with open(path) as f:
            found = check(json.load(f))
        for f_ in found:
            print(f"{path}: {f_}")
        bad += len(found)
    if not argv[1:]:
        print(__doc__)
        return 2
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
