"""Print the API path of the object in a YAML file (one document) for a PATCH."""
import re
import sys

text = open(sys.argv[1]).read()


def top(key):
    m = re.search(r"^%s:\s*(\S+)\s*$" % key, text, re.M)
    return m.group(1).strip("'\"") if m else None


def meta(key):
    m = re.search(r"^metadata:\s*\n((?:[ \t]+.*\n?)*)", text, re.M)
    block = m.group(1) if m else ""
    m = re.search(r"^\s+%s:\s*(\S+)\s*$" % key, block, re.M)
    if not m:
        m = re.search(r"^metadata:\s*\{[^}]*\b%s:\s*([^,}\s]+)" % key, text, re.M)
    return m.group(1).strip("'\"") if m else None


api, kind, name, ns = top("apiVersion"), top("kind"), meta("name"), meta("namespace")
plural = {
    "Namespace": "namespaces", "ConfigMap": "configmaps", "Secret": "secrets",
    "Service": "services", "Deployment": "deployments", "Ingress": "ingresses",
    "GitRepository": "gitrepositories", "Kustomization": "kustomizations",
    "HelmRelease": "helmreleases", "HelmRepository": "helmrepositories",
    "Canary": "canaries",
}[kind]
base = "/api/" + api if "/" not in api else "/apis/" + api
if ns and kind != "Namespace":
    base += "/namespaces/" + ns
print("%s/%s/%s" % (base, plural, name))
