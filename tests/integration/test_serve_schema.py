"""Property-based: requests that schemathesis generates from /openapi.json never get a 5xx."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import API_KEY, SERVE_PORT

pytestmark = pytest.mark.timeout(600)


def test_no_generated_request_gets_a_server_error(serve_app, tmp_path):
    cli = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [str(cli), "run", f"http://127.0.0.1:{SERVE_PORT}/openapi.json",
         "--checks", "not_a_server_error", "--max-examples", "40", "--seed", "1",
         "--request-timeout", "60", "--generation-database", "none",
         "--header", f"Authorization: Bearer {API_KEY}"],
        capture_output=True, text=True, timeout=540, cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false", "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Tested: 5" in result.stdout  # every operation was exercised
