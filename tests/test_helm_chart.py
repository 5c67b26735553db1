"""The Helm chart deploy/helm/deltanas, rendered by Helm's own template engine (helm-python-sdk binds Helm 4's Go SDK,
so no helm binary is needed) and every manifest validated offline against the Kubernetes JSON schemas
(kubernetes-validate, strict: unknown fields are errors) of the chart's oldest supported and the newest version.
Commands the chart prints are parsed with the real CLI parser; environment variables built into the real configs."""

from __future__ import annotations

import base64
import json
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import helm_python._native as helm_native
import kubernetes_validate
import pytest
import yaml

from deltanas.config import build, env_name, env_values, fields
from deltanas.service_registry import SERVICES
from tests.support.deploy import GRPC_SERVICES, ROOT, strict_parser

CHART = ROOT / "deploy" / "helm" / "deltanas"
OLDEST = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"].removeprefix(">=").removesuffix("-0")
NEWEST = kubernetes_validate.latest_version()
CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "autoscaled-tls": {
        "auth": {"token": "s3cret"},
        "tls": {"enabled": True, "cert": "CERT", "key": "KEY", "mutual": True, "clientCa": "CA"},
        "evaluator": {"autoscaling": {"enabled": True}, "env": {"DELTANAS_EVALUATOR_MAX_EPOCHS": "5"}},
        "llm": {"loraModules": {"delta": "/var/lib/deltanas/curator/adapters/op-1"}, "hfTokenSecret": "hf"},
        "tracking": {"mlflow": {"backendStoreUri": "postgresql://u:p@db:5432/mlflow"}},
    },
    "external": {
        "auth": {"existingSecret": "my-token"},
        "tls": {"enabled": True, "existingSecret": "my-tls"},
        "tracking": {"externalUri": "http://mlflow.example:5000"},
        "llm": {"enabled": False},
        "generator": {"backend": "tgi", "url": "http://tgi.example:80"},
        "curator": {"persistence": {"existingClaim": "my-state"}},
        "data": {"existingClaim": "my-data"},
    },
    "local-generator": {"generator": {"backend": "local", "model": "qwen2.5-coder-0.5b"}},  # it gets no LLM URL
    "ray-executor": {"evaluator": {  # one replica hands its candidates to a KubeRay cluster (docs/deploy.md)
        "image": "deltanas-evaluator-ray", "gpus": 0, "device": "auto", "replicas": 1,
        "env": {"DELTANAS_EVALUATOR_EXECUTOR": "ray", "DELTANAS_EVALUATOR_RAY__ADDRESS": "deltanas-head-svc:6379"},
        "networkPolicy": {"extraEgress": [{"to": [{"podSelector": {"matchLabels": {"ray.io/cluster": "deltanas"}}}]}]},
    }},
}
EXISTING = {"my-token", "my-tls", "my-state", "my-data", "hf"}  # objects the values name, not the chart's


def render(values: dict[str, Any], name: str = "demo", kube_version: str = NEWEST) -> dict[str, str]:
    """As `helm template --kube-version`: the chart gates fields on .Capabilities.KubeVersion. helm-python-sdk 0.2.2's
    Chart.render does not pass kube_version on, which its C SDK's render options take (the 1.27 test below fails
    if that ever stops taking effect)."""
    opts = {"name": name, "namespace": "ns", "kube_version": f"v{kube_version}"}
    with helm.Chart.load(str(CHART)) as chart:
        out: dict[str, str] = json.loads(helm_native.call_string(
            "helm_render", chart._raw(), json.dumps(values), json.dumps(opts)))
        return out


def manifests(values: dict[str, Any], kube_version: str = NEWEST) -> list[dict[str, Any]]:
    out = render(values, kube_version=kube_version)
    return [doc for path in sorted(out) if path.endswith(".yaml") for doc in yaml.safe_load_all(out[path]) if doc]


def one(docs: list[dict[str, Any]], kind: str, component: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and component_of(d) == component]
    return doc


