"""A real MQTT broker for the events tests and scripts/bench_events.py: Debian's mosquitto on a
free loopback port with its own config file (never the system service), and a subscriber that
collects what arrives, each message with the wall-clock time it arrived at."""
from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto"
                                          if Path("/usr/sbin/mosquitto").is_file() else None)
WHY_MISSING = ("Debian's mosquitto is not installed (scripts/ci_system_deps.sh installs it): "
               "the MQTT tests need a real broker")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """``mosquitto -c FILE`` on 127.0.0.1:PORT; ``stop``/``start`` again on the same port.
    ``passwords``: {user: password} makes it refuse anonymous clients. ``persistent``: the
    sessions of clients with ``clean_session=False`` and the messages queued for them outlive
    a stop (saved in ``folder``), as many as come."""

    def __init__(self, folder: Path, port: int | None = None,
                 passwords: dict[str, str] | None = None, tls: bool = False,
                 persistent: bool = False) -> None:
        self.port = port or free_port()
        self.tls_port = free_port() if tls else None
        self.folder = folder
        # mosquitto started by root drops to the user "mosquitto", who cannot read this folder:
        # it stays the user who started it
        lines = [f"listener {self.port} 127.0.0.1", f"user {getpass.getuser()}",
                 f"log_dest file {folder / 'mosquitto.log'}"]
        lines += (["persistence true", f"persistence_location {folder}/",
                   "max_queued_messages 0"] if persistent else ["persistence false"])
        if passwords:
            password_file = folder / "passwords"
            password_file.write_text("".join(f"{u}:{p}\n" for u, p in passwords.items()))
            password_file.chmod(0o600)
            subprocess.run(["mosquitto_passwd", "-U", str(password_file)], check=True,
                           capture_output=True)
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        if tls:  # a second listener, TLS with a server certificate signed by a CA of our own
            self.ca, cert, key = make_certificates(folder)
            lines += [f"listener {self.tls_port} 127.0.0.1", f"certfile {cert}",
                      f"keyfile {key}"]
        self.config = folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen | None = None

    def start(self) -> Broker:
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: {self.log()}") from None
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}: {self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def log(self) -> str:
        path = self.folder / "mosquitto.log"
        return path.read_text()[-2000:] if path.is_file() else ""

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"mqtts://localhost:{self.tls_port}"


def make_certificates(folder: Path, name: str = "localhost") -> tuple[Path, Path, Path]:
    """A self-signed CA and a server certificate for ``name`` (and 127.0.0.1) it signed:
    the CA's file, the certificate's and its key's (PEM)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgekit test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
              .issuer_name(ca_name).public_key(key.public_key())
              .serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5))
              .not_valid_after(now + datetime.timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName(
                  [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                  critical=False)
              .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[2].chmod(0o600)
    return paths


class Subscriber:
    """Collects every message on ``topic`` (default: all): (topic, payload, arrived, retained),
    ``arrived`` in seconds since the epoch (events carry their frame's capture time so).
    ``session``: a client id whose session a ``persistent`` broker keeps while this subscriber
    is away (its broker restarted), messages included."""

    def __init__(self, port: int, topic: str = "#", session: str | None = None,
                 **credentials: str) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, float, bool]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = (mqtt.Client(mqtt.CallbackAPIVersion.VERSION2) if session is None else
                       mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=session,
                                   clean_session=False))
        if credentials:
            self.client.username_pw_set(credentials["username"], credentials["password"])
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self._ready.set()
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise RuntimeError("the subscriber did not subscribe")

    def _message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload, time.time(),
                                  bool(message.retain)))

    def on(self, suffix: str) -> list[bytes]:
        with self._lock:
            return [payload for topic, payload, _, _ in self.messages if topic.endswith(suffix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
