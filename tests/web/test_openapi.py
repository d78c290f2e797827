"""Schemathesis against the OpenAPI description: the app, served by uvicorn, must keep to it."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings

from kamstrup382.web import DEFAULT_TITLE
from kamstrup382.web.openapi import openapi_document

schema = schemathesis.openapi.from_dict(openapi_document(title=DEFAULT_TITLE, secured=False))


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_keeps_to_its_description(
    case: schemathesis.Case,  # type: ignore[type-arg]
    live_url: str,
) -> None:
    case.call_and_validate(base_url=live_url)
    if case.path_parameters and "meter" in case.path_parameters:
        # the same request for a meter that exists, so that the 200 answers are checked too
        case.path_parameters = {**case.path_parameters, "meter": "house"}
        case.call_and_validate(base_url=live_url)


@schema.parametrize()
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_keeps_to_it_for_a_kmp_meter(
    case: schemathesis.Case,  # type: ignore[type-arg]
    both_url: str,
) -> None:
    """The same over a storage with a KMP meter: its answers (the meter list with both kinds,
    its readings, its empty peaks) keep to the description too."""
    if case.path_parameters and "meter" in case.path_parameters:
        case.path_parameters = {**case.path_parameters, "meter": "flat"}
    case.call_and_validate(base_url=both_url)