def component_of(doc: dict[str, Any]) -> str:
    return doc["metadata"]["labels"]["app.kubernetes.io/component"]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def env(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def pod_templates(docs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            yield d["spec"]["template"]


@pytest.mark.parametrize("version", [OLDEST, NEWEST])
def test_chart_lints_without_warnings(version: str) -> None:
    report = helm.lint(str(CHART), kube_version=f"v{version}")
    assert not report["errors"]
    assert all(m["severity"] <= 1 for m in report["messages"]), report["messages"]  # 1: INFO (no icon)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("version", [OLDEST, NEWEST])
def test_every_manifest_validates_against_the_kubernetes_schemas(case: str, version: str) -> None:
    """Rendered for that version (`helm install` takes the cluster's), validated against its schema."""
    docs = manifests(CASES[case], kube_version=version)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("case", CASES)
def test_service_environment_is_real_config(case: str) -> None:
    """Every DELTANAS_<SERVICE>_<FIELD> (<TABLE>__<FIELD> for a component's) names a field of that service's
    config, and the literal values parse together."""
    docs = manifests(CASES[case])
    for name in GRPC_SERVICES:
        variables = env(container(one(docs, "Deployment", name)))
        assert variables["DELTANAS_SERVICE"] == name
        spec = SERVICES[name]
        known = {env_name(spec.env_prefix(), dotted) for dotted, _, _ in fields(spec.config_type())}
        for key in variables.keys() - {"DELTANAS_SERVICE"}:
            assert key.startswith(spec.env_prefix()), f"{name}: {key} configures another service"
            assert key in known, f"{name}: {key} is not a config field"
        literal = {k: v for k, v in variables.items() if isinstance(v, str)}  # not the secret references
        build(spec.config_type(), env_values(spec.config_type(), spec.env_prefix(), literal), f"{name}'s environment")


def test_grpc_probes_are_native_on_the_configured_port_and_tcp_under_tls() -> None:
    docs = manifests({})
    for name in GRPC_SERVICES:
        c = container(one(docs, "Deployment", name))
        port = SERVICES[name].config_type()().port
        assert {p["name"]: p["containerPort"] for p in c["ports"]}["grpc"] == port
        assert int(env(c)[f"DELTANAS_{name.upper()}_PORT"]) == port
        assert c["readinessProbe"]["grpc"] == {"port": port}
        # the generator's health follows its LLM server: not ready while that loads, but never restarted for it
        live = {"tcpSocket": {"port": "grpc"}} if name == "generator" else {"grpc": {"port": port}}
        for probe in ("startupProbe", "livenessProbe"):
            assert {k: v for k, v in c[probe].items() if k in ("grpc", "tcpSocket")} == live, (name, probe)
    for name in GRPC_SERVICES:
        c = container(one(manifests(CASES["autoscaled-tls"]), "Deployment", name))
        assert all(c[p]["tcpSocket"] == {"port": "grpc"} and "grpc" not in c[p]
                   for p in ("startupProbe", "readinessProbe", "livenessProbe")), name


def test_evaluators_request_a_gpu_each_and_share_one_read_only_data_volume() -> None:
    docs = manifests({})
    deployment = one(docs, "Deployment", "evaluator")
    c, pod = container(deployment), deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2 and c["resources"]["limits"]["nvidia.com/gpu"] == 1
    (data,) = [v for v in pod["volumes"] if v["name"] == "data"]
    claim = data["persistentVolumeClaim"]
    assert claim["readOnly"] and one(docs, "PersistentVolumeClaim", "data")["metadata"]["name"] == claim["claimName"]
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == "data"]
    assert mount["readOnly"] and env(c)["DELTANAS_EVALUATOR_DATA_ROOT"] == mount["mountPath"]
    assert pod["automountServiceAccountToken"] is False
    assert int(env(c)["DELTANAS_EVALUATOR_GRACE_S"]) < pod["terminationGracePeriodSeconds"]


@pytest.mark.parametrize("version", [OLDEST, "1.29.9", "1.30.0", NEWEST])
def test_evaluator_lets_bubblewrap_build_its_sandbox_and_nothing_more(version: str) -> None:
    """What compose's security_opt gives the evaluator (docs/deploy.md): namespaces (seccomp), mounts (AppArmor) and
    a fresh /proc (procMount Unmasked, only in a user-namespaced pod); no privilege, no capability. AppArmor is the
    securityContext field from 1.30 on, the annotation before (the field is not in the older schemas)."""
    deployment = one(manifests({}, kube_version=version), "Deployment", "evaluator")
    template = deployment["spec"]["template"]
    pod, c = template["spec"], container(deployment)
    assert pod["securityContext"]["seccompProfile"] == {"type": "Unconfined"}
    assert pod["hostUsers"] is False
    security = c["securityContext"]
    assert security["procMount"] == "Unmasked"
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"] == {"drop": ["ALL"]}
    assert "privileged" not in security and "add" not in security["capabilities"]
    annotation = template["metadata"]["annotations"].get(f"container.apparmor.security.beta.kubernetes.io/{c['name']}")
    if tuple(map(int, version.split("."))) >= (1, 30):
        assert security["appArmorProfile"] == {"type": "Unconfined"} and annotation is None
    else:
        assert "appArmorProfile" not in security and annotation == "unconfined"
    for other in pod_templates(manifests({}, kube_version=version)):  # the other services keep the defaults
        if other["metadata"]["labels"]["app.kubernetes.io/component"] != "evaluator":
            spec = other["spec"]
            assert "hostUsers" not in spec
            assert spec.get("securityContext", {}).get("seccompProfile", {}).get("type") != "Unconfined"
            assert not [k for k in other["metadata"].get("annotations", {}) if "apparmor" in k]
            for k in spec["containers"]:
                assert not {"procMount", "appArmorProfile"} & k.get("securityContext", {}).keys()


@pytest.mark.parametrize("version", [OLDEST, NEWEST])
def test_evaluator_sandbox_settings_are_values(version: str) -> None:
    """A Localhost AppArmor profile in either form; null leaves a field out (allow_weak_sandbox territory)."""
    local = {"appArmorProfile": {"type": "Localhost", "localhostProfile": "deltanas-bwrap"}}
    deployment = one(manifests({"evaluator": local}, kube_version=version), "Deployment", "evaluator")
    kubernetes_validate.validate(deployment, version, strict=True)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    security = container(deployment)["securityContext"]
    if version == NEWEST:
        assert security["appArmorProfile"] == local["appArmorProfile"]
    else:
        assert annotations["container.apparmor.security.beta.kubernetes.io/evaluator"] == "localhost/deltanas-bwrap"
    off = {"evaluator": {"hostUsers": None, "procMount": None, "appArmorProfile": None}}
    docs = manifests(off, kube_version=version)
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)
    deployment = one(docs, "Deployment", "evaluator")
    security = container(deployment)["securityContext"]
    assert "hostUsers" not in deployment["spec"]["template"]["spec"]
    assert not {"procMount", "appArmorProfile"} & security.keys()
    assert not [k for k in deployment["spec"]["template"]["metadata"]["annotations"] if "apparmor" in k]
    with pytest.raises(helm.HelmRenderError, match="hostUsers=false"):  # the API server would refuse it
        manifests({"evaluator": {"hostUsers": True}}, kube_version=version)


