"""The broker's ACLs and principals in deploy/, checked against the service definitions.

The ACL script is generated from the definitions (`earlyhelp kafka-acls`); these
tests keep the committed copies current, check that the grants say what issue 15
asks (a service writes only its own topic and the DLQs of what it consumes and
reads only what it consumes; a partner reads only its own topic), and that compose
and Kubernetes give each process the principal the grants are for.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from hub.cli import SERVICES, load_definition
from hub.contracts.topics import (
    SERVICE_TOPICS,
    dlq_topic,
    hub_topics,
    partner_topic,
    topic_owner,
)
from hub.kafka_acls import (
    PARTNER_TOPIC_PREFIX,
    TOPICS_JOB_PRINCIPAL,
    partner_grants,
    render_script,
    service_grants,
    service_principal,
)
from tests.deploy.test_manifests import render

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_BASE = DEPLOY / "k8s" / "base"
DEFINITIONS = [load_definition(service) for service in SERVICES]


def _grants_of(principal: str):
    return [g for g in service_grants(DEFINITIONS) if g.principal == principal]


def _topics(grants, operation: str, *, prefixed: bool = False) -> set[str]:
    return {
        g.name
        for g in grants
        if g.resource == "topic" and operation in g.operations and g.prefixed == prefixed
    }


@pytest.mark.parametrize("committed", [DEPLOY / "kafka" / "acls.sh", K8S_BASE / "kafka-acls.sh"])
def test_the_committed_acl_script_is_the_generated_one(committed: Path) -> None:
    assert committed.read_text() == render_script(DEFINITIONS), (
        f"{committed.relative_to(ROOT)} is stale: `earlyhelp kafka-acls > {committed}`"
    )


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda d: d.name)
def test_a_service_writes_its_own_topic_and_its_dlqs_and_reads_what_it_consumes(
    definition,
) -> None:
    grants = _grants_of(service_principal(definition.name))
    own = {definition.topic} if definition.topic else set()
    assert _topics(grants, "Write") == own | {dlq_topic(t) for t in definition.consumes}
    assert _topics(grants, "Read") == set(definition.consumes)
    groups = {g.name for g in grants if g.resource == "group"}
    assert groups == ({f"earlyhelp-{definition.name}"} if definition.consumes else set())
    partner_topics = _topics(grants, "Write", prefixed=True)
    assert partner_topics == (
        {PARTNER_TOPIC_PREFIX} if definition.name == "notifications" else set()
    )
    for topic in _topics(grants, "Write") & set(SERVICE_TOPICS.values()):
        assert topic_owner(topic) == definition.name


def test_nobody_but_its_owner_writes_a_service_topic() -> None:
    for topic, owner in ((t, topic_owner(t)) for t in SERVICE_TOPICS.values()):
        writers = {
            g.principal
            for g in service_grants(DEFINITIONS)
            if g.resource == "topic" and g.name == topic and "Write" in g.operations
        }
        assert writers == {service_principal(owner)}, topic


def test_the_topics_job_creates_the_hub_topics_and_writes_nothing() -> None:
    grants = _grants_of(TOPICS_JOB_PRINCIPAL)
    assert _topics(grants, "Create") == set(hub_topics())
    assert not _topics(grants, "Write") and not _topics(grants, "Read")


def test_a_partner_reads_only_its_own_topic() -> None:
    grants = partner_grants("harlesden-primary-school")
    assert {(g.resource, g.name, g.operations, g.prefixed) for g in grants} == {
        ("topic", partner_topic("harlesden-primary-school"), ("Read",), False),
        ("group", "harlesden-primary-school", ("Read",), True),
    }
    script = render_script(DEFINITIONS)
    loop = script.split('for partner in "$@"; do', 1)[1]
    assert "--topic earlyhelp.partner.$partner.v1 --resource-pattern-type literal" in loop
    assert "--operation Write" not in loop


def _principals() -> set[str]:
    return {g.principal for g in service_grants(DEFINITIONS)}


def test_compose_gives_each_process_its_own_principal_and_password() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services, secrets = compose["services"], compose["secrets"]
    expected = {service: service_principal(service) for service in SERVICES}
    expected["topics"] = TOPICS_JOB_PRINCIPAL
    for name, principal in expected.items():
        environment = services[name]["environment"]
        assert environment["EARLYHELP_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert environment["EARLYHELP_KAFKA_SASL_USERNAME"] == principal
        (password,) = [
            s
            for s in services[name]["secrets"]
            if isinstance(s, dict) and s["target"] == "kafka-password"
        ]
        assert secrets[password["source"]]["file"] == f"./secrets/kafka/users/{principal}"
    assert set(expected.values()) == _principals()
    made = re.search(
        r"for principal in (.*?); do", (DEPLOY / "kafka" / "make-secrets.sh").read_text(), re.S
    )
    assert set(made.group(1).replace("\\", " ").split()) == _principals()
    kafka = services["kafka"]["environment"]
    assert kafka["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert kafka["KAFKA_ADVERTISED_LISTENERS"].startswith("SASL_SSL://kafka:9092")


def test_compose_mounts_no_demo_identities() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    assert "config/identities.yaml" not in text.replace("(config/identities.yaml)", "")
    assert "${EARLYHELP_IDENTITIES_PATH:?" in text


def test_kubernetes_gives_each_process_its_own_principal() -> None:
    secrets = {
        doc["metadata"]["name"]: doc["stringData"]
        for doc in yaml.safe_load_all((K8S_BASE / "secrets.example.yaml").read_text())
    }
    clients = {}
    for doc in render(K8S_BASE):
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []):
            sources = {s["configMapRef"]["name"] for s in container.get("envFrom", [])}
            if "earlyhelp-kafka-client" not in sources:
                continue
            (username,) = [
                e for e in container["env"] if e["name"] == "EARLYHELP_KAFKA_SASL_USERNAME"
            ]
            (credentials,) = [v for v in pod["volumes"] if v["name"] == "kafka-credentials"]
            secret = username["valueFrom"]["secretKeyRef"]["name"]
            assert credentials["secret"]["secretName"] == secret
            clients[doc["metadata"]["name"]] = secrets[secret]["username"]
    expected = {f"earlyhelp-{service}": service_principal(service) for service in SERVICES}
    expected["earlyhelp-topics"] = TOPICS_JOB_PRINCIPAL
    assert clients == expected
