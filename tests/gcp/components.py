"""Real components for the Google tests, started once per session on loopback ports.

Each is started lazily by the first test that needs it and stopped when the session
ends (``config.add_cleanup``), so both tests/gcp and the conformance harness share them.

- the Pub/Sub emulator (Google's own, a Java program from the Cloud SDK);
- a local OIDC issuer (test RSA key, certificates served over HTTP);
- the Cloud Tasks test server (tests/gcp/tasks_server.py);
- functions-framework serving ``tests/gcp/function_source.py`` (HTTP and CloudEvent).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.conftest import free_port, missing_component

T = TypeVar("T")

EMULATOR_DIR = os.environ.get("PUBSUB_EMULATOR_DIR", "/usr/lib/google-cloud-sdk/platform/pubsub-emulator")
SOURCE = str(Path(__file__).with_name("function_source.py"))
_started: dict[str, Any] = {}
_lock = threading.Lock()


def _shared(config: pytest.Config, name: str, start: Any, stop: Any) -> Any:
    with _lock:
        if name not in _started:
            component = start()
            _started[name] = component

            def cleanup() -> None:
                _started.pop(name, None)
                stop(component)
            config.add_cleanup(cleanup)
        return _started[name]


def started(name: str) -> Any:
    """The shared component ``name`` if it is running, else None."""
    return _started.get(name)


class _JavaEmulator:
    """One of Google's Java emulators, started on a free loopback port; ``host`` is HOST:PORT."""

    name = ""

    def _start(self, command: list[str], port: int) -> None:
        self.host = f"127.0.0.1:{port}"
        self._log = open(os.devnull, "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://{self.host}/", timeout=2) as answer:
                    if b"Ok" in answer.read():
                        break
            except OSError:
                pass
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"the {self.name} emulator did not start on {self.host}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=15)
        self._log.close()


def _java(emulator: str) -> str:
    java = shutil.which("java") or ("/usr/bin/java" if os.path.exists("/usr/bin/java") else None)
    if java is None:
        missing_component(f"java (for the {emulator} emulator)", "apt-get install openjdk-17-jre-headless")
    return java


class PubSubEmulator(_JavaEmulator):
    """Google's Pub/Sub emulator on a free loopback port; ``host`` is HOST:PORT."""

    name = "Pub/Sub"

    def __init__(self) -> None:
        java = _java(self.name)
        jars = sorted(glob.glob(os.path.join(EMULATOR_DIR, "lib", "cloud-pubsub-emulator-*-all.jar")))
        if not jars:
            missing_component(f"the Pub/Sub emulator in {EMULATOR_DIR}",
                              "apt-get install google-cloud-cli-pubsub-emulator "
                              "(or set PUBSUB_EMULATOR_DIR)")
        port = free_port()
        self._start([java, "-jar", jars[-1], "--host=127.0.0.1", f"--port={port}"], port)


class FunctionServer:
    """A functions-framework app served by werkzeug on loopback; ``url`` ends with '/'."""

    def __init__(self, target: str, signature_type: str) -> None:
        try:
            import functions_framework
            from werkzeug.serving import make_server
        except ImportError:
            missing_component("functions-framework", 'pip install -e "adapters/gcp[test]"')
        app = functions_framework.create_app(target=target, source=SOURCE, signature_type=signature_type)
        port = free_port()
        self._server = make_server("127.0.0.1", port, app, threaded=True)
        self.url = f"http://127.0.0.1:{port}/"
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"function-{target}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def emulator(config: pytest.Config) -> PubSubEmulator:
    component: PubSubEmulator = _shared(config, "emulator", PubSubEmulator, PubSubEmulator.stop)
    return component


def issuer(config: pytest.Config) -> Any:
    from .oidc_issuer import OidcIssuer

    return _shared(config, "issuer", OidcIssuer, OidcIssuer.close)


def tasks_server(config: pytest.Config) -> Any:
    from .tasks_server import CloudTasksServer

    shared_issuer = issuer(config)
    return _shared(config, "tasks", lambda: CloudTasksServer(shared_issuer), CloudTasksServer.close)


def http_function(config: pytest.Config) -> FunctionServer:
    server: FunctionServer = _shared(config, "http-function", lambda: FunctionServer("http_entry", "http"),
                                     FunctionServer.stop)
    return server


def cloudevent_function(config: pytest.Config) -> FunctionServer:
    server: FunctionServer = _shared(config, "cloudevent-function",
                                     lambda: FunctionServer("cloudevent_entry", "cloudevent"),
                                     FunctionServer.stop)
    return server


FIRESTORE_EMULATOR_DIR = os.environ.get("FIRESTORE_EMULATOR_DIR",
                                        "/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator")


class FirestoreEmulator(_JavaEmulator):
    """Google's Firestore emulator (the Cloud SDK's jar) on a free loopback port."""

    name = "Firestore"

    def __init__(self) -> None:
        java = _java(self.name)
        jar = os.path.join(FIRESTORE_EMULATOR_DIR, "cloud-firestore-emulator.jar")
        if not os.path.exists(jar):
            missing_component(f"the Firestore emulator in {FIRESTORE_EMULATOR_DIR}",
                              "apt-get install google-cloud-cli-firestore-emulator (or set FIRESTORE_EMULATOR_DIR)")
        port = free_port()
        self._start([java, "-Duser.language=en", "-cp", jar,
                     "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
                     "start", "--host=127.0.0.1", f"--port={port}"], port)


def firestore_emulator(config: pytest.Config) -> FirestoreEmulator:
    """The shared Firestore emulator; sets ``$FIRESTORE_EMULATOR_HOST`` while it runs, as
    ``gcloud emulators firestore env-init`` would, so clients find it."""

    def start() -> FirestoreEmulator:
        component = FirestoreEmulator()
        os.environ["FIRESTORE_EMULATOR_HOST"] = component.host
        return component

    def stop(component: FirestoreEmulator) -> None:
        os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        component.stop()

    emulator_: FirestoreEmulator = _shared(config, "firestore", start, stop)
    return emulator_
