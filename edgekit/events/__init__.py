"""Detections that leave the device: tracks, events, where they go, and the clips around them.

- ``tracking``: a track id per detection that persists across frames (``TrackingTask`` wraps a
  detector's task, so every sink, the JSON lines and the live view see the ids);
- ``rules``: events (``new``, ``update``, ``end``) from tracks, with the filters and zones;
- ``zones``: polygons in frame pixels;
- ``destinations``: ``file.jsonl``, webhooks and MQTT, each behind a bounded queue that never
  slows the loop (``dispatch``), what could not be delivered counted as dropped;
- ``clips``: encoded frames in a ring buffer, a clip per event, retention under a quota;
- ``sink``: the loop's sink that ties them together; ``options``: the ``edgekit run`` options.

Python 3.9 compatible: it runs on the device.
"""
