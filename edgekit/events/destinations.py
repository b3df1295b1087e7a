"""Where events go, one class per kind, chosen by the ``--events`` URL:

- ``file.jsonl`` or ``file:///path/events.jsonl``: one JSON line per event, appended;
- ``http://`` / ``https://``: a JSON POST per event (a ``new`` one's snapshot as base64), a bounded
  number of tries with back-off (``outbox``), 4xx other than 408 and 429 is final;
- ``mqtt://HOST[:PORT][/BASE/TOPIC]`` / ``mqtts://``: paho-mqtt, QoS 1, the event as JSON on
  ``BASE/events/TYPE``, a ``new`` one's snapshot JPEG on ``BASE/snapshot/LABEL`` (retained),
  and an availability topic ``BASE/availability`` (``online``; ``offline`` as the last will).

Credentials never come from the command line (a URL with ``user:password@`` is refused): they
come from ``EDGEKIT_EVENTS_USERNAME`` / ``EDGEKIT_EVENTS_PASSWORD`` or from the file
``EDGEKIT_EVENTS_CREDENTIALS`` names (``username=...`` and ``password=...`` lines; the
deployed service's 0600 environment file holds either). The CA that signed an ``mqtts://``
broker's certificate: ``?ca=FILE`` on the URL or ``EDGEKIT_EVENTS_CA`` (default: the system's).

Options ride on the URL's query (``OPTIONS``): ``ca``, ``discovery=homeassistant`` (MQTT) and
``spool=DIR&spool_max=SIZE`` (any destination; ``outbox``); a webhook keeps its other query
parameters, an MQTT URL has no others.
"""
from __future__ import annotations

import base64
import json
import os
import re
import socket
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from edgekit.errors import UsageError
from edgekit.events.outbox import Destination, Retry, Undeliverable
from edgekit.events.rules import Event
from edgekit.helpers.text import redact

FLAG = "--events"
USER_ENV, PASSWORD_ENV = "EDGEKIT_EVENTS_USERNAME", "EDGEKIT_EVENTS_PASSWORD"
CREDENTIALS_ENV, CA_ENV = "EDGEKIT_EVENTS_CREDENTIALS", "EDGEKIT_EVENTS_CA"
HTTP_TIMEOUT_S = 5.0
MQTT_ACK_S = 5.0  # how long a QoS 1 publish waits for the broker's acknowledgement
MQTT_PORTS = {"mqtt": 1883, "mqtts": 8883}
_TOPIC_PART = re.compile(r"^[^+#\x00]+$")
OPTIONS = ("ca", "discovery", "spool", "spool_max")  # edgekit's own query parameters
DISCOVERY = ("homeassistant",)


