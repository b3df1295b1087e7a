"""Events (edgekit.events): made from tracks with their filters and zones, and delivered to a
file, a webhook receiver on loopback and a real mosquitto broker on loopback, through bounded
queues that never hold the loop, drops counted."""
from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_clean_error, run_cli
from mqtt_broker import MOSQUITTO, WHY_MISSING, Broker, Subscriber, free_port

from edgekit.errors import UsageError
from edgekit.events.destinations import (
    FileDestination,
    MqttDestination,
    WebhookDestination,
    parse_destination,
)
from edgekit.events.outbox import Destination, Outbox, Retry
from edgekit.events.rules import Event, EventMaker, Rules
from edgekit.events.tracking import Tracked
from edgekit.events.zones import parse_zone
from edgekit.tasks.detection import Detection

needs_broker = pytest.mark.skipif(MOSQUITTO is None, reason=WHY_MISSING)
pytest.importorskip("paho.mqtt")


def _tracked(track: int, x: float, label: str = "7", score: float = 0.9) -> Tracked:
    return Tracked(track, Detection(label, int(label), score, (x, 100.0, x + 40, 160.0)))


def _event(n: int = 1, kind: str = "new") -> Event:
    return Event(kind, n, "7", 7, 0.9, (10.0, 10.0, 50.0, 70.0), n, time.time(), "cam",
                 "bundle", id=f"e{n}", captured_ns=time.perf_counter_ns(),
                 image=np.zeros((120, 160, 3), np.uint8))


