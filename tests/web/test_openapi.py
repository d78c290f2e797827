"""Schemathesis against the OpenAPI description: the app, served by uvicorn, must keep to it."""

from __future__ import annotations

from datetime import datetime

import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from kamstrup382.web import DEFAULT_TITLE
from kamstrup382.web.openapi import WHEN_FORMAT, openapi_document


def _when(at: datetime, shape: str) -> str:
    date = at.strftime("%Y-%m-%d")  # %Y pads years below 1000 to four digits
    clock = f"{at.hour:02d}:{at.minute:02d}"
    seconds = f"{clock}:{at.second:02d}"
    return {
        "date": date,
        "local": f"{date}T{clock}",
        "space": f"{date} {seconds}",
        "utc": f"{date}T{seconds}Z",
        "lower": f"{date}t{seconds}.{at.microsecond:06d}z",
        "offset": f"{date}T{seconds}+05:30",
        "negative": f"{date}T{seconds}-02:00",
    }[shape]


#: Values of ``since``/``until`` as the description's format says them: days the calendar has,
#: in each shape the pattern admits (a pattern alone cannot say that a November has no 31st).
schemathesis.openapi.format(
    WHEN_FORMAT,
    st.builds(
        _when,
        st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
        st.sampled_from(["date", "local", "space", "utc", "lower", "offset", "negative"]),
    ),
)
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
