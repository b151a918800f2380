"""Home Assistant MQTT discovery (pure): the retained config messages that make each
camera appear in Home Assistant as one device's entities, with no YAML.

Per camera, on the alprd device ``alprd <node>``:

- a **sensor** ``<camera> plate``: state = the last plate read (from the retained
  ``<prefix>/<camera>/last``), the whole event as its attributes;
- an **event** entity ``<camera> plate read``: fires ``plate`` on every event
  published to ``<prefix>/<camera>/plate`` (for automations: open the gate when a
  known plate is read).

Both are available while ``<prefix>/status`` is ``online`` (the sink's birth
message and last will). A camera that is no longer configured gets an empty
retained config, which removes its entities.
See https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterable

from alprd import __version__

#: The event entity's payload: Home Assistant wants an ``event_type`` key.
EVENT_TEMPLATE = (
    '{"event_type":"plate","plate":{{ value_json.plate | tojson }},'
    '"confidence":{{ value_json.confidence }},'
    '"known_label":{{ value_json.known_label | tojson }},'
    '"camera":{{ value_json.camera | tojson }}}'
)


def node_id(name: str = "") -> str:
    """A discovery node id (``[A-Za-z0-9_-]``): `name`, else this host's name."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name or socket.gethostname()) or "alprd"


def discovery(
    *,
    discovery_prefix: str,
    topic_prefix: str,
    node: str,
    cameras: Iterable[str],
    removed: Iterable[str] = (),
) -> list[tuple[str, str]]:
    """(topic, payload) pairs to publish retained: configs for `cameras`, empty
    payloads (deletions) for `removed`. `cameras` are topic-safe names."""
    status = f"{topic_prefix}/status"
    device = {
        "identifiers": [f"alprd_{node}"],
        "name": f"alprd {node}",
        "manufacturer": "alprd",
        "model": "licence-plate recognition daemon",
        "sw_version": __version__,
    }
    common = {
        "availability_topic": status,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device,
    }
    out: list[tuple[str, str]] = []
    for cam in cameras:
        sensor = {
            "name": f"{cam} plate",
            "unique_id": f"alprd_{node}_{cam}_plate",
            "state_topic": f"{topic_prefix}/{cam}/last",
            "value_template": "{{ value_json.plate }}",
            "json_attributes_topic": f"{topic_prefix}/{cam}/last",
            "icon": "mdi:car-back",
            **common,
        }
        event = {
            "name": f"{cam} plate read",
            "unique_id": f"alprd_{node}_{cam}_read",
            "state_topic": f"{topic_prefix}/{cam}/plate",
            "event_types": ["plate"],
            "value_template": EVENT_TEMPLATE,
            "icon": "mdi:car-search",
            **common,
        }
        out.append((_config_topic(discovery_prefix, "sensor", node, cam, "plate"), _dump(sensor)))
        out.append((_config_topic(discovery_prefix, "event", node, cam, "read"), _dump(event)))
    for cam in removed:
        out.append((_config_topic(discovery_prefix, "sensor", node, cam, "plate"), ""))
        out.append((_config_topic(discovery_prefix, "event", node, cam, "read"), ""))
    return out


def _config_topic(prefix: str, component: str, node: str, cam: str, what: str) -> str:
    object_id = re.sub(r"[^A-Za-z0-9_-]", "_", f"{cam}_{what}")
    return f"{prefix}/{component}/{node}/{object_id}/config"


def _dump(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)
