"""MQTT (paho-mqtt 2.x): each event to ``<prefix>/<camera>/plate`` at QoS 1.

`write` returns only after the broker's PUBACK (or raises `SinkError` after
`publish_timeout_s`), so the outbox deletes a row only once the broker has it. The
same JSON is published retained to ``<prefix>/<camera>/last``. ``<prefix>/status`` is
"online" (retained) on every connect and "offline" (retained) on a clean close, and
the broker publishes "offline" itself (the last will) when the connection is lost.
With `discovery_prefix` set, Home Assistant discovery configs for the cameras are
published (retained) on every connect and when the camera list changes
(`announce`); see `alprd.sinks.homeassistant`.

The client connects in the background and paho reconnects it (1 s doubling up to
`reconnect_max_s`). Why it is not connected (a refusal such as a wrong password, or
a failed connection such as a certificate that does not verify) is logged once per
reason and named in the error `write` raises. A message is only handed to paho
while connected: paho would otherwise hold it and resend it on reconnect behind the
outbox's back. A message handed over but not acknowledged in time drops the client
(and with it paho's copy) for a fresh one; the outbox sends it again (QoS 1: at least once).
"""

from __future__ import annotations

import contextlib
import json
import re
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from alprd.log import get_logger
from alprd.sinks import homeassistant
from alprd.sinks.base import Record, SinkError

log = get_logger("alprd.sinks")

ONLINE = "online"
OFFLINE = "offline"


class _Client(paho.Client):
    """paho's client, telling `on_connect_error` why a connection attempt failed
    (paho retries in its thread and keeps the exception to itself)."""

    on_connect_error: Callable[[paho.Client, OSError], None] | None = None

    def reconnect(self) -> MQTTErrorCode:
        try:
            return super().reconnect()
        except OSError as exc:  # refused, unreachable, TLS handshake failed
            if self.on_connect_error is not None:
                self.on_connect_error(self, exc)
            raise


def topic_segment(name: str) -> str:
    """`name` safe as one topic level (no ``/``, ``+``, ``#``, never empty)."""
    return re.sub(r"[/+#\s]", "_", name) or "_"