def _wait(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# ---------------------------------------------------------------------------- rules and zones


def test_new_update_end_with_debounce_and_a_bounded_update_rate() -> None:
    maker = EventMaker(Rules(min_frames=3, update_s=0.05, end_frames=2), "cam", "bundle")
    made = []
    for frame in range(6):
        made += maker.frame(frame, time.perf_counter_ns(), np.zeros((4, 4, 3), np.uint8),
                            [_tracked(1, 10 + frame)])
        time.sleep(0.02)
    kinds = [e.type for e in made]
    assert kinds[0] == "new" and kinds.count("new") == 1
    assert 1 <= kinds.count("update") <= 2  # 4 frames after new, one update per 50 ms at most
    ended = maker.frame(6, time.perf_counter_ns(), None, [])
    assert not ended
    ended = maker.frame(7, time.perf_counter_ns(), None, [])
    assert [e.type for e in ended] == ["end"] and ended[0].track_id == 1
    # only a new event has a snapshot: the others do not hold a frame while they wait
    assert [e.image is not None for e in made + ended] == [k == "new" for k in kinds + ["end"]]
    assert not maker.finish()


def test_filters_classes_and_scores_and_a_short_track_never_announced() -> None:
    maker = EventMaker(Rules(classes=frozenset({"3"}), min_score=0.5, min_frames=2), "c", "b")
    events = maker.frame(0, time.perf_counter_ns(), None,
                         [_tracked(1, 0), _tracked(2, 100, "3", 0.4), _tracked(3, 200, "3")])
    events += maker.frame(1, time.perf_counter_ns(), None,
                          [_tracked(1, 0), _tracked(2, 100, "3", 0.4), _tracked(3, 200, "3")])
    assert [(e.type, e.track_id) for e in events] == [("new", 3)]
    once = EventMaker(Rules(min_frames=5), "c", "b")
    once.frame(0, time.perf_counter_ns(), None, [_tracked(9, 0)])
    assert not once.finish()  # never confirmed: no new, so no end


def test_zones_say_where_an_object_stands() -> None:
    door = parse_zone("door=0,0,100,0,100,200,0,200")
    maker = EventMaker(Rules(zones=(door,)), "c", "b")
    events = maker.frame(0, time.perf_counter_ns(), None, [_tracked(1, 20), _tracked(2, 300)])
    assert [(e.track_id, e.zone) for e in events] == [(1, "door")]
    door.check_inside(640, 480)
    with pytest.raises(UsageError, match="outside the 64x48 frame"):
        door.check_inside(64, 48)


@pytest.mark.parametrize("text, needle", [
    ("door=0,0,10,10", "three points or more"),
    ("door=0,0,10,10,0,0,10,10", "three points or more"),
    ("door=0,0,10,x,5,5", "numbers"),
    ("0,0,10,0,10,10", "NAME="),
    ("door=0,0,10,0,10", "x,y pairs"),
])
def test_a_bad_zone_is_refused_in_one_line(text: str, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        parse_zone(text)


# ---------------------------------------------------------------------------- destinations


@pytest.mark.parametrize("url, needle", [
    ("ftp://host/x", "not a destination"),
    ("mqtt://", "no host"),
    ("mqtt://host:99999", "port"),
    ("mqtt://host/cams/+/front", "wildcard"),
    ("mqtt://host/cams/#", "wildcard"),
    ("mqtt://me:secret@host", "credentials do not go on the command line"),
    ("https://me:secret@host/hook", "credentials do not go on the command line"),
    ("file:///tmp/events.txt", ".jsonl"),
])
def test_a_malformed_destination_is_refused_in_one_line(url: str, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        parse_destination(url, "cam")


def test_credentials_from_the_environment_or_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "credentials"
    secret.write_text("username=cam\npassword=s3cret\n")
    hook = parse_destination("http://127.0.0.1:1/h", "cam",
                             {"EDGEKIT_EVENTS_CREDENTIALS": str(secret)})
    assert isinstance(hook, WebhookDestination)
    assert hook._headers["Authorization"] == "Basic " + base64.b64encode(b"cam:s3cret").decode()
    mqtt = parse_destination("mqtt://127.0.0.1", "cam", {"EDGEKIT_EVENTS_USERNAME": "u",
                                                         "EDGEKIT_EVENTS_PASSWORD": "p"})
    assert isinstance(mqtt, MqttDestination) and (mqtt._user, mqtt._password) == ("u", "p")
    assert mqtt.base == "edgekit/cam" and "secret" not in mqtt.name


class _Down(Destination):
    """Down until ``up`` is set; records what it delivered."""

    name = "test://down"

    def __init__(self) -> None:
        self.up = threading.Event()
        self.got: list[str] = []

    def deliver(self, event: Event) -> None:
        if not self.up.is_set():
            raise Retry("down")
        self.got.append(event.id)


def test_a_destination_that_is_down_never_holds_the_caller_and_drops_are_counted() -> None:
    said: list[str] = []
    down = _Down()
    outbox = Outbox(down, size=50, say=said.append)
    outbox.start()
    started = time.perf_counter()
    for n in range(200):
        outbox.put(_event(n))
    assert time.perf_counter() - started < 0.1  # 200 puts, the destination down
    assert _wait(lambda: outbox.failures >= 1)
    assert len(said) == 1 and "test://down: down; the loop goes on" in said[0]
    down.up.set()
    assert _wait(lambda: outbox.queued == 0 and outbox.delivered >= 50)
    outbox.close(1)
    c = outbox.counters()
    assert c["delivered"] + c["dropped"] == 200 and c["dropped"] >= 149
    assert down.got[-1] == "e199"  # the newest kept, the oldest let go
    assert said[-1] == "events: test://down: delivering again"


def test_the_file_destination(tmp_path: Path) -> None:
    path = tmp_path / "out" / "events.jsonl"
    outbox = Outbox(parse_destination(str(path), "cam"))
    assert isinstance(outbox.destination, FileDestination)
    outbox.start()
    outbox.put(_event(1))
    outbox.put(_event(2, "end"))
    outbox.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(e["id"], e["type"]) for e in lines] == [("e1", "new"), ("e2", "end")]
    assert lines[0]["device"] == "cam" and lines[0]["box"] == [10.0, 10.0, 50.0, 70.0]


class _Receiver:
    """A webhook receiver on loopback: answers each POST with the next status in ``codes``."""

    def __init__(self, codes: list[int] | None = None) -> None:
        self.bodies: list[dict] = []
        self.codes = list(codes or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                code = receiver.codes.pop(0) if receiver.codes else 200
                if code == 200:
                    receiver.bodies.append(json.loads(body))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_webhook_retries_a_server_error_and_drops_what_it_refuses() -> None:
    receiver = _Receiver([503, 400])
    said: list[str] = []
    try:
        outbox = Outbox(parse_destination(receiver.url, "cam"), say=said.append)
        outbox.start()
        outbox.put(_event(1))  # 503, then 400: refused, dropped
        outbox.put(_event(2))  # 200
        assert _wait(lambda: outbox.delivered == 1)
        outbox.close()
    finally:
        receiver.close()
    assert outbox.counters()["dropped"] == 1
    assert [b["id"] for b in receiver.bodies] == ["e2"]
    jpeg = base64.b64decode(receiver.bodies[0]["snapshot_jpeg"])
    assert jpeg[:2] == b"\xff\xd8"
    assert any("HTTP 503" in line for line in said) and any("HTTP 400" in line for line in said)


def test_the_webhook_down_at_first_gets_every_event_when_it_comes_up() -> None:
    port = free_port()
    outbox = Outbox(parse_destination(f"http://127.0.0.1:{port}/hook", "cam"), say=lambda _: None)
    outbox.start()
    for n in range(3):
        outbox.put(_event(n))
    assert _wait(lambda: outbox.failures >= 1)
    receiver = _Receiver()
    receiver.server.server_close()
    receiver.server = ThreadingHTTPServer(("127.0.0.1", port), receiver.server.RequestHandlerClass)
    threading.Thread(target=receiver.server.serve_forever, daemon=True).start()
    try:
        assert _wait(lambda: outbox.delivered == 3, 20)
        outbox.close()
    finally:
        receiver.close()
    assert [b["id"] for b in receiver.bodies] == ["e0", "e1", "e2"]


# ---------------------------------------------------------------------------- MQTT


@needs_broker
def test_mqtt_events_snapshots_and_availability(tmp_path: Path) -> None:
    broker = Broker(tmp_path).start()
    watcher = Subscriber(broker.port)
    try:
        outbox = Outbox(parse_destination(f"{broker.url}/site/front", "cam"))
        outbox.start()
        outbox.put(_event(1))
        outbox.put(_event(2, "end"))
        assert _wait(lambda: outbox.delivered == 2)
        assert _wait(lambda: len(watcher.on("/events/end")) == 1)
        outbox.close()
        assert _wait(lambda: watcher.on("site/front/availability")[-1:] == [b"offline"])
    finally:
        watcher.close()
        broker.stop()
    assert watcher.on("site/front/availability")[0] == b"online"
    new = json.loads(watcher.on("site/front/events/new")[0])
    assert (new["id"], new["track"], new["label"]) == ("e1", 1, "7")
    assert watcher.on("site/front/snapshot/7")[0][:2] == b"\xff\xd8"


@needs_broker
def test_a_broker_down_at_start_gets_the_events_when_it_starts(tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    said: list[str] = []
    outbox = Outbox(parse_destination(broker.url, "cam"), say=said.append)
    outbox.start()
    for n in range(5):
        outbox.put(_event(n))
    assert _wait(lambda: outbox.failures >= 1)
    assert len(said) == 1 and "cannot reach the broker" in said[0]
    broker.start()
    watcher = Subscriber(broker.port)
    try:
        assert _wait(lambda: outbox.delivered == 5, 30)
        assert _wait(lambda: len(watcher.on("/events/new")) == 5)
        outbox.close()
    finally:
        watcher.close()
        broker.stop()
    assert [json.loads(m)["id"] for m in watcher.on("/events/new")] == [f"e{n}" for n in range(5)]


@needs_broker
def test_bad_credentials_are_said_once_and_the_events_counted(tmp_path: Path) -> None:
    broker = Broker(tmp_path, passwords={"cam": "right"}).start()
    said: list[str] = []
    try:
        outbox = Outbox(parse_destination(broker.url, "cam", {
            "EDGEKIT_EVENTS_USERNAME": "cam", "EDGEKIT_EVENTS_PASSWORD": "wrong"}),
            say=said.append)
        outbox.start()
        outbox.put(_event(1))
        assert _wait(lambda: any("refused" in line for line in said), 15)
        outbox.close(0.5)
    finally:
        broker.stop()
    assert outbox.counters()["dropped"] == 1 and outbox.counters()["delivered"] == 0
    refused = [line for line in said if "refused" in line]
    assert "EDGEKIT_EVENTS_USERNAME" in refused[0]


@needs_broker
def test_home_assistant_discovery_a_device_with_a_sensor_per_class(tmp_path: Path) -> None:
    """?discovery=homeassistant: a retained config per class under homeassistant/ (one device,
    the availability topic), and each class's count of objects as the events are delivered."""
    broker = Broker(tmp_path).start()
    try:
        outbox = Outbox(parse_destination(f"{broker.url}/yard?discovery=homeassistant",
                                          "Front cam", {}))
        outbox.destination.describe(["7", "cat"], "digit_detector")
        outbox.start()
        outbox.put(_event(1))  # a "7" appears
        outbox.put(_event(2))  # another
        outbox.put(_event(1, "end"))  # one goes
        assert _wait(lambda: outbox.delivered == 3)
        late = Subscriber(broker.port)  # Home Assistant starting later: the retained ones
        try:
            assert _wait(lambda: len(late.on("/config")) == 2 and late.on("yard/state/7"))
            configs = {t: (json.loads(p), retained) for t, p, _, retained in late.messages
                       if t.startswith("homeassistant/")}
            state = late.on("yard/state/7")[-1]
        finally:
            late.close()
        outbox.close()
    finally:
        broker.stop()
    assert sorted(configs) == ["homeassistant/sensor/edgekit_front_cam/7/config",
                               "homeassistant/sensor/edgekit_front_cam/cat/config"]
    config, retained = configs["homeassistant/sensor/edgekit_front_cam/cat/config"]
    assert retained and config["state_topic"] == "yard/state/cat"
    assert config["availability_topic"] == "yard/availability"
    assert config["device"]["identifiers"] == ["edgekit_front_cam"]
    assert config["device"]["model"] == "digit_detector" and config["unique_id"].endswith("cat")
    assert state == b"1"  # two new, one end
    with pytest.raises(UsageError, match="discovery= knows homeassistant"):
        parse_destination(f"{broker.url}?discovery=openhab", "cam", {})
    with pytest.raises(UsageError, match="for an MQTT broker"):
        parse_destination("http://127.0.0.1/h?discovery=homeassistant", "cam", {})


@needs_broker
def test_discovery_removes_the_sensors_of_classes_no_longer_present(tmp_path: Path) -> None:
    """A camera that ran a bundle with a "dog" class, then one without: at start the second
    empties the retained config of "dog" (Home Assistant's way to remove an entity) and its
    state topic; the present classes' configs stay, and another device's are left alone."""
    broker = Broker(tmp_path).start()
    url = f"{broker.url}/yard?discovery=homeassistant"
    other = "homeassistant/sensor/edgekit_back_cam/dog/config"
    try:
        neighbour = Subscriber(broker.port)
        neighbour.client.publish(other, '{"state_topic": "back/state/dog"}', qos=1,
                                 retain=True).wait_for_publish(5)
        neighbour.close()
        for labels in (["7", "cat", "dog"], ["7", "cat"]):
            watch = Subscriber(broker.port, "homeassistant/#")
            outbox = Outbox(parse_destination(url, "Front cam", {}))
            outbox.destination.describe(labels, "digit_detector")
            outbox.start()
            outbox.put(_event(1))
            assert _wait(lambda o=outbox: o.delivered == 1)
            if labels == ["7", "cat"]:  # the removal is seen live
                assert _wait(lambda w=watch: b"" in w.on("edgekit_front_cam/dog/config"))
            watch.close()
            outbox.close()
        late = Subscriber(broker.port)  # Home Assistant starting later: what is retained
        try:
            assert _wait(lambda: len(late.on("/config")) == 3 and late.on("yard/state/cat"))
            time.sleep(0.3)  # retained ones come at once: nothing else is on its way
            retained = {t for t, payload, _, kept in late.messages if kept and payload}
        finally:
            late.close()
    finally:
        broker.stop()
    assert sorted(t for t in retained if t.endswith("/config")) == [
        other, "homeassistant/sensor/edgekit_front_cam/7/config",
        "homeassistant/sensor/edgekit_front_cam/cat/config"]
    assert "yard/state/cat" in retained and "yard/state/7" in retained
    assert "yard/state/dog" not in retained


@needs_broker
def test_the_disk_spool_keeps_what_the_queue_cannot_while_the_broker_is_down(
        tmp_path: Path) -> None:
    """?spool=DIR: with the broker stopped, 3 events wait in memory and the next go to the
    bounded folder until it is full (the rest counted as dropped); the broker started, all
    that was kept is delivered oldest first. Events left at the end of a run stay in the spool
    and the next run delivers them."""
    broker = Broker(tmp_path)
    spool = tmp_path / "spool"
    url = f"{broker.url}/sp?spool={spool}&spool_max=2K"
    outbox = Outbox(parse_destination(url, "cam", {}), size=3, say=lambda _: None)
    outbox.start()
    events = [_event(n) for n in range(12)]
    for event in events:
        event.image = None  # about 330 bytes a file: 6 fit in 2K
    outbox.put(events[0])
    assert _wait(lambda: outbox.failures >= 1)  # e0 is being tried; e1-e3 fill the queue
    for event in events[1:]:
        outbox.put(event)
    assert _wait(lambda: outbox.queued + outbox.dropped == 11 and not outbox._spill)
    kept = len(list(spool.glob("*.event.json")))
    assert 3 <= kept < 8 and outbox.dropped == 12 - 4 - kept
    assert outbox.counters()["spooled"] == kept and outbox.delivered == 0
    broker.start()
    watcher = Subscriber(broker.port)
    try:
        assert _wait(lambda: outbox.delivered == 4 + kept, 30)
        assert _wait(lambda: len(watcher.on("sp/events/new")) == 4 + kept)
        got = [json.loads(m)["id"] for m in watcher.on("sp/events/new")]
        assert got == [f"e{n}" for n in range(4 + kept)]  # oldest first; the newest dropped
        assert not list(spool.glob("*.event.json"))
        broker.stop()
        assert _wait(lambda: not outbox.destination._client.is_connected())
        failed = outbox.failures
        outbox.put(events[0])
        assert _wait(lambda: outbox.failures > failed)  # e0 is being tried again
        for event in events[1:5]:  # e1-e3 in memory, e4 in the spool
            outbox.put(event)
        assert _wait(lambda: len(list(spool.glob("*.event.json"))) == 1)
        outbox.close(0.3)  # the broker is down: they stay on disk, e0-e3 before e4
        assert len(list(spool.glob("*.event.json"))) == 5 and outbox.dropped == 12 - 4 - kept
        broker.start()
        watcher.close()
        watcher = Subscriber(broker.port)
        again = Outbox(parse_destination(url, "cam", {}))  # the next run
        again.start()
        assert _wait(lambda: again.delivered == 5, 30)
        assert _wait(lambda: len(watcher.on("sp/events/new")) == 5)
        again.close()
        got = [json.loads(m)["id"] for m in watcher.on("sp/events/new")]
        assert got == [f"e{n}" for n in range(5)]
    finally:
        watcher.close()
        broker.stop()
    assert not list(spool.glob("*")) and again.dropped == 0
    with pytest.raises(UsageError, match="goes with"):
        parse_destination(f"{broker.url}?spool_max=1M", "cam", {})
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="cannot write there"):
        Outbox(parse_destination(f"{broker.url}?spool={tmp_path / 'file'}", "cam", {}))


@needs_broker
def test_mqtts_with_the_ca_on_the_url_and_an_untrusted_certificate(tmp_path: Path) -> None:
    """A TLS listener with a server certificate from a CA the test made: trusted with
    ?ca=FILE, delivered; without it (the system's CAs) said once, in one line, and the events
    wait; a CA file that cannot be read is refused before anything starts."""
    broker = Broker(tmp_path, tls=True).start()
    watcher = Subscriber(broker.port)
    said: list[str] = []
    try:
        trusted = Outbox(parse_destination(f"{broker.tls_url}/tls?ca={broker.ca}", "cam", {}))
        untrusted = Outbox(parse_destination(f"{broker.tls_url}/tls", "cam", {}),
                           say=said.append)
        for outbox in (trusted, untrusted):
            outbox.start()
            outbox.put(_event(1))
        assert _wait(lambda: trusted.delivered == 1, 15)
        assert _wait(lambda: len(watcher.on("tls/events/new")) == 1)
        assert _wait(lambda: any("not trusted" in line for line in said), 15)
        untrusted.close(0.2)
        trusted.close()
    finally:
        watcher.close()
        broker.stop()
    assert trusted.destination.name == f"mqtts://localhost:{broker.tls_port}/tls"
    assert json.loads(watcher.on("tls/events/new")[0])["id"] == "e1"
    assert untrusted.counters()["delivered"] == 0 and untrusted.counters()["dropped"] == 1
    line = next(line for line in said if "not trusted" in line)
    assert "\n" not in line and "?ca=FILE" in line and "EDGEKIT_EVENTS_CA" in line
    with pytest.raises(UsageError, match="cannot be read"):
        parse_destination(f"{broker.tls_url}?ca={tmp_path / 'none.pem'}", "cam", {})
    with pytest.raises(UsageError, match="is the CA of an mqtts"):
        parse_destination(f"{broker.url}?ca={broker.ca}", "cam", {})
    with pytest.raises(UsageError, match="unknown parameter 'qos'"):
        parse_destination(f"{broker.url}?qos=2", "cam", {})


# ---------------------------------------------------------------------------- the run command


def test_the_events_series_on_metrics() -> None:
    from edgekit.events.settings import EventsOptions
    from edgekit.events.sink import EventsSink
    from edgekit.live.prometheus import prometheus_text
    from edgekit.live.server import LiveView, serve_options

    sink = EventsSink(EventsOptions(destinations=(f"http://127.0.0.1:{free_port()}/h",),
                                    queue=2), None, 15.0, device="cam")
    view = LiveView(serve_options("127.0.0.1:0", None))
    try:
        view.more_metrics.append(sink.metrics_lines)
        for n in range(5):
            sink.outboxes[0].put(_event(n))
        text = prometheus_text(view)
    finally:
        sink.outboxes[0].say = lambda _: None
        sink.close()
        view.close()
    assert "# TYPE edgekit_events_dropped_total counter" in text
    dropped = [line for line in text.splitlines()
               if line.startswith("edgekit_events_dropped_total{")]
    assert len(dropped) == 1 and 'destination="http://127.0.0.1:' in dropped[0]
    assert int(dropped[0].rsplit(" ", 1)[1]) >= 2  # 5 events into a queue of 2, nobody up


@pytest.mark.slow
@needs_broker
def test_run_sends_the_same_events_to_mqtt_a_webhook_and_a_file(
        detector_bundle: Path, demo_clip: Path, tmp_path: Path) -> None:
    broker = Broker(tmp_path).start()
    watcher = Subscriber(broker.port)
    receiver = _Receiver()
    events, frames = tmp_path / "events.jsonl", tmp_path / "frames.jsonl"
    try:
        result = run_cli("run", detector_bundle, "--source", demo_clip, "--json",
                         "--events", f"{broker.url}/yard", "--events", receiver.url,
                         "--events", events, "--save", frames, "--events-filter", "min_frames=2")
        assert result.returncode == 0, result.stderr
        assert _wait(lambda: watcher.on("yard/availability")[-1:] == [b"offline"])
    finally:
        watcher.close()
        receiver.close()
        broker.stop()
    report = json.loads(result.stdout)
    written = [json.loads(line) for line in events.read_text().splitlines()]
    kinds = [e["type"] for e in written]
    assert kinds.count("new") >= 3 and kinds.count("new") == kinds.count("end")
    assert [r["delivered"] for r in report["events"]] == [len(written)] * 3
    assert all(r["dropped"] == 0 for r in report["events"])
    by_mqtt = [json.loads(m) for m in watcher.on("yard/events/new")]
    assert [e["id"] for e in by_mqtt] == [e["id"] for e in written if e["type"] == "new"]
    assert [b["id"] for b in receiver.bodies] == [e["id"] for e in written]
    tracked = {(d["track"], f["frame"]) for f in map(json.loads, frames.read_text().splitlines())
               for d in f["detections"]}
    assert all((e["track"], e["frame"]) in tracked for e in written if e["type"] == "new")
    assert "events: " in run_cli("run", detector_bundle, "--source", demo_clip,
                                 "--capture", "max_frames=5", "--events",
                                 tmp_path / "e2.jsonl").stdout


@pytest.mark.slow
def test_run_goes_on_when_the_broker_is_not_there(detector_bundle: Path, demo_clip: Path) -> None:
    result = run_cli("run", detector_bundle, "--source", demo_clip, "--json",
                     "--events", f"mqtt://127.0.0.1:{free_port()}")
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "cannot reach the broker" in line]
    assert len(said) == 1 and "the loop goes on" in said[0]
    report = json.loads(result.stdout)
    assert report["frames"] == 90
    assert report["events"][0]["delivered"] == 0 and report["events"][0]["dropped"] >= 6


@pytest.mark.slow
@pytest.mark.parametrize("args, needle", [
    (["--events", "mqtt://127.0.0.1/cams/+"], "wildcard"),
    (["--events", "mqtt://user:pw@127.0.0.1"], "credentials do not go on the command line"),
    (["--events", "smtp://127.0.0.1"], "not a destination"),
    (["--events", "x.jsonl", "--events-filter", "zone=door=0,0,10,10"], "three points"),
    (["--events", "x.jsonl", "--events-filter", "zone=door=0,0,900,0,900,900"],
     "outside the 640x480"),
    (["--events-filter", "min_score=0.5"], "give --events URL"),
    (["--pre", "3"], "--pre is now --clips DIR?pre=S"),
    (["--clips", "c?pre=x"], "--clips': pre: it must be a finite number"),
])
def test_bad_events_options_are_one_line(detector_bundle: Path, demo_clip: Path,
                                         tmp_path: Path, args: list[str], needle: str) -> None:
    result = run_cli("run", detector_bundle, "--source", demo_clip, "--capture", "max_frames=3",
                     *args,
                     cwd=tmp_path)
    assert_clean_error(result, needle)
    assert result.returncode == 2


# ---------------------------------------------------------------------------- a classifier's top-1


def test_a_classifier_label_flicker_neither_ends_nor_starts_a_label() -> None:
    from edgekit.events.labels import LabelTracker

    tracker, maker = LabelTracker(3), EventMaker(Rules(min_frames=3, end_frames=3), "cam", "b")
    shown = "AAAABAAAAAABBBBBA"  # one B flickers; then B holds for five frames
    made = []
    for frame, label in enumerate(shown):
        made += maker.frame(frame, time.perf_counter_ns(), None,
                            tracker.update(ord(label), label, 0.9, (64, 48)))
    made += maker.finish()
    assert [(e.type, e.label, e.frame) for e in made] == [
        ("new", "A", 2), ("end", "A", 10), ("new", "B", 13), ("end", "B", 15)]
    assert made[0].box == (0.0, 0.0, 64.0, 48.0) and made[0].track_id != made[2].track_id


def test_a_classifier_s_smoothed_top1_changing_makes_events(lenet_bundle: Path, demo_clip: Path,
                                                           tmp_path: Path) -> None:
    """In-process: every change of the smoothed top-1 in --jsonl is one ``end`` and one
    ``new`` in the events file (debounce 1); a debounce of 3 makes fewer, each on a frame
    that shows its label."""
    from edgekit.events.settings import EventsOptions
    from edgekit.loop.run import run_loop
    from edgekit.model import load_model

    def run(min_frames: int) -> tuple[list[dict], list[dict]]:
        frames, events = tmp_path / f"f{min_frames}.jsonl", tmp_path / f"e{min_frames}.jsonl"
        with load_model(lenet_bundle) as model:
            report = run_loop(model, demo_clip, jsonl=frames, smooth=3, max_frames=60,
                              events=EventsOptions(destinations=(str(events),),
                                                   min_frames=min_frames))
        assert report.events[0]["delivered"] == len(events.read_text().splitlines())
        return ([json.loads(line) for line in frames.read_text().splitlines()],
                [json.loads(line) for line in events.read_text().splitlines()])

    records, events = run(1)
    shown = [r["smoothed_top1"]["label"] for r in records]
    changes = [i for i in range(1, len(shown)) if shown[i] != shown[i - 1]]
    assert changes, "the clip's top-1 should change at least once"
    expected = [("new", shown[0], records[0]["frame"])]
    for i in changes:
        expected += [("end", shown[i - 1], records[i - 1]["frame"]),
                     ("new", shown[i], records[i]["frame"])]
    expected.append(("end", shown[-1], records[-1]["frame"]))
    assert [(e["type"], e["label"], e["frame"]) for e in events] == expected
    assert {e["bundle"] for e in events} == {"bundle"} and events[0]["box"][:2] == [0, 0]

    records, debounced = run(3)
    by_frame = {r["frame"]: r["smoothed_top1"]["label"] for r in records}
    news = [e for e in debounced if e["type"] == "new"]
    assert 1 <= len(news) <= len(changes) + 1
    assert all(by_frame[e["frame"]] == e["label"] for e in news)
    assert len(news) == sum(e["type"] == "end" for e in debounced)


def test_a_classifier_refuses_zones_and_track_alone(lenet_bundle: Path, demo_clip: Path) -> None:
    assert_clean_error(run_cli("run", lenet_bundle, "--source", demo_clip, "--events", "e.jsonl",
                               "--events-filter", "zone=a=0,0,10,0,10,10"),
                       "zones go with a detector")
    assert_clean_error(run_cli("run", lenet_bundle, "--source", demo_clip, "--events-filter",
                               "track=on"),
                       "--events-filter track follows a detector's objects")
