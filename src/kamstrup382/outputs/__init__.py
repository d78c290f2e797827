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
    sections: Mapping[str, Any],
    meters: Any = (),
    *,
    dashboard_url: str | None = None,
    module: bool = False,
) -> list[Output]:
    """Outputs for the ``[mqtt]``, ``[influxdb]`` and ``[prometheus]`` tables present in
    ``sections``.

    ``meters`` is the configured meter list (names, or the configured meters: MQTT announces
    them with their interval and ``unique_id``, Prometheus exports their intervals);
    ``dashboard_url`` the dashboard's address when it is served
    (:meth:`~kamstrup382.collector.config.HttpConfig.dashboard_url`), for Home Assistant's
    links to it. ``module``: some meter has a pulse input or a tariff output; MQTT then gets
    the live power and the tariff select too (:mod:`.power`), Prometheus the live power
    (:mod:`.power_metrics`), each as an output after its own. A bad value raises
    :class:`~kamstrup382.errors.ConfigError` naming its key; an output whose extra is not
    installed, :class:`~kamstrup382.extras.MissingExtra`.
    """
    outputs: list[Output] = []
    if "mqtt" in sections:
        require("mqtt")
        from kamstrup382.outputs.mqtt import MqttOutput  # noqa: PLC0415 - only when configured
        from kamstrup382.outputs.power import PowerMqttOutput  # noqa: PLC0415

        mqtt = MqttOutput.from_config(sections["mqtt"], meters, dashboard_url=dashboard_url)
        outputs.append(mqtt)
        if module:
            unique_ids = {
                str(m.name): getattr(m, "unique_id", None) for m in meters if not isinstance(m, str)
            }
            outputs.append(PowerMqttOutput(mqtt.settings, unique_ids, dashboard_url))
    if "influxdb" in sections:
        require("influxdb")
        from kamstrup382.outputs.influxdb import InfluxOutput  # noqa: PLC0415

        outputs.append(InfluxOutput.from_config(sections["influxdb"], meters))
    if "prometheus" in sections:
        require("prometheus")
        from kamstrup382.outputs.power_metrics import PowerMetrics  # noqa: PLC0415
        from kamstrup382.outputs.prometheus import PrometheusOutput  # noqa: PLC0415

        prometheus = PrometheusOutput.from_config(sections["prometheus"], meters)
        prometheus.watch(outputs)  # the metrics say the MQTT and InfluxDB outputs' states
        outputs.append(prometheus)
        if module:
            outputs.append(PowerMetrics(prometheus.registry))  # on the same /metrics
    return outputs
