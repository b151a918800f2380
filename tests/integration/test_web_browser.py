"""`alprd web` in a real browser: Debian's headless Chromium driven by Selenium
(`chromium` and `chromium-driver`, which `.ci/run` installs), over the real
command and a store the daemon's sinks wrote. Screenshots of each page go to
``$ALPRD_SCREENSHOTS`` when set."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.servers import free_port, wait_until
from support.web import Site, serve, write_events

from alprd import config as cfgmod

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None, reason="no chromium / chromedriver (apt: chromium-driver)"
)


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,900"):  # fmt: skip
        options.add_argument(arg)
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    yield driver
    driver.quit()


def shot(driver, name: str) -> None:
    folder = os.environ.get("ALPRD_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))


def test_live_search_detail_and_images_in_a_browser(tmp_path, browser):
    from selenium.webdriver.common.by import By

    port = free_port()
    config = tmp_path / "alprd.toml"
    config.write_text(f'[paths]\nroot = "."\nstate_dir = "state"\n[web]\nport = {port}\n')
    site = Site(tmp_path, config, port)
    loaded = cfgmod.load(config)
    events = write_events(loaded, 20, start=time.time() - 3600)
    proc = serve(site)
    try:
        d = browser
        d.get(site.url + "/")
        rows = d.find_elements(By.CSS_SELECTOR, "#events tr[data-id]")
        assert rows[0].get_attribute("data-id") == events[-1]["id"] and len(rows) == 20
        # a new pass stored while the page is open appears without a reload
        new = write_events(loaded, 1, start=time.time())[0]
        # read in one script: the live page replaces rows, so a row found by one call
        # can be gone by the next
        first_id = "return document.querySelector('#events tr[data-id]')?.dataset.id"
        wait_until(lambda: d.execute_script(first_id) == new["id"], timeout=15,
                   what="the new event on the live page")  # fmt: skip
        shot(d, "live")
        # search by a pattern, as a person types it
        d.get(site.url + "/search")
        box = d.find_element(By.NAME, "plate")
        box.send_keys("l41*")
        box.submit()
        wait_until(lambda: "/search?" in d.current_url, timeout=10, what="the search")
        plates = [e.text for e in d.find_elements(By.CSS_SELECTOR, "#events td.plate")]
        assert plates and all(p.startswith("L41") for p in plates), plates
        shot(d, "search")
        # the detail page of the first result, its crops loaded
        d.find_element(By.CSS_SELECTOR, "#events td.plate a").click()
        wait_until(lambda: "/events/" in d.current_url, timeout=10, what="the detail page")
        images = d.find_elements(By.CSS_SELECTOR, ".images img")
        assert len(images) == 2
        wait_until(lambda: all(d.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0", i) for i in images),
            timeout=10, what="the crops to load")  # fmt: skip
        assert d.find_element(By.CSS_SELECTOR, "h1.plate").text.startswith("L41")
        shot(d, "event")
        d.get(site.url + "/status")
        assert "alprd is not running" in d.page_source
        # on a phone: nothing wider than the screen
        d.set_window_size(390, 844)
        d.get(site.url + "/search?plate=L41*")
        assert d.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1"
        )
        shot(d, "search-phone")
        errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors  # no script error, nothing refused by the CSP
    finally:
        proc.terminate()
        proc.wait(10)