def test_evaluators_autoscale_on_busy_slots() -> None:
    docs = manifests(CASES["autoscaled-tls"])
    deployment = one(docs, "Deployment", "evaluator")
    hpa = one(docs, "HorizontalPodAutoscaler", "evaluator")
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == "deltanas_evaluator_busy_slots"
    ports = {p["name"]: p["containerPort"] for p in container(deployment)["ports"]}
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(ports["metrics"])
    env = {e["name"]: e.get("value") for e in container(deployment)["env"]}
    assert env["DELTANAS_EVALUATOR_METRICS_PORT"] == str(ports["metrics"])  # the evaluator serves where scraped
    assert not [d for d in manifests({}) if d["kind"] == "HorizontalPodAutoscaler"]


def test_printed_search_command_parses_and_reaches_every_service() -> None:
    """NOTES.txt's `deltanas run`: the real parser takes it; its addresses are the chart's Services and ports."""
    docs = manifests({})
    notes = render({})["deltanas/templates/NOTES.txt"]
    command = next(line for line in notes.replace("\\\n", " ").splitlines() if "deltanas run" in line)
    args = strict_parser().parse_args(shlex.split(command)[1:])
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    for name, address in (("curator", args.curator), ("generator", args.generator),
                          ("evaluator", args.evaluators.removeprefix("dns:///"))):
        host, port = address.rsplit(":", 1)
        service = services[host]
        assert service["spec"]["selector"]["app.kubernetes.io/component"] == name
        assert int(port) == service["spec"]["ports"][0]["port"] == SERVICES[name].config_type()().port
    headless = services[args.evaluators.removeprefix("dns:///").rsplit(":", 1)[0]]
    assert args.evaluators.startswith("dns:///") and headless["spec"]["clusterIP"] == "None"
    assert args.tracking_uri == "http://demo-deltanas-mlflow:5000" and "demo-deltanas-mlflow" in services


