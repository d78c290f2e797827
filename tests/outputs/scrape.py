"""Scraping the Prometheus output as Prometheus does: ``/metrics`` over HTTP, parsed by
prometheus-client's own parser, and checked by ``promtool check metrics``."""

from __future__ import annotations

import asyncio
import subprocess
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from kamstrup382.outputs.prometheus import PrometheusOutput
from tests.fixtures.prometheus import PROMTOOL

__all__ = ["Families", "promtool_check_metrics", "scrape", "scrape_text", "value"]

#: family name -> (type, samples)
Families = dict[str, tuple[str, list[Sample]]]


async def scrape_text(output: PrometheusOutput | str) -> str:
    """The exposition ``/metrics`` serves, from a real HTTP scrape."""
    url = output if isinstance(output, str) else output.url

    def get() -> tuple[str, str]:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.headers["Content-Type"], response.read().decode()

    content_type, text = await asyncio.to_thread(get)
    assert content_type.startswith("text/plain; version=0.0.4")
    return text


async def scrape(output: PrometheusOutput | str) -> Families:
    """family name -> (type, samples), from a real HTTP scrape."""
    text = await scrape_text(output)
    return {f.name: (f.type, list(f.samples)) for f in text_string_to_metric_families(text)}


async def promtool_check_metrics(text: str) -> str:
    """What ``promtool check metrics`` says of ``text`` (empty: nothing to say); its exit
    status must agree."""
    result = await asyncio.to_thread(
        subprocess.run,
        [PROMTOOL, "check", "metrics"],
        input=text.encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    said = (result.stdout + result.stderr).decode().strip()
    assert (result.returncode == 0) == (said == ""), said
    return said


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, samples)
    return found[0]
