"""The README's run command, as a new user runs it: set up, serve, log in, see instruments."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from tests.conftest import REPO_ROOT, free_port, subprocess_env

STARTUP_TIMEOUT = 180  # first run migrates and imports the sample masters


@pytest.fixture
def running_hub(tmp_path):
    port = free_port()
    log = tmp_path / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["bash", "scripts/run.sh"],
            cwd=REPO_ROOT,
            env=subprocess_env(MDHUB_VAR_DIR=str(tmp_path / "var"), PORT=str(port)),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"run.sh exited with {proc.returncode}:\n{log.read_text()}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"the hub did not answer within {STARTUP_TIMEOUT}s:\n{log.read_text()}")
        yield f"http://127.0.0.1:{port}", log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def test_run_command_serves_the_admin_with_the_sample_instruments(running_hub):
    base, log = running_hub
    output = log.read_text()
    password = re.search(r"One-time password: (\S+)", output).group(1)
    assert re.search(r"Imported sample instruments: created \d{4}", output)

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login_page = opener.open(f"{base}/admin/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page).group(1)
    form = urllib.parse.urlencode(
        {
            "username": "admin",
            "password": password,
            "csrfmiddlewaretoken": token,
            "next": "/admin/feeds/instrument/?q=SBIN",
        }
    ).encode()
    page = opener.open(f"{base}/admin/login/?next=/admin/feeds/instrument/", form).read().decode()

    assert "NSE:SBIN" in page
    assert "STATE BANK OF INDIA" in page.upper()
    # Static files are served (the admin's own stylesheet, through WhiteNoise).
    css = re.search(r'href="(/static/admin/css/base[^"]*\.css)"', page).group(1)
    assert opener.open(base + css).status == 200

    # The feed worker subscribed the starter watchlist on the simulators, and says so.
    deadline = time.monotonic() + 30
    while "subscriptions ticking" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    ticking = re.search(r"all (\d+) subscriptions ticking", log.read_text())
    assert ticking, log.read_text()[-3000:]
    subscribed = int(ticking.group(1))
    assert subscribed >= 211  # the starter watchlist; critical ones count twice
    # ... and the admin's pool assignments show them.
    page = opener.open(f"{base}/admin/feeds/poolassignment/").read().decode()
    assert re.search(rf"\b{subscribed} pool assignments\b", page), page[-2000:]
