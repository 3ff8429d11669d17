"""The trainer API under schemathesis: no 5xx, responses as the OpenAPI document says.

Runs in-process (ASGI) with no worker: jobs stay submitted, which is all the API sees.
The long run is the CLI (``schemathesis run http://.../openapi.json --checks all``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from ocrtune_trainer.main import create_app
from ocrtune_trainer.settings import TrainerSettings

_DATA = Path(tempfile.mkdtemp(prefix="ocrtune-trainer-fuzz-"))
app = create_app(
    TrainerSettings(data_dir=_DATA, adapter_store=_DATA / "adapters", data_roots=[_DATA], run_worker=False)
)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_answers_5xx_and_matches_its_schema(case: schemathesis.Case) -> None:
    case.call_and_validate(
        checks=[
            schemathesis.checks.not_a_server_error,
            schemathesis.checks.status_code_conformance,
            schemathesis.checks.content_type_conformance,
            schemathesis.checks.response_schema_conformance,
        ]
    )
