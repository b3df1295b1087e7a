"""What the live view costs the loop: FPS with 0, 1 and 10 stream viewers and one stalled one.

    .venv/bin/python scripts/bench_serve.py [--rounds 5] [--seconds 4] [--stall-seconds 30]

One `edgekit run` process runs the real detector (tflite-int8, LiteRT) on the demo clip with
--capture repeat=on, as fast as it goes (the worst case: a camera would pace it), serving the live
view with a token. The configurations alternate, round after round, in that one process:

- 0 viewers;
- 1 and 10 viewers reading /stream.mjpg (threads of a child process at nice 19, each counting
  the frames it gets: a remote browser's work is not the device's, and at nice 19 they take
  the CPU only when the loop leaves some);
- 10 page viewers: /stream.mjpg plus /stats.json once a second each, as the page does;
- 1 stalled viewer: it asks for /stream.mjpg and never reads a byte.

The loop's FPS is the change of edgekit_frames_total (/metrics) over each round. Since this
machine's 2 cores are shared (with the viewers' threads, and with whatever else runs), FPS
swings by 20% from round to round; the process's CPU time per looped frame (utime + stime of
all its threads, /proc/PID/stat) is steadier, and says what the view costs a device whose
cores are all busy. The live view's own CPU time (its part of the sink stage, the encoder,
the senders: edgekit_view_cpu_seconds_total, per thread, so the machine's load does not
change it) says directly what share of the process's CPU it takes. The server's memory is
the process's RSS (VmRSS) after each round, and before and after one viewer stalls for
--stall-seconds at the end. Goals: 10 viewers cost <= 10% FPS, a stalled viewer 0%, RSS flat.
Figures are medians over the rounds; the ratios are medians of each round's figure over that
round's 0-viewer figure.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-serve-token-0123456789"


def rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text)[1]) / 1024


def request(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        chunks = []
        while (chunk := sock.recv(65536)):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200"), head[:80]
    return body


def metric(text: str, name: str) -> float:
    return float(re.search(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.M)[1])


def frames_total(port: int) -> int:
    return int(metric(request(port, "/metrics").decode(), "edgekit_frames_total"))


def view_cpu_s(port: int) -> float:
    """The live view's own CPU time so far (sink stage, encoder, senders: /metrics)."""
    text = request(port, "/metrics").decode()
    return sum(float(v) for v in re.findall(r"^edgekit_view_cpu_seconds_total\{[^}]*\} (\S+)$",
                                            text, re.M))


def cpu_s(pid: int, thread: int | None = None) -> float:
    """User + system time of every thread of ``pid`` so far, or of its thread ``thread`` (a
    native thread id) alone."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Viewer(threading.Thread):
    """Reads /stream.mjpg, counting parts (and, as a page does, polls /stats.json)."""

    def __init__(self, port: int, page: bool = False) -> None:
        super().__init__(daemon=True)
        self.port, self.page, self.parts, self.stop = port, page, 0, threading.Event()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(f"GET /stream.mjpg?token={TOKEN} HTTP/1.0\r\n\r\n".encode())

    def run(self) -> None:
        boundary, buffered, next_poll = b"--edgekit-frame\r\n", b"", time.monotonic()
        try:
            while not self.stop.is_set():
                chunk = self.sock.recv(262144)
                if not chunk:
                    return
                buffered = buffered[-32:] + chunk
                self.parts += buffered.count(boundary) - buffered[:-len(chunk)].count(boundary)
                if self.page and time.monotonic() >= next_poll:
                    next_poll += 1.0
                    request(self.port, "/stats.json")
        except OSError:
            pass

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def stalled(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET /stream.mjpg?token={TOKEN} HTTP/1.0\r\n\r\n".encode())
    return sock  # never read


def keep_cpus_awake() -> list[subprocess.Popen]:
    """One SCHED_IDLE spinner per CPU: it runs only when nothing else wants the CPU, so it
    takes no time from the loop (or anyone), but the CPUs never go idle. On a VM an idle vCPU
    is halted and waking it for each hand-over between the loop's threads costs much: without
    this, viewers' threads (which keep the vCPUs awake) made the loop *faster* by 25%."""
    spin = ("import os; os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\n"
            "while True: pass")
    return [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(os.cpu_count() or 1)]


