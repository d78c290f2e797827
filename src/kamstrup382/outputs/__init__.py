"""Outputs of the collector: MQTT (with Home Assistant discovery), InfluxDB and Prometheus.

Each output is configured by its own table of the TOML config and is off unless that table
is present. ``build_outputs`` turns the tables into outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kamstrup382.extras import require
from kamstrup382.outputs.base import Output

__all__ = ["Output", "build_outputs"]


def build_outputs(
    sections: Mapping[str, Any], meters: Any = (), *, dashboard_url: str | None = None
) -> list[Output]:
    """Outputs for the ``[mqtt]``, ``[influxdb]`` and ``[prometheus]`` tables present in
    ``sections``.

    ``meters`` is the configured meter list (names, or the configured meters: MQTT announces
    them with their interval and ``unique_id``, Prometheus exports their intervals);
    ``dashboard_url`` the dashboard's address when it is served
    (:meth:`~kamstrup382.collector.config.HttpConfig.dashboard_url`), for Home Assistant's
    links to it. A bad value raises
    :class:`~kamstrup382.errors.ConfigError` naming its key; an output whose extra is not
    installed, :class:`~kamstrup382.extras.MissingExtra`.
    """
    outputs: list[Output] = []
    if "mqtt" in sections:
        require("mqtt")
        from kamstrup382.outputs.mqtt import MqttOutput  # noqa: PLC0415 - only when configured

        outputs.append(
            MqttOutput.from_config(sections["mqtt"], meters, dashboard_url=dashboard_url)
        )
    if "influxdb" in sections:
        require("influxdb")
        from kamstrup382.outputs.influxdb import InfluxOutput  # noqa: PLC0415

        outputs.append(InfluxOutput.from_config(sections["influxdb"], meters))
    if "prometheus" in sections:
        require("prometheus")
        from kamstrup382.outputs.prometheus import PrometheusOutput  # noqa: PLC0415

        prometheus = PrometheusOutput.from_config(sections["prometheus"], meters)
        prometheus.watch(outputs)  # the metrics say the MQTT and InfluxDB outputs' states
        outputs.append(prometheus)
    return outputs