class MqttSink:
    name = "mqtt"

    def __init__(
        self,
        host: str,
        port: int = 1883,
        *,
        client_id: str = "",
        username: str = "",
        password: str = "",
        tls: bool = False,
        tls_ca_file: Path | None = None,
        topic_prefix: str = "alprd",
        keepalive_s: int = 30,
        publish_timeout_s: float = 10.0,
        reconnect_max_s: int = 30,
        discovery_prefix: str | None = None,
        node_id: str = "",
        cameras: Sequence[str] = (),
    ) -> None:
        if publish_timeout_s <= 0:
            raise ValueError(f"publish_timeout_s must be > 0; got {publish_timeout_s}")
        if not re.fullmatch(r"[^#+\s]+", topic_prefix):
            raise ValueError(f"topic_prefix must not contain '#', '+' or spaces: {topic_prefix!r}")
        self.host = host
        self.port = port
        self.client_id = client_id
        self.username = username
        self.password = password
        self.tls = tls
        self.tls_ca_file = tls_ca_file
        self.topic_prefix = topic_prefix.rstrip("/")
        self.status_topic = f"{self.topic_prefix}/status"
        self.keepalive_s = keepalive_s
        self.publish_timeout_s = publish_timeout_s
        self.reconnect_max_s = reconnect_max_s
        self.discovery_prefix = discovery_prefix.rstrip("/") if discovery_prefix else None
        self.node_id = homeassistant.node_id(node_id)
        self._cameras = [topic_segment(c) for c in cameras]
        self._removed: list[str] = []
        self._lock = threading.Lock()  # one write (or reset, or close) at a time
        self._connected = threading.Event()
        self._settled = threading.Event()  # the first connection attempt has an outcome
        self._was_connected = False
        self._refused = ""  # the broker's last refusal, logged once
        self._failed = ""  # the last failed connection attempt, logged once
        self._why = ""  # why it is not connected, for the error `write` raises
        self._closed = False
        self._client = self._new_client()
        self._start()

    def topic(self, camera: str, leaf: str) -> str:
        return f"{self.topic_prefix}/{topic_segment(camera)}/{leaf}"

    # ------------------------------------------------------------------ connection

    def _new_client(self) -> paho.Client:
        client = _Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True)
        if self.username:
            client.username_pw_set(self.username, self.password or None)
        if self.tls:
            cafile = str(self.tls_ca_file) if self.tls_ca_file else None
            client.tls_set_context(ssl.create_default_context(cafile=cafile))
        client.will_set(self.status_topic, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(1, max(1, self.reconnect_max_s))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_error = self._on_connect_error
        return client

    def _start(self) -> None:
        self._client.connect_async(self.host, self.port, keepalive=self.keepalive_s)
        self._client.loop_start()

    def _on_connect(
        self, client: paho.Client, _: Any, __: Any, reason: ReasonCode, ___: Any
    ) -> None:
        if client is not self._client:  # a client already replaced
            return
        if reason.is_failure:
            self._why = f"refused: {reason}"
            if str(reason) != self._refused:  # once per reason, not per attempt
                log.warning("mqtt_refused", host=self.host, port=self.port, reason=str(reason))
            self._refused = str(reason)
            self._settled.set()
            return
        self._refused = self._failed = self._why = ""
        # Queued ahead of any event: the broker sees "online" first.
        client.publish(self.status_topic, ONLINE, qos=1, retain=True)
        self._publish_discovery(client)
        self._connected.set()
        self._settled.set()
        log.info("mqtt_connected", host=self.host, port=self.port)
        self._was_connected = True

    def _on_connect_error(self, client: paho.Client, exc: OSError) -> None:
        if client is not self._client:
            return
        self._why = why = str(exc) or type(exc).__name__
        self._settled.set()
        if why != self._failed:  # once per reason, not per attempt
            log.warning("mqtt_connect_failed", host=self.host, port=self.port, reason=why)
        self._failed = why

    def _on_disconnect(
        self, client: paho.Client, __: Any, ___: Any, reason: ReasonCode, ____: Any
    ) -> None:
        if client is not self._client:
            return
        self._connected.clear()
        if self._was_connected and not self._closed:
            log.warning("mqtt_disconnected", host=self.host, port=self.port, reason=str(reason))
        self._was_connected = False

    def _stop_client(self) -> None:
        self._connected.clear()
        self._was_connected = False
        self._client.disconnect()
        self._client.loop_stop()

    def _reset(self) -> None:
        """A fresh client: paho's copies of unacknowledged messages go with the old one."""
        self._stop_client()
        self._client = self._new_client()
        self._start()

    # ------------------------------------------------------------------ discovery

    def _publish_discovery(self, client: paho.Client) -> None:
        if self.discovery_prefix is None:
            return
        for topic, payload in homeassistant.discovery(
            discovery_prefix=self.discovery_prefix,
            topic_prefix=self.topic_prefix,
            node=self.node_id,
            cameras=self._cameras,
            removed=self._removed,
        ):
            client.publish(topic, payload, qos=1, retain=True)

    def announce(self, cameras: Sequence[str]) -> None:
        """The configured cameras changed (reload): publish discovery for the new
        list and remove the entities of cameras no longer there."""
        new = [topic_segment(c) for c in cameras]
        with self._lock:
            self._removed = sorted((set(self._cameras) | set(self._removed)) - set(new))
            self._cameras = new
            if self._connected.is_set() and not self._closed:
                self._publish_discovery(self._client)

    # ------------------------------------------------------------------ sink

    def write(self, record: Record) -> None:
        payload = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        camera = str(record["camera"])
        # the first connection still being made (a TLS handshake at start-up): wait
        # for its outcome rather than report "not connected" and recover 0.1 s later
        self._settled.wait(self.publish_timeout_s)
        with self._lock:
            if self._closed:
                raise SinkError("mqtt sink closed")
            if not self._connected.is_set():
                why = f" ({self._why})" if self._why else ""
                raise SinkError(f"not connected to {self.host}:{self.port}{why}")
            client = self._client
            infos = [
                client.publish(self.topic(camera, "plate"), payload, qos=1),
                client.publish(self.topic(camera, "last"), payload, qos=1, retain=True),
            ]
            deadline = time.monotonic() + self.publish_timeout_s
            try:
                for info in infos:
                    if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                        raise SinkError(f"publish failed: {paho.error_string(info.rc)}")
                    info.wait_for_publish(max(0.0, deadline - time.monotonic()))
                    if not info.is_published():
                        raise SinkError(
                            f"no PUBACK from {self.host}:{self.port} "
                            f"within {self.publish_timeout_s:g} s"
                        )
            except (SinkError, RuntimeError, ValueError) as exc:
                self._reset()
                if isinstance(exc, SinkError):
                    raise
                raise SinkError(f"publish failed: {exc}") from exc

    def close(self) -> None:
        """Publish "offline" (retained) if connected, then disconnect."""
        self._settled.set()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._connected.is_set():
                info = self._client.publish(self.status_topic, OFFLINE, qos=1, retain=True)
                with contextlib.suppress(RuntimeError, ValueError):
                    info.wait_for_publish(min(self.publish_timeout_s, 2.0))
            self._stop_client()
