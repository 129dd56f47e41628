"""The console driven in a real headless Chromium (Debian's chromium and chromium-driver,
through Selenium): log in, retry a failed job, pause a queue, bulk-retry "all matching",
watch a running job's progress move. Each test checks the result in the store and saves
screenshots under test-artifacts/."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_for
from tests.procs import DaemonProcess, Processes, count_files, job_files
from tests.telemetry.console_helpers import OPERATOR, audit_records, console_daemon
from tests.telemetry.helpers import artifacts_dir

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is a test dependency "
                                "(pip install -e '.[test]')")
pytestmark = [pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                 reason="chromium and chromium-driver are not installed "
                                 "(apt-get install -y chromium chromium-driver); .ci/run "
                                 "installs them"), pytest.mark.slow]

from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """A headless Chromium, closed at the end of the test."""
    options = Options()
    assert CHROMIUM is not None and CHROMEDRIVER is not None
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--window-size=1400,1000",
                f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: WebDriver, name: str) -> None:
    path = os.path.join(artifacts_dir(), f"console-{name}.png")
    driver.save_screenshot(path)
    assert os.path.getsize(path) > 5_000


def log_in(driver: WebDriver, port: int) -> None:
    driver.get(f"http://127.0.0.1:{port}/login")
    driver.find_element(By.ID, "user").send_keys(OPERATOR[0])
    driver.find_element(By.ID, "password").send_keys(OPERATOR[1])
    driver.find_element(By.CSS_SELECTOR, "#login button").click()
    wait_for(lambda: "alice (operator)" in driver.page_source, timeout=20,
             message="the page of a logged-in operator")


def failed_jobs(procs: Processes, daemon: DaemonProcess, payloads: list[dict[str, object]]
                ) -> list[str]:
    """Jobs of queue price that failed for good (a worker ran them, then was stopped)."""
    worker = procs.worker(daemon, "price", "poison")
    with daemon.client() as client:
        ids = [client.submit("price", p, max_attempts=1) for p in payloads]
        client.wait_many("price", ids, timeout=60)
    worker.terminate()
    return ids


def test_log_in_and_retry_a_failed_job(procs: Processes, tmp_path: Path,
                                       browser: WebDriver) -> None:
    daemon, port = console_daemon(procs, tmp_path)
    [job] = failed_jobs(procs, daemon, [{"poison": True}])
    browser.get(f"http://127.0.0.1:{port}/")
    assert "log in" in browser.page_source and "actions on" in browser.page_source
    shot(browser, "anonymous")
    log_in(browser, port)
    shot(browser, "logged-in")
    browser.get(f"http://127.0.0.1:{port}/job/price/{job}")
    assert "poisoned payload" in browser.page_source
    shot(browser, "failed-job")
    browser.find_element(By.XPATH, "//button[text()='retry']").click()
    wait_for(lambda: "retried 1 job(s)" in browser.page_source, timeout=20)
    wait_for(lambda: job in job_files(daemon.root, "price", "pending"), timeout=20,
             message="the job back in pending/")
    assert job not in job_files(daemon.root, "price", "failed")
    assert job_files(daemon.root, "price", "pending")[job]["max_attempts"] == 1 + 3  # fresh
    shot(browser, "retried")
    assert [r["action"] for r in audit_records(daemon.root)] == ["retry"]


def test_pause_a_queue(procs: Processes, tmp_path: Path, browser: WebDriver) -> None:
    daemon, port = console_daemon(procs, tmp_path)
    with daemon.client() as client:
        client.submit("price", {"sku": "A-1"})
    log_in(browser, port)
    page = f"http://127.0.0.1:{port}/queue/price"

    def pause_form() -> list[Any]:  # the console may serve the page before it knows the queue
        browser.get(page)
        return browser.find_elements(By.NAME, "reason")
    wait_for(pause_form, timeout=20, interval=0.5, message="the queue's page with its form")
    browser.find_element(By.NAME, "reason").send_keys("supplier down")
    browser.find_element(By.ID, "pause").click()
    wait_for(lambda: "paused price" in browser.page_source, timeout=20)
    assert (Path(daemon.root) / "price" / "paused").read_text().strip() == "supplier down"
    browser.get(f"http://127.0.0.1:{port}/")
    wait_for(lambda: 'class="tag paused"' in browser.page_source, timeout=20,
             message="the queue marked paused in the table")
    shot(browser, "paused")
    with daemon.client() as client:
        assert client.status("price")["queues"]["price"]["paused"]["reason"] == "supplier down"


def test_bulk_retry_all_matching(procs: Processes, tmp_path: Path, browser: WebDriver
                                 ) -> None:
    daemon, port = console_daemon(procs, tmp_path)
    payloads: list[dict[str, object]] = [{"poison": True, "sku": "A" if n % 3 else "B"}
                                         for n in range(30)]
    ids = failed_jobs(procs, daemon, payloads)
    chosen = {i for i, p in zip(ids, payloads) if p["sku"] == "A"}
    assert len(chosen) == 20
    log_in(browser, port)
    browser.get(f"http://127.0.0.1:{port}/search?queue=price&state=failed&where=sku%3DA")
    assert "20 match(es)" in browser.page_source
    shot(browser, "search")
    browser.find_element(By.XPATH, "//button[text()='retry all matching…']").click()
    wait_for(lambda: 'data-count="20"' in browser.page_source, timeout=20,
             message="the confirm step with its count")
    shot(browser, "bulk-confirm")
    assert count_files(daemon.root, "price", "failed") == 30  # nothing done before confirm
    browser.find_element(By.ID, "confirm").click()
    wait_for(lambda: "retried 20 job(s)" in browser.page_source, timeout=30)
    pending = set(job_files(daemon.root, "price", "pending"))
    assert pending == chosen
    assert set(job_files(daemon.root, "price", "failed")) == set(ids) - chosen
    shot(browser, "bulk-done")
    [record] = audit_records(daemon.root)
    assert record["action"] == "retry" and record["args"]["where"] == "sku=A"
    assert record["result"] == "retried 20 job(s) of price"


def test_watch_a_running_job_move(procs: Processes, tmp_path: Path, browser: WebDriver
                                  ) -> None:
    daemon, port = console_daemon(procs, tmp_path)
    procs.worker(daemon, "long", "steps")
    with daemon.client() as client:
        job = client.submit("long", {"steps": 40, "sleep": 0.5})
    browser.get(f"http://127.0.0.1:{port}/running")
    wait_for(lambda: job in browser.page_source, timeout=30, message="the job shown running")

    def done_shown() -> float:  # read in one script: the live part may be replaced any time
        text = browser.execute_script(
            "var c = document.querySelector(arguments[0]); return c ? c.dataset.done : '';",
            f'tr[data-job="{job}"] td.progress')
        return float(text) if text else -1.0

    wait_for(lambda: done_shown() >= 1, timeout=30, message="some progress shown")
    first = done_shown()
    url = browser.current_url
    shot(browser, "running-1")
    wait_for(lambda: done_shown() >= first + 2, timeout=30,
             message="the progress moving on the same page")
    assert browser.current_url == url
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-updated")
    shot(browser, "running-2")
    with daemon.client() as client:  # the store agrees: a checkpoint at least that far
        shown = done_shown()
        state = client.fetch("long", job, "state")
        assert isinstance(state, int) and state >= shown - 1
