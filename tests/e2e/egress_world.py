"""The outside world of the egress tests, without the internet: a Docker network of the test's own
with two web servers in containers (Node from the sandbox image, running
executor/tests/support/egress_server.mjs: HTTP on 80, HTTPS on 443, each request logged as a JSON
line and echoed back), certificates from a CA of the test's own, and the executor settings that
point the egress proxy at them.

`api.allowed.test` and `other.allowed.test` are the first server, `evil.forbidden.test` the second.
The names reach the proxy through MCP_SANDBOX_EGRESS_RESOLVE (there is no DNS for them), and the
network's subnet is allowed with MCP_SANDBOX_EGRESS_ALLOWED_NETWORKS: it is private and the host's own.
"""

from __future__ import annotations

import datetime
import json
import time
import uuid
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from docker_probe import SANDBOX_IMAGE, docker
from stack import REPO_ROOT

ALLOWED = "api.allowed.test"
OTHER = "other.allowed.test"
FORBIDDEN = "evil.forbidden.test"
CEILING = "*.allowed.test,evil.forbidden.test"
SERVER_SCRIPT = REPO_ROOT / "executor" / "tests" / "support" / "egress_server.mjs"
LABEL = "dynamic-mcp.test=egress-e2e"
READY_WITHIN = 20.0


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def certificates(names: list[str]) -> tuple[str, str, str]:
    """A CA, and a server certificate (with its key) for `names` signed by it, in PEM."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("dynamic-mcp egress e2e CA"))
        .issuer_name(_name("dynamic-mcp egress e2e CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = lambda cert: cert.public_bytes(serialization.Encoding.PEM).decode()  # noqa: E731
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return pem(ca), pem(leaf), key_pem


class EgressWorld:
    def __init__(self, directory: Path):
        self.suffix = uuid.uuid4().hex[:10]
        self.network = f"dynamic-mcp-egress-e2e-{self.suffix}"
        self.containers: list[str] = []
        self.ca_pem, cert_pem, key_pem = certificates([ALLOWED, OTHER, FORBIDDEN])
        self.ca_file = directory / "egress-test-ca.pem"
        self.ca_file.write_text(self.ca_pem)
        docker("network", "create", "--label", LABEL, self.network)
        config = json.loads(docker("network", "inspect", self.network))[0]["IPAM"]["Config"]
        self.subnet = config[0]["Subnet"]
        self.allowed = self._server("allowed", cert_pem, key_pem)
        self.forbidden = self._server("forbidden", cert_pem, key_pem)

    def _server(self, role: str, cert: str, key: str) -> str:
        """Starts one server; returns its container id."""
        container = docker(
            "run", "-d", "--init", "--label", LABEL, "--name", f"dynamic-mcp-egress-e2e-{role}-{self.suffix}",
            "--network", self.network, "--user", "0:0", "--entrypoint", "node",
            "-e", f"TLS_CERT={cert}", "-e", f"TLS_KEY={key}",
            "-v", f"{SERVER_SCRIPT}:/server.mjs:ro", SANDBOX_IMAGE, "/server.mjs",
        ).strip()
        self.containers.append(container)
        deadline = time.monotonic() + READY_WITHIN
        while not any(line.get("ready") for line in self._lines(container)):
            assert time.monotonic() < deadline, f"the {role} test server did not start: {self._lines(container)}"
            time.sleep(0.1)
        return container

    def ip(self, container: str) -> str:
        return json.loads(docker("inspect", container))[0]["NetworkSettings"]["Networks"][self.network]["IPAddress"]

    def executor_settings(self) -> dict[str, str]:
        allowed, forbidden = self.ip(self.allowed), self.ip(self.forbidden)
        return {
            "MCP_SANDBOX_EGRESS_ALLOWED_HOSTS": CEILING,
            "MCP_SANDBOX_EGRESS_ALLOWED_NETWORKS": self.subnet,
            "MCP_SANDBOX_EGRESS_RESOLVE": f"{ALLOWED}={allowed},{OTHER}={allowed},{FORBIDDEN}={forbidden}",
            "MCP_SANDBOX_EGRESS_UPSTREAM_CA_FILE": str(self.ca_file),
        }

    def received(self, container: str) -> list[dict]:
        """Every request the server in `container` received so far."""
        return [line for line in self._lines(container) if "ready" not in line]

    def _lines(self, container: str) -> list[dict]:
        lines = []
        for text in docker("logs", container).splitlines():
            try:
                lines.append(json.loads(text))
            except json.JSONDecodeError:
                continue
        return lines

    def close(self) -> None:
        if self.containers:
            docker("rm", "-f", *self.containers)
        docker("network", "rm", self.network)