def test_evaluators_have_no_egress_and_admit_only_the_release() -> None:
    docs = manifests({})
    policy = one(docs, "NetworkPolicy", "evaluator")
    pod_labels = one(docs, "Deployment", "evaluator")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert "Egress" in policy["spec"]["policyTypes"] and policy["spec"]["egress"] == []
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "demo"}}}]
    assert {p["port"] for p in rule["ports"]} == {"grpc", "metrics"}


def test_an_evaluator_on_a_ray_cluster_gets_exactly_the_egress_it_is_given() -> None:
    evaluator = CASES["ray-executor"]["evaluator"]
    docs = manifests(CASES["ray-executor"])
    assert one(docs, "NetworkPolicy", "evaluator")["spec"]["egress"] == evaluator["networkPolicy"]["extraEgress"]
    env = one(docs, "Deployment", "evaluator")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "DELTANAS_EVALUATOR_EXECUTOR", "value": "ray"} in env


def test_token_and_tls_come_from_secrets() -> None:
    docs = manifests(CASES["autoscaled-tls"])
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    for name in GRPC_SERVICES:
        deployment = one(docs, "Deployment", name)
        c, variables = container(deployment), env(container(deployment))
        ref = variables[f"DELTANAS_{name.upper()}_AUTH_TOKEN"]["secretKeyRef"]
        assert base64.b64decode(secrets[ref["name"]]["data"][ref["key"]]).decode() == "s3cret"
        (tls,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls"]
        secret = secrets[tls["secret"]["secretName"]]
        (mount,) = [m for m in c["volumeMounts"] if m["name"] == "tls"]
        assert secret["type"] == "kubernetes.io/tls" and mount["readOnly"]
        for field, key in (("TLS_CERT", "tls.crt"), ("TLS_KEY", "tls.key"), ("TLS_CLIENT_CA", "ca.crt")):
            path = Path(variables[f"DELTANAS_{name.upper()}_{field}"])
            assert path.parent == Path(mount["mountPath"]) and key == path.name and key in secret["data"]


def test_a_generated_token_is_random() -> None:
    first, second = (one(manifests({}), "Secret", "auth")["data"]["token"] for _ in range(2))
    assert first != second and len(base64.b64decode(first)) == 32


@pytest.mark.parametrize("case", CASES)
def test_every_reference_resolves(case: str) -> None:
    """Secrets, claims and Service selectors name objects the chart renders (or ones the values say exist)."""
    docs = manifests(CASES[case])
    names = {(d["kind"], d["metadata"]["name"]) for d in docs} | {(k, n) for n in EXISTING for k in
                                                                   ("Secret", "PersistentVolumeClaim")}
    for template in pod_templates(docs):
        spec = template["spec"]
        for c in spec["containers"]:
            for e in c.get("env", []):
                if ref := e.get("valueFrom", {}).get("secretKeyRef"):
                    assert ("Secret", ref["name"]) in names, ref
            mounted = {m["name"] for m in c.get("volumeMounts", [])}
            assert mounted <= {v["name"] for v in spec.get("volumes", [])} | {
                t["metadata"]["name"] for d in docs if d["kind"] == "StatefulSet"
                for t in d["spec"]["volumeClaimTemplates"]}
        for v in spec.get("volumes", []):
            if claim := v.get("persistentVolumeClaim"):
                assert ("PersistentVolumeClaim", claim["claimName"]) in names, claim
            if secret := v.get("secret"):
                assert ("Secret", secret["secretName"]) in names, secret
    labels = [t["metadata"]["labels"] for t in pod_templates(docs)]
    for service in (d for d in docs if d["kind"] == "Service"):
        selector = service["spec"]["selector"].items()
        assert any(selector <= pod.items() for pod in labels), service["metadata"]["name"]


def test_external_tracking_deploys_no_mlflow_and_the_curator_uses_it() -> None:
    docs = manifests(CASES["external"])
    components = {component_of(d) for d in docs}
    assert not components & {"mlflow", "postgresql", "llm"}
    curator = env(container(one(docs, "Deployment", "curator")))
    assert curator["DELTANAS_CURATOR_TRACKING_URI"] == "http://mlflow.example:5000"
    generator = env(container(one(docs, "Deployment", "generator")))
    assert (generator["DELTANAS_GENERATOR_BACKEND"], generator["DELTANAS_GENERATOR_TGI__URL"]) == (
        "tgi", "http://tgi.example:80")


def test_generator_reaches_the_llm_server_which_serves_lora_adapters_from_the_curators_volume() -> None:
    docs = manifests(CASES["autoscaled-tls"])
    generator = env(container(one(docs, "Deployment", "generator")))
    llm_service, llm = one(docs, "Service", "llm"), one(docs, "Deployment", "llm")
    assert generator["DELTANAS_GENERATOR_BACKEND"] == "openai"
    # the openai backend appends /v1/... itself
    assert generator["DELTANAS_GENERATOR_OPENAI__URL"] == (f"http://{llm_service['metadata']['name']}:"
                                                   f"{llm_service['spec']['ports'][0]['port']}")
    vllm = container(llm)
    assert "--enable-lora" in vllm["args"] and "delta=/var/lib/deltanas/curator/adapters/op-1" in vllm["args"]
    assert env(vllm)["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    curator_state = env(container(one(docs, "Deployment", "curator")))["DELTANAS_CURATOR_STATE_DIR"]
    (mount,) = [m for m in vllm["volumeMounts"] if m["name"] == "curator-state"]
    assert mount["readOnly"] and Path(curator_state).is_relative_to(mount["mountPath"])
    (volume,) = [v for v in llm["spec"]["template"]["spec"]["volumes"] if v["name"] == "curator-state"]
    (curator_volume,) = [v for v in one(docs, "Deployment", "curator")["spec"]["template"]["spec"]["volumes"]
                         if v["name"] == "state"]
    assert volume["persistentVolumeClaim"]["claimName"] == curator_volume["persistentVolumeClaim"]["claimName"]


def test_mlflow_uses_the_sql_store_and_accepts_its_service_name() -> None:
    docs = manifests({})
    mlflow = container(one(docs, "Deployment", "mlflow"))
    variables = env(mlflow)
    assert variables["BACKEND_STORE_URI"].startswith("postgresql://mlflow:$(POSTGRES_PASSWORD)@demo-deltanas-postgresql:")
    assert "--backend-store-uri=$(BACKEND_STORE_URI)" in mlflow["args"]
    hosts = next(a for a in mlflow["args"] if a.startswith("--allowed-hosts=")).split("=", 1)[1].split(",")
    assert "demo-deltanas-mlflow:5000" in hosts
    own = manifests(CASES["autoscaled-tls"])
    assert not [d for d in own if component_of(d) == "postgresql"]
    ref = env(container(one(own, "Deployment", "mlflow")))["BACKEND_STORE_URI"]["secretKeyRef"]
    (store,) = [d for d in own if d["kind"] == "Secret" and d["metadata"]["name"] == ref["name"]]
    assert store["stringData"][ref["key"]] == "postgresql://u:p@db:5432/mlflow"
