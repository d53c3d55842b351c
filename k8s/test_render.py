"""The renderer against kustomize's documented semantics, on small
kustomizations made here: `python3 -m unittest k8s/test_render.py` (run by
`make test` through tests/tests/k8s_manifests.rs)."""
import os
import sys
import tempfile
import textwrap
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import render  # noqa: E402


def write(root, files):
    for name, text in files.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(textwrap.dedent(text))


BASE = {
    "base/kustomization.yaml": """
        resources: [ns.yaml, things.yaml]
    """,
    "base/ns.yaml": """
        apiVersion: v1
        kind: Namespace
        metadata: {name: faultline}
    """,
    "base/things.yaml": """
        apiVersion: v1
        kind: ServiceAccount
        metadata: {name: sa}
        ---
        apiVersion: rbac.authorization.k8s.io/v1
        kind: ClusterRoleBinding
        metadata: {name: crb}
        roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
        subjects: [{kind: ServiceAccount, name: sa}, {kind: User, name: alice}]
    """,
    "overlay/kustomization.yaml": """
        namespace: faultline
        resources: [../base, svc.yaml]
        configMapGenerator:
          - name: files
            files: [a.txt, renamed=b.txt]
            options: {disableNameSuffixHash: true}
        labels:
          - pairs: {faultline.system: tokens}
    """,
    "overlay/svc.yaml": """
        apiVersion: v1
        kind: Service
        metadata: {name: svc, namespace: other}
        spec: {selector: {app: x}, ports: [{port: 1}]}
    """,
    "overlay/a.txt": "alpha\n",
    "overlay/b.txt": "beta\n",
}


class RenderTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        write(self.dir.name, BASE)

    def tearDown(self):
        self.dir.cleanup()

    def objects(self):
        out = render.render(os.path.join(self.dir.name, "overlay"))
        return {(o["kind"], o["metadata"]["name"]): o for o in out}, out

    def test_bases_render_first_and_namespaces_lead(self):
        by, out = self.objects()
        self.assertEqual(out[0]["kind"], "Namespace")
        self.assertEqual(len(out), 5)
        self.assertIn(("ConfigMap", "files"), by)

    def test_namespace_set_on_namespaced_objects_only(self):
        by, _ = self.objects()
        self.assertEqual(by[("Service", "svc")]["metadata"]["namespace"], "faultline")  # replaced
        self.assertEqual(by[("ServiceAccount", "sa")]["metadata"]["namespace"], "faultline")
        self.assertNotIn("namespace", by[("Namespace", "faultline")]["metadata"])
        crb = by[("ClusterRoleBinding", "crb")]
        self.assertNotIn("namespace", crb["metadata"])
        self.assertEqual(crb["subjects"][0]["namespace"], "faultline")
        self.assertNotIn("namespace", crb["subjects"][1])

    def test_config_maps_from_files_keyed_by_name_or_given_key(self):
        by, _ = self.objects()
        self.assertEqual(by[("ConfigMap", "files")]["data"], {"a.txt": "alpha\n", "renamed": "beta\n"})

    def test_labels_on_metadata_but_not_selectors(self):
        by, _ = self.objects()
        svc = by[("Service", "svc")]
        self.assertEqual(svc["metadata"]["labels"], {"faultline.system": "tokens"})
        self.assertEqual(svc["spec"]["selector"], {"app": "x"})

    def test_what_it_does_not_know_is_refused(self):
        for field, text in [
            ("patches", "resources: [../base]\npatches: []\n"),
            ("hash", "configMapGenerator: [{name: x, files: [a.txt]}]\n"),
        ]:
            write(self.dir.name, {"overlay/kustomization.yaml": text})
            with self.assertRaises(render.RenderError, msg=field):
                render.render(os.path.join(self.dir.name, "overlay"))


if __name__ == "__main__":
    unittest.main()
