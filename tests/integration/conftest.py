import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.integration.gatewayproc import Gateway


def require_tool(name: str) -> str:
    """A real peer the test needs: missing is a failure in CI, a skip on a laptop."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed; .ci/run must install it")
        pytest.skip(f"{name} not installed")
    return path


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    gw = Gateway(tmp_path_factory.mktemp("gw")).start()
    yield gw
    gw.stop()


@pytest.fixture
def sink_dir():
    """Where smtp-sink dumps messages. It drops to nobody before writing, so
    the directory must be reachable by nobody, which pytest's tmp_path is not."""
    d = Path(tempfile.mkdtemp(prefix="exgw-sink-"))
    os.chmod(d, 0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)