VIEWERS = {"0 viewers": (0, "stream"), "1 viewer": (1, "stream"),
           "10 viewers": (10, "stream"), "10 page viewers": (10, "page"),
           "1 stalled viewer": (1, "stall")}


def viewers_process(port: int, count: int, mode: str, seconds: float) -> None:
    """The child: ``count`` viewers for ``seconds``, then their frames a second, as JSON.

    It runs at nice 19, so that on this 2-core machine the viewers take their CPU time only
    when the loop leaves some: a real viewer's work happens on its own machine."""
    os.nice(19)
    viewers = [Viewer(port, page=mode == "page") for _ in range(count if mode != "stall" else 0)]
    hung = [stalled(port) for _ in range(count if mode == "stall" else 0)]
    for v in viewers:
        v.start()
    print("ready", flush=True)
    time.sleep(1.0)  # settle: every viewer connected (a stalled one has filled its buffers)
    start = [v.parts for v in viewers]
    time.sleep(seconds)
    got = [(v.parts - p) / seconds for v, p in zip(viewers, start)]
    print(json.dumps(statistics.median(got) if got else None), flush=True)
    for v in viewers:
        v.close()
    for sock in hung:
        sock.close()


def measure(port: int, pid: int, config: str, seconds: float) -> dict:
    count, mode = VIEWERS[config]
    child = subprocess.Popen([sys.executable, __file__, "--viewers", str(port), str(count), mode,
                              str(seconds + 0.5)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    time.sleep(1.25)  # the child's settle time, and a little
    start_frames, start, start_cpu = frames_total(port), time.perf_counter(), cpu_s(pid)
    start_view = view_cpu_s(port)
    time.sleep(seconds)
    frames, elapsed = frames_total(port) - start_frames, time.perf_counter() - start
    cpu_ms = (cpu_s(pid) - start_cpu) * 1000 / frames
    view_s = view_cpu_s(port) - start_view
    viewer_fps = json.loads(child.stdout.readline())
    child.wait(timeout=30)
    time.sleep(0.5)
    return {"config": config, "fps": frames / elapsed, "rss_mb": rss_mb(pid), "cpu_ms": cpu_ms,
            "view_share": view_s / (cpu_ms * frames / 1000), "view_cores": view_s / elapsed,
            "at": time.monotonic(), "viewer_fps": viewer_fps}


def main() -> None:
    if sys.argv[1:2] == ["--viewers"]:
        port, count, mode, seconds = sys.argv[2:6]
        return viewers_process(int(port), int(count), mode, float(seconds))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--stall-seconds", type=float, default=30.0)
    parser.add_argument("--no-spin", action="store_true",
                        help="Let the CPUs go idle between frames (see keep_cpus_awake).")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_loop import OUT, ensure_detector_and_clip

    from edgekit.live.state import STREAM_FPS

    OUT.mkdir(parents=True, exist_ok=True)
    bundle, clip = ensure_detector_and_clip()
    spinners = [] if args.no_spin else keep_cpus_awake()
    process = subprocess.Popen(
        [sys.executable, "-m", "edgekit", "run", str(bundle), "--source", str(clip), "--capture",
         "repeat=on", "--infer", "format=tflite-int8", "--serve", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "EDGEKIT_SERVE_TOKEN": TOKEN})
    try:
        port = None
        for line in process.stderr:
            found = re.search(r"live view: http://[^:]+:(\d+)/", line)
            if found:
                port = int(found[1])
                break
        assert port, "edgekit run did not start its live view"
        threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
        time.sleep(3)  # warm up: the model, the clip in the page cache
        configs = list(VIEWERS)
        rows: dict[str, list[dict]] = {c: [] for c in configs}
        rss_start = rss_mb(process.pid)
        for r in range(args.rounds):
            order = configs if r % 2 == 0 else list(reversed(configs))
            for config in order:
                rows[config].append(measure(port, process.pid, config, args.seconds))
                print(f"  round {r + 1}: {config:17s} {rows[config][-1]['fps']:7.1f} FPS",
                      file=sys.stderr)
        before = rss_mb(process.pid)
        hung = stalled(port)
        time.sleep(args.stall_seconds)
        during = rss_mb(process.pid)
        hung.close()
        stats = json.loads(request(port, "/stats.json"))
        metrics = request(port, "/metrics").decode()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    print(f"edgekit run --serve: the detector (tflite-int8, {stats['backend']}) on the demo clip "
          f"with --capture repeat=on, {args.rounds} rounds of {args.seconds:g} s, medians"
          f"{'' if args.no_spin else ', idle CPUs kept awake (SCHED_IDLE spinners)'}\n")
    print(f"{'configuration':18s} {'loop FPS':>9s} {'vs 0':>6s} {'CPU ms/frame':>13s} {'vs 0':>6s}"
          f" {'view CPU':>9s} {'view cores':>11s} {'each viewer gets':>17s} {'RSS MB':>7s}")
    zero = rows["0 viewers"]
    for config in configs:
        fps = statistics.median(r["fps"] for r in rows[config])
        cpu = statistics.median(r["cpu_ms"] for r in rows[config])
        # Each round's figure over the same round's 0-viewer figure: the machine's load drifts
        # (other processes), and a ratio within a round cancels most of it.
        fps_ratio = statistics.median(r["fps"] / z["fps"] for r, z in zip(rows[config], zero))
        cpu_ratio = statistics.median(r["cpu_ms"] / z["cpu_ms"]
                                      for r, z in zip(rows[config], zero))
        share = statistics.median(r["view_share"] for r in rows[config])
        cores = statistics.median(r["view_cores"] for r in rows[config])
        got = [r["viewer_fps"] for r in rows[config] if r["viewer_fps"] is not None]
        shown = f"{statistics.median(got):.1f} fps" if got else "-"
        print(f"{config:18s} {fps:9.1f} {fps_ratio:6.3f} {cpu:13.3f} {cpu_ratio:6.3f} "
              f"{share:9.1%} {cores:11.3f} {shown:>17s} "
              f"{max(r['rss_mb'] for r in rows[config]):7.1f}")
    spread = [r["fps"] for r in rows["0 viewers"]]
    print(f"\n0-viewer rounds: {min(spread):.0f} to {max(spread):.0f} FPS (the machine's noise); "
          "view CPU: the live view's share of the process's CPU time (its sink stage, encoder "
          "and senders, from edgekit_view_cpu_seconds_total); view cores: its CPU seconds a "
          "second")
    encoded = metric(metrics, "edgekit_encoded_frames_total")
    encode_s = float(re.search(r'^edgekit_view_cpu_seconds_total\{[^}]*work="encode"\} (\S+)$',
                               metrics, re.M)[1])
    print(f"encoder: {encoded:.0f} frames encoded of {stats['frames']} looped (at most "
          f"{STREAM_FPS:g} a second, only while a viewer waits), {encode_s / encoded * 1000:.2f} "
          f"ms of CPU each (boxes drawn + JPEG, {stats['source']})")
    every = sorted((r for rs in rows.values() for r in rs), key=lambda r: r["at"])
    trail = ", ".join(f"{r['rss_mb']:.0f}" for r in every[::len(configs)])
    print(f"RSS: {rss_start:.1f} MB after warm-up; after each round, every {len(configs)}th: "
          f"{trail} MB; one viewer stalled for {args.stall_seconds:g} s: {before:.1f} -> "
          f"{during:.1f} MB")


if __name__ == "__main__":
    main()