def split_options(url: str) -> tuple[str, dict[str, str]]:
    """The URL without edgekit's own query parameters, and those parameters."""
    parts = urlsplit(url)
    kept, ours = [], {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in OPTIONS:
            if not value:
                raise UsageError(f"{FLAG} {url!r}: ?{key}= needs a value")
            ours[key] = value
        else:
            kept.append((key, value))
    if kept and parts.scheme.lower() in ("mqtt", "mqtts"):
        raise UsageError(f"{FLAG} {url!r}: unknown parameter {kept[0][0]!r}; an MQTT URL "
                         "takes ?ca=FILE, ?discovery=homeassistant, ?spool=DIR, ?spool_max=SIZE")
    return urlunsplit(parts._replace(query=urlencode(kept))), ours


def credentials(env: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """The username and password: from the environment, or from the credentials file."""
    env = os.environ if env is None else env
    user, password = env.get(USER_ENV), env.get(PASSWORD_ENV)
    path = env.get(CREDENTIALS_ENV)
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise UsageError(f"{CREDENTIALS_ENV}={path}: cannot read it "
                             f"({exc.strerror or exc})") from None
        values = dict(line.split("=", 1) for line in text.splitlines()
                      if "=" in line and not line.lstrip().startswith("#"))
        user = values.get("username", user)
        password = values.get("password", password)
    return (user or None), (password or None)


class FileDestination(Destination):
    """One JSON line per event, appended and flushed."""

    def __init__(self, path: Path) -> None:
        self.path, self.name = path, str(path)
        self._file: Any = None

    def start(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a")
        except OSError as exc:
            raise UsageError(f"{FLAG} {self.path}: cannot write it "
                             f"({exc.strerror or exc})") from None

    def deliver(self, event: Event) -> None:
        try:
            self._file.write(json.dumps(event.to_dict()) + "\n")
            self._file.flush()
        except OSError as exc:
            raise Undeliverable(f"cannot write ({exc.strerror or exc})") from None

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass  # the lines that could not be written were counted as dropped
            self._file = None


class WebhookDestination(Destination):
    """A JSON POST per event."""

    def __init__(self, url: str, env: Mapping[str, str] | None = None) -> None:
        self.url, self.name = url, redact(url)  # a token in the query is not shown
        user, password = credentials(env)
        self._headers = {"Content-Type": "application/json", "User-Agent": "edgekit"}
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"

    def deliver(self, event: Event) -> None:
        body = event.to_dict()
        jpeg = event.snapshot() if event.type == "new" else None
        if jpeg:
            body["snapshot_jpeg"] = base64.b64encode(jpeg).decode()
        request = urllib.request.Request(self.url, json.dumps(body).encode(), self._headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as answer:
                answer.read()
        except urllib.error.HTTPError as exc:
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                raise Undeliverable(f"the endpoint refused the event: HTTP {exc.code} "
                                    f"{exc.reason}") from None
            raise Retry(f"HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Retry(f"cannot reach it ({getattr(reason, 'strerror', None) or reason})") \
                from None


class MqttDestination(Destination):
    """QoS 1 publishes to an MQTT broker, with an availability topic and its last will."""

    def __init__(self, url: str, device: str, env: Mapping[str, str] | None = None,
                 ca: str | None = None, discovery: str | None = None) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "", parts.port or MQTT_PORTS[parts.scheme]
        self.tls = parts.scheme == "mqtts"
        self.base = parts.path.strip("/") or f"edgekit/{device}"
        check_topic(self.base)
        self.name = f"{parts.scheme}://{self.host}:{self.port}/{self.base}"
        self.availability = f"{self.base}/availability"
        self.device = device
        self._env = os.environ if env is None else env
        self._user, self._password = credentials(self._env)
        self.ca = ca or self._env.get(CA_ENV) or None
        if self.tls and self.ca is not None and not os.access(self.ca, os.R_OK):
            raise UsageError(f"{FLAG}: the CA file {self.ca} cannot be read; give the PEM file "
                             "of the CA that signed the broker's certificate")
        self.discovery = discovery
        self._labels: list[str] = []
        self._bundle = ""
        self._counts: Any = None  # with discovery: objects per class (discovery.Counts)
        self._config_topics: set[str] = set()  # with discovery: the configs published
        self._client: Any = None
        self._refused = ""  # why the broker refused the connection, if it did
        self._lock = threading.Lock()

    def describe(self, labels: list[str], bundle: str) -> None:
        self._labels, self._bundle = list(labels), bundle

    def start(self) -> None:
        if self.discovery:
            from edgekit.events.discovery import Counts

            self._counts = Counts(self._labels)
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise UsageError("MQTT events need paho-mqtt: pip install 'edgekit[events]'") \
                from None
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=f"edgekit-{socket.gethostname()}-{os.getpid()}")
        if self._user is not None:
            client.username_pw_set(self._user, self._password)
        if self.tls:
            client.tls_set(ca_certs=self.ca)
        client.reconnect = self._noting_why(client.reconnect)
        client.will_set(self.availability, "offline", qos=1, retain=True)
        client.reconnect_delay_set(0.5, 4)
        # ours wait in the outbox; a publish is 1 to 3, discovery's 2 per class at connection,
        # and 2 per class no longer present (emptied, once)
        client.max_queued_messages_set(8 + (2 * len(self._labels) + 64 if self.discovery else 0))
        client.on_connect = self._connected
        client.on_message = self._heard
        client.on_disconnect = self._disconnected
        client.connect_async(self.host, self.port, keepalive=30)
        client.loop_start()
        self._client = client

    def _noting_why(self, reconnect: Callable[[], Any]) -> Callable[[], Any]:
        """paho's reconnect, noting why it failed (paho's thread only retries): what deliver
        says, e.g. a certificate this machine does not trust."""
        def noted() -> Any:
            try:
                return reconnect()
            except ssl.SSLCertVerificationError as exc:
                self._refused = (f"the broker's certificate is not trusted "
                                 f"({exc.verify_message}); give the CA that signed it: "
                                 f"?ca=FILE on the URL or {CA_ENV}=FILE")
                raise
            except ssl.SSLError as exc:
                self._refused = f"TLS with the broker failed ({exc.reason or exc})"
                raise
            except OSError:
                self._refused = ""
                raise
        return noted

    def _connected(self, client: Any, userdata: Any, flags: Any, reason: Any,
                   properties: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            self._refused = f"the broker refused the connection: {reason}" + (
                f" (check {USER_ENV}/{PASSWORD_ENV} or {CREDENTIALS_ENV})"
                if "user" in str(reason).lower() or "authori" in str(reason).lower() else "")
            return
        self._refused = ""
        client.publish(self.availability, "online", qos=1, retain=True)
        if self._counts is not None:  # Home Assistant: the device, its sensors, their states
            from edgekit.events.discovery import configs, device_configs, state_topic

            published = configs(self.base, self.device, self._bundle,
                                list(self._counts.by_label), self.availability)
            self._config_topics = {topic for topic, _ in published}
            for topic, config in published:
                client.publish(topic, config, qos=1, retain=True)
            for label, count in list(self._counts.by_label.items()):
                client.publish(state_topic(self.base, label), str(count), qos=1, retain=True)
            client.subscribe(device_configs(self.device), qos=1)  # classes no longer present

    def _heard(self, client: Any, userdata: Any, message: Any) -> None:
        """A retained config of this device's: emptied when its class is no longer present."""
        from edgekit.events.discovery import removals

        if message.retain:
            for topic in removals(message.topic, message.payload, self._config_topics):
                client.publish(topic, b"", qos=1, retain=True)

    def _disconnected(self, client: Any, userdata: Any, flags: Any, reason: Any,
                      properties: Any = None) -> None:
        pass  # paho reconnects by itself (reconnect_delay_set); deliver() waits for it

    def deliver(self, event: Event) -> None:
        client = self._client
        if client is None or not client.is_connected():
            raise Retry(self._refused or f"cannot reach the broker at {self.host}:{self.port}")
        messages = [(f"{self.base}/events/{event.type}", json.dumps(event.to_dict()), False)]
        jpeg = event.snapshot() if event.type == "new" else None
        if jpeg:
            messages.append((f"{self.base}/snapshot/{event.label}", jpeg, True))
        count = None if self._counts is None else self._counts.after(event.type, event.label)
        if count is not None:
            from edgekit.events.discovery import state_topic

            messages.append((state_topic(self.base, event.label), str(count), True))
        sent = [client.publish(topic, payload, qos=1, retain=retain)
                for topic, payload, retain in messages]  # in flight together
        for info in sent:
            try:
                info.wait_for_publish(MQTT_ACK_S)
            except (RuntimeError, ValueError) as exc:
                raise Retry(f"the broker did not take it ({exc})") from None
            if not info.is_published():
                raise Retry("the broker did not acknowledge it in time")
        if count is not None:
            self._counts.by_label[event.label] = count

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        if client.is_connected():
            info = client.publish(self.availability, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(1.0)
            except (RuntimeError, ValueError):
                pass
        client.disconnect()
        client.loop_stop()


def check_topic(topic: str) -> None:
    """A topic to publish to has no wildcards (+, #) and no empty level."""
    if any(not _TOPIC_PART.match(level) for level in topic.split("/")):
        raise UsageError(f"{FLAG}: the topic {topic!r} has a wildcard (+ or #) or an empty "
                         "level; publish to a plain topic such as edgekit/front-door")


def parse_destination(url: str, device: str,
                      env: Mapping[str, str] | None = None) -> Destination:
    """The destination an ``--events`` value names; a malformed one is refused in one line."""
    if url.strip().endswith(".jsonl") and "://" not in url:
        return FileDestination(Path(url.strip()))
    text, options = split_options(url.strip())
    destination = _destination(url, text, options, device, env)
    if "spool_max" in options and "spool" not in options:
        raise UsageError(f"{FLAG} {url!r}: ?spool_max= goes with ?spool=DIR")
    if "spool" in options:
        from edgekit.events.settings import parse_size
        from edgekit.events.spool import SPOOL_MAX

        bound = parse_size(options["spool_max"], "?spool_max=") if "spool_max" in options \
            else SPOOL_MAX
        destination.spool = (options["spool"], bound)
    return destination


def _destination(url: str, text: str, options: dict[str, str], device: str,
                 env: Mapping[str, str] | None) -> Destination:
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if "discovery" in options and scheme not in ("mqtt", "mqtts"):
        raise UsageError(f"{FLAG} {url!r}: ?discovery= is for an MQTT broker")
    if scheme == "file":
        if not parts.path.endswith(".jsonl"):
            raise UsageError(f"{FLAG} {url}: a file destination is a .jsonl file")
        return FileDestination(Path(parts.path))
    if scheme not in ("http", "https", "mqtt", "mqtts"):
        raise UsageError(f"{FLAG} {url!r}: not a destination edgekit knows; give "
                         "mqtt://HOST[:PORT][/TOPIC], mqtts://..., http(s)://... or a "
                         "FILE.jsonl")
    try:
        host, _ = parts.hostname, parts.port  # a port that is not a number raises
    except ValueError:
        raise UsageError(f"{FLAG} {url!r}: the port is not a number from 1 to 65535") from None
    if not host:
        raise UsageError(f"{FLAG} {url!r}: no host; e.g. {scheme}://127.0.0.1")
    if parts.username or parts.password:
        raise UsageError(f"{FLAG}: credentials do not go on the command line (it is visible "
                         f"to every user of the machine); set {USER_ENV} and {PASSWORD_ENV}, "
                         f"or {CREDENTIALS_ENV}=FILE")
    if scheme in ("http", "https"):
        return WebhookDestination(text, env)
    if parts.fragment or url.strip().endswith("#"):  # '#' starts a fragment: the wildcard
        check_topic(f"{parts.path.strip('/')}#{parts.fragment}")
    if options.get("ca") and scheme != "mqtts":
        raise UsageError(f"{FLAG} {url!r}: ?ca= is the CA of an mqtts:// broker")
    if options.get("discovery", DISCOVERY[0]) not in DISCOVERY:
        raise UsageError(f"{FLAG} {url!r}: ?discovery= knows {', '.join(DISCOVERY)}")
    return MqttDestination(text, device, env, options.get("ca"), options.get("discovery"))
