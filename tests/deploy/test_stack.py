"""What make deploy-check runs, checked offline: the compose runner's reading of
deploy/compose.yaml with its overrides, the alert rules (promtool), and the
Kubernetes NetworkPolicies. The stack itself runs in make deploy-check."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.test_manifests import DEPLOY, PORTS, render

sys.path.insert(0, str(DEPLOY / "check"))
from podman_compose import (
    ComposeError,
    Project,
    dependencies,
    interpolate,
    load,
    seconds,
    start_order,
)

FILES = [
    DEPLOY / "compose.yaml",
    DEPLOY / "compose.standins.yaml",
    DEPLOY / "check" / "compose.check.yaml",
]
SECRETS = {
    "POSTGRES_PASSWORD": "pg",
    "EARLYHELP_TOKEN_SIGNING_KEYS": '{"keys": []}',
    # As deploy-check runs it: its throwaway stack uses the demo clients.
    "EARLYHELP_IDENTITIES_PATH": str((DEPLOY.parent / "config" / "identities.yaml").resolve()),
    "EARLYHELP_NOTIFICATIONS_SECRET_KEYS": "fernet",
    "GRAFANA_ADMIN_PASSWORD": "g",
    **{f"EARLYHELP_{service.upper()}_DB_PASSWORD": f"{service}-pw" for service in PORTS},
}


# ---------------------------------------------------------------- interpolation


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A}", {"A": "x"}, "x"),
        ("$A/b", {"A": "x"}, "x/b"),
        ("${A:-d}", {}, "d"),
        ("${A:-d}", {"A": ""}, "d"),
        ("${A-d}", {"A": ""}, ""),
        ("${A-d}", {}, "d"),
        ("$${A}", {"A": "x"}, "${A}"),
        ("127.0.0.1:${P:-8001}:8001", {"P": "18401"}, "127.0.0.1:18401:8001"),
    ],
)
def test_interpolation_follows_the_compose_specification(text, env, expected) -> None:
    assert interpolate(text, env) == expected


def test_a_required_variable_that_is_missing_names_itself() -> None:
    with pytest.raises(ComposeError, match="SECRET: set it"):
        interpolate({"a": ["${SECRET:?set it}"]}, {"SECRET": ""})


def test_durations() -> None:
    assert seconds("40s", 0) == 40
    assert seconds("1m30s", 0) == 90
    assert seconds("500ms", 0) == 0.5
    assert seconds(None, 7) == 7
    with pytest.raises(ComposeError):
        seconds("forty", 0)


# ---------------------------------------------------------------- the stack deploy-check runs


@pytest.fixture(scope="module")
def stack() -> dict:
    return load(FILES, SECRETS)


def test_the_standins_replace_only_images_and_broker_settings(stack) -> None:
    real = load([DEPLOY / "compose.yaml"], SECRETS)["services"]
    services = stack["services"]
    for name in ("kafka", "postgres", "prometheus"):
        assert services[name]["image"].startswith(
            f"localhost/earlyhelp-standin-{name}".replace("kafka", "broker")
        )
        # Everything else operators rely on is the real file's: volumes, environment, ports
        # (but the broker's JAAS file and data volume, which Tansu cannot use).
        for key in ("volumes", "environment", "ports", "restart"):
            if (name, key) != ("kafka", "volumes"):
                assert services[name].get(key) == real[name].get(key), (name, key)
    # The broker certificate of make-secrets.sh, for the TLS socat puts in front of Tansu.
    broker_certificate = "./secrets/kafka/broker:/etc/kafka/secrets:ro"
    assert services["kafka"]["volumes"] == [broker_certificate]
    assert broker_certificate in real["kafka"]["volumes"]
    assert "command" not in services["kafka"]
    # Grafana cannot be had here: it runs only under its profile.
    assert "grafana" not in services
    assert "grafana" in load(FILES, SECRETS, profiles=frozenset({"grafana"}))["services"]
    # The check's receiver, and plain http allowed to it only in the check's file.
    assert services["notifications"]["environment"]["EARLYHELP_NOTIFICATIONS_ALLOW_HTTP_WEBHOOKS"]
    assert "EARLYHELP_NOTIFICATIONS_ALLOW_HTTP_WEBHOOKS" not in real["notifications"]["environment"]


def test_the_broker_standin_runs_tls_without_sasl_and_the_real_stack_stays_on_sasl_ssl(
    stack,
) -> None:
    """Tansu has no SASL or ACLs (TLS is socat's): only the stand-in stack gives them up."""
    real = load([DEPLOY / "compose.yaml"], SECRETS)["services"]
    clients = ["topics", *PORTS]
    for name in clients:
        stood_in, actual = stack["services"][name]["environment"], real[name]["environment"]
        assert actual["EARLYHELP_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", name
        assert actual["EARLYHELP_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512", name
        assert actual["EARLYHELP_KAFKA_SASL_USERNAME"] == f"earlyhelp-{name}", name
        assert "kafka-ca.pem" in real[name]["secrets"], name
        assert stood_in["EARLYHELP_KAFKA_SECURITY_PROTOCOL"] == "SSL", name
        assert stood_in["EARLYHELP_KAFKA_SSL_CAFILE"] == "/run/secrets/kafka-ca.pem", name
        for setting in ("SASL_MECHANISM", "SASL_USERNAME", "SASL_PASSWORD_FILE"):
            assert stood_in[f"EARLYHELP_KAFKA_{setting}"] == "", (name, setting)
        # The CA (and the SMTP password) stay; the Kafka password is not mounted.
        assert stack["services"][name]["secrets"] == ["kafka-ca.pem"] + (
            ["smtp-password"] if name == "notifications" else []
        ), name
    # Every other hub setting is the real file's (and the check's own, for its receiver).
    check = load([DEPLOY / "check" / "compose.check.yaml"], SECRETS)["services"]
    for name in clients:
        stood_in, actual = stack["services"][name]["environment"], real[name]["environment"]
        assert {k: v for k, v in stood_in.items() if not k.startswith("EARLYHELP_KAFKA_S")} == {
            k: v for k, v in actual.items() if not k.startswith("EARLYHELP_KAFKA_S")
        } | check.get(name, {}).get("environment", {})
    assert real["kafka-setup"]["entrypoint"] == ["sh", "/etc/earlyhelp/kafka/setup.sh"]
    assert stack["services"]["kafka-setup"]["entrypoint"][0] == "python3"
    assert stack["services"]["kafka-setup"]["network_mode"] == "service:kafka"


def test_a_secret_is_mounted_read_only_where_compose_puts_it(stack) -> None:
    project = Project(name="p", document=stack, directory=DEPLOY, engine="podman")
    flags = project.run_arguments("notifications")
    secrets = (DEPLOY / "secrets").resolve()
    assert f"{secrets}/smtp-password:/run/secrets/smtp-password:ro" in flags
    assert f"{secrets}/kafka/ca.pem:/run/secrets/kafka-ca.pem:ro" in flags


def test_the_receiver_is_reachable_only_in_the_checks_own_subnet(stack) -> None:
    project = Project(name="p", document=stack, directory=DEPLOY, engine="podman")
    notifications = stack["services"]["notifications"]["environment"]
    assert project.subnet == "10.89.184.0/24"
    assert notifications["EARLYHELP_NOTIFICATIONS_WEBHOOK_ALLOWED_NETWORKS"] == project.subnet
    real = load([DEPLOY / "compose.yaml"], SECRETS)
    assert Project(name="p", document=real, directory=DEPLOY).subnet is None
    assert (
        "EARLYHELP_NOTIFICATIONS_WEBHOOK_ALLOWED_NETWORKS"
        not in (real["services"]["notifications"]["environment"])
    )


def test_jobs_start_after_what_they_need_and_services_after_their_jobs(stack) -> None:
    order = start_order(stack["services"])
    assert set(order) == set(stack["services"])
    for service in PORTS:
        assert order.index("kafka") < order.index("topics") < order.index(service)
        assert order.index("postgres") < order.index(f"{service}-migrate") < order.index(service)
        assert dependencies(stack["services"][service])[f"{service}-migrate"] == (
            "service_completed_successfully"
        )
    assert order.index("prometheus") > max(order.index(service) for service in PORTS)


def test_a_dependency_cycle_and_an_unknown_key_are_refused() -> None:
    with pytest.raises(ComposeError, match="cycle"):
        start_order({"a": {"depends_on": ["b"]}, "b": {"depends_on": ["a"]}})
    with pytest.raises(ComposeError, match="unsupported keys"):
        load([{"services": {"a": {"image": "x", "deploy": {}}}}], {})


def test_a_service_runs_with_the_hardening_compose_gives_it(stack) -> None:
    project = Project(name="p", document=stack, directory=DEPLOY, engine="podman")
    flags = project.run_arguments("intake")
    assert flags[0] == "run" and flags[-1] == "earlyhelp-intake:dev"
    for expected in (
        ["--read-only"],
        ["--tmpfs", "/tmp"],
        ["--cap-drop", "ALL"],
        ["--security-opt", "no-new-privileges"],
        ["--publish", "127.0.0.1:8001:8001"],
        ["--stop-timeout", "40"],
        ["--network", "p"],
        ["--network-alias", "intake"],
    ):
        assert any(flags[i : i + len(expected)] == expected for i in range(len(flags))), expected
    identities = flags[flags.index("--volume") + 1]
    assert identities == f"{(DEPLOY.parent / 'config' / 'identities.yaml').resolve()}:" + (
        "/etc/earlyhelp/identities/identities.yaml:ro"
    )
    assert "EARLYHELP_DATABASE_URL=postgresql+psycopg://intake:intake-pw@postgres:5432/intake" in (
        flags
    )


# ---------------------------------------------------------------- alert rules


@pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool is not installed "
    "(apt-get install prometheus); make deploy-check runs these in its container",
)
def test_alert_rules_pass_their_promtool_unit_tests(tmp_path: Path) -> None:
    folder = DEPLOY / "prometheus"
    for command in (
        ["check", "config", "prometheus.yml"],
        ["test", "rules", "alerts.test.yml"],
    ):
        result = subprocess.run(["promtool", *command], cwd=folder, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr

    # The tests can fail: a rule that waits longer than its test expects is caught.
    rules = yaml.safe_load((folder / "alerts.yml").read_text())
    for rule in rules["groups"][0]["rules"]:
        if rule["alert"] == "EarlyHelpServiceDown":
            rule["for"] = "10m"
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules))
    shutil.copy(folder / "alerts.test.yml", tmp_path)
    broken = subprocess.run(
        ["promtool", "test", "rules", "alerts.test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert broken.returncode != 0 and "EarlyHelpServiceDown" in broken.stdout + broken.stderr


# ---------------------------------------------------------------- network policies


# The other services' API pods each service calls: intake gathers subject access
# answers from the others; they fetch the token issuer's public keys from intake.
HUB_PEERS = {
    "intake": (
        {"earlyhelp-allocation", "earlyhelp-caseplan", "earlyhelp-notifications"},
        {8002, 8003, 8004},
    ),
    **{
        service: ({"earlyhelp-intake"}, {8001})
        for service in ("allocation", "caseplan", "notifications")
    },
}


def _peer_names_and_ports(rules: list[dict]) -> tuple[set[str], set[int]]:
    names: set[str] = set()
    for rule in rules:
        for peer in rule["to"]:
            selector = peer["podSelector"]
            # Only API pods: migration Jobs carry the same name but no server.
            labels = selector.get("matchLabels", {})
            expressions = {e["key"]: e for e in selector.get("matchExpressions", [])}
            if "app.kubernetes.io/name" in labels:
                names.add(labels["app.kubernetes.io/name"])
                assert labels["app.kubernetes.io/component"] == "api"
            else:
                names |= set(expressions["app.kubernetes.io/name"]["values"])
                assert expressions["app.kubernetes.io/component"]["values"] == ["api"]
    return names, {p["port"] for rule in rules for p in rule["ports"]}


@pytest.mark.parametrize("overlay", ["base", "overlays/production"])
def test_each_service_reaches_only_dns_its_database_the_broker_and_its_hub_peers(
    overlay: str,
) -> None:
    docs = render(DEPLOY / "k8s" / overlay)
    policies = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}
    deny = policies["earlyhelp-default-deny"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    dns = policies["earlyhelp-dns"]["egress"]
    assert {p["port"] for rule in dns for p in rule["ports"]} == {53}
    for service, port in PORTS.items():
        policy = policies[f"earlyhelp-{service}"]
        assert policy["podSelector"]["matchLabels"] == {
            "app.kubernetes.io/name": f"earlyhelp-{service}"
        }
        assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
        assert [p["port"] for rule in policy["ingress"] for p in rule["ports"]] == [port]
        cluster = [rule for rule in policy["egress"] if "to" not in rule]
        assert {p["port"] for rule in cluster for p in rule["ports"]} == {5432, 9092}
        peers = [r for r in policy["egress"] if any("podSelector" in t for t in r.get("to", []))]
        assert _peer_names_and_ports(peers) == HUB_PEERS[service], service
        internet = [r for r in policy["egress"] if any("ipBlock" in t for t in r.get("to", []))]
        if service == "notifications":
            (rule,) = internet
            (block,) = rule["to"]
            assert block["ipBlock"]["cidr"] == "0.0.0.0/0"
            assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"} <= set(
                block["ipBlock"]["except"]
            )
            assert {p["port"] for p in rule["ports"]} == {443, 587}
        else:
            assert internet == [], service
    # Every pod the manifests run is selected by a policy of its own name.
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job", "CronJob"):
            name = _template(doc)["metadata"]["labels"]["app.kubernetes.io/name"]
            assert name in policies, name


def _template(workload: dict) -> dict:
    """The pod template of a Deployment, a Job or a CronJob."""
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]


@pytest.mark.parametrize("overlay", ["base", "overlays/production"])
def test_every_workload_container_is_hardened_and_bounded(overlay: str) -> None:
    """Deployments, Jobs and the CronJob alike: the migration, topics, ACL and retention
    Jobs included."""
    workloads = [
        d for d in render(DEPLOY / "k8s" / overlay) if d["kind"] in ("Deployment", "Job", "CronJob")
    ]
    # A Deployment and a migration Job per service, the topics Job, the ACL Job and the
    # nightly retention CronJob.
    assert len(workloads) == 2 * len(PORTS) + 3
    for workload in workloads:
        pod = _template(workload)["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, workload["metadata"]["name"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert set(container["resources"]["limits"]) == {"cpu", "memory"}
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, workload["metadata"]["name"]


# ---------------------------------------------------------------- files a service needs to start

# Each service setting that names a file, and the repository's default for it. A service
# whose file is missing refuses to start (found by make deploy-check: allocation and
# notifications never started in compose or Kubernetes before these were mounted).
CONFIG_FILES = [
    ("allocation", "EARLYHELP_ALLOCATION_REGISTRY_FILE", "registry.yaml"),
    ("intake", "EARLYHELP_INTAKE_SCHOOLS_FILE", "schools.yaml"),
    ("intake", "EARLYHELP_INTAKE_SCHOOL_CALENDAR_FILE", "school-calendar.yaml"),
    ("notifications", "EARLYHELP_NOTIFICATIONS_POLICY_FILE", "sharing-policy.yaml"),
    ("notifications", "EARLYHELP_NOTIFICATIONS_SCHOOLS_FILE", "schools.yaml"),
]


@pytest.mark.parametrize(("service", "variable", "name"), CONFIG_FILES)
def test_compose_and_kubernetes_give_each_service_its_configuration_files(
    service, variable, name
) -> None:
    compose = load([DEPLOY / "compose.yaml"], SECRETS)["services"][service]
    path = compose["environment"][variable]
    (mount,) = [v for v in compose["volumes"] if isinstance(v, dict) and v["target"] == path]
    assert (DEPLOY / mount["source"]).resolve() == DEPLOY.parent / "config" / name
    assert mount["read_only"] is True

    docs = render(DEPLOY / "k8s" / "overlays" / "production")
    (deployment,) = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith(service)
    ]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (value,) = [e["value"] for e in container["env"] if e["name"] == variable]
    folder, _, key = value.rpartition("/")
    (volume_name,) = [m["name"] for m in container["volumeMounts"] if m["mountPath"] == folder]
    (volume,) = [v for v in pod["volumes"] if v["name"] == volume_name]
    (config_map,) = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == volume["configMap"]["name"]
    ]
    # The k8s copy is the repository's file (kustomize reads nothing outside its folder).
    assert config_map["data"][key] == (DEPLOY.parent / "config" / name).read_text()
