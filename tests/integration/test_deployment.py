"""The image's entry point, run directly against this machine's PostgreSQL (where no Docker
daemon builds the image), and the pinned installs (Dockerfile, constraints.txt)."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path

from tests.api_harness import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def runtime_stage() -> str:
    return DOCKERFILE.split("AS runtime", 1)[1]


def image_environment() -> dict[str, str]:
    """The runtime stage's ENV lines, as the container sees them."""
    env: dict[str, str] = {}
    for block in re.findall(r"^ENV (.+?)(?<!\\)$", runtime_stage(), re.MULTILINE | re.DOTALL):
        for pair in shlex.split(block.replace("\\\n", " ")):
            name, _, value = pair.partition("=")
            env[name] = value
    return env


def image_command() -> list[str]:
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (.+)$", DOCKERFILE, re.MULTILINE).group(1))
    command = json.loads(re.search(r"^CMD (.+)$", DOCKERFILE, re.MULTILINE).group(1))
    return entrypoint + command


def test_the_image_entry_point_migrates_serves_and_stops_cleanly(database_url):
    command = image_command()
    assert command == ["antaca", "serve"]
    env = {**os.environ, **image_environment(), "PYTHONPATH": str(ROOT),
           "ANTACA_DATABASE_URL": database_url,
           # Where the image has /opt/antaca/sql and a volume for the keys:
           "ANTACA_SQL_DIR": str(ROOT / "sql"),
           "ANTACA_KEY_DIR": tempfile.mkdtemp(prefix="antaca-image-keys-"),
           "ANTACA_HOST": "127.0.0.1", "ANTACA_PORT": str(free_port()),
           "ANTACA_TLS_PORT": str(free_port()), "ANTACA_ISO8583_PORT": "0",
           "ANTACA_METRICS_PORT": "0"}
    executable = Path(sys.executable).parent / command[0]
    service = subprocess.Popen([str(executable), *command[1:]], env=env, cwd=tempfile.gettempdir(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = service.stdout.readline()
            lines.append(line)
            if not line or "antaca listening" in line:
                break
        assert "antaca listening" in lines[-1], "".join(lines)
        with urllib.request.urlopen(f"http://127.0.0.1:{env['ANTACA_PORT']}/health") as answer:
            assert answer.status == 200
            assert answer.headers["Server"] == "antaca"
    finally:
        service.send_signal(signal.SIGTERM)
        output, _ = service.communicate(timeout=60)
    assert service.returncode == 0, output
    assert "Traceback" not in "".join(lines) + output


def constraints() -> tuple[dict[str, str], dict[str, str]]:
    """constraints.txt's (runtime, test) sections: canonical name to version."""
    sections: list[dict[str, str]] = [{}, {}]
    section = -1
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.startswith("# The service's"):
            section = 0
        elif line.startswith("# What the tests add"):
            section = 1
        elif line and not line.startswith("#"):
            name, version = line.split("==")
            sections[section][canonical(name)] = version
    return sections[0], sections[1]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[\s;<>=!~\[]", name, maxsplit=1)[0]).lower()


def test_every_dependency_is_pinned_and_test_packages_stay_out_of_the_runtime_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime, test = constraints()
    assert {canonical(r) for r in project["dependencies"]} <= set(runtime)
    test_direct = {canonical(r) for r in project["optional-dependencies"]["test"]}
    assert test_direct <= set(test) and not test_direct & set(runtime)
    assert not set(runtime) & set(test)


def test_make_and_the_image_install_with_the_constraints_and_the_image_without_tests():
    makefile = (ROOT / "Makefile").read_text()
    assert makefile.count("-c $(CONSTRAINTS)") == 2
    assert "-c constraints.txt" in DOCKERFILE.split("AS runtime")[0]
    stage = runtime_stage()
    assert "-c /tmp/constraints.txt antaca" in stage and "[test]" not in DOCKERFILE
    assert re.search(r"^USER antaca$", stage, re.MULTILINE)  # not root
