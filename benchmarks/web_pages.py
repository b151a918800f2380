"""`make bench-web` (second part): the pages of `alprd web` over what the real
daemon stored, shot in headless Chromium. `alprd run` reads the rear-view and
dashcam videos as two cameras into a fresh state directory; while it runs,
`alprd web` serves it and each page (live, a search by `L41*`, the L417VS pass,
cameras and engines, the search at phone width) is saved as a PNG in `--out`.
Needs Debian's `chromium` and `chromium-driver`."""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from benchmarks import DATA, REPO

VIDEOS = (("rear", "rear-nl-L417VS.mp4"), ("dashcam", "dashcam-in-KA22P3368.mp4"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"error: no {what} within {timeout:.0f} s")
        time.sleep(0.2)


def config(site: Path, videos: Path, port: int) -> Path:
    cameras = "".join(
        f'[[cameras]]\nname = "{name}"\nurl = "{videos / file}"\nfps = 5\n' for name, file in VIDEOS
    )
    path = site / "alprd.toml"
    path.write_text(
        f'[paths]\nroot = "{site}"\nmodels_dir = "{REPO / "models"}"\n'
        f'cache_dir = "{REPO / "cache"}"\nstate_dir = "state"\n'
        '[plates.known]\nKA22P3368 = "delivery"\n'
        f'[metrics]\nenabled = false\n[web]\nport = {port}\ntime_zone = "Europe/Amsterdam"\n'
        + cameras
    )
    return path


def passes(log: Path) -> list[dict]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") == "plate_event":
            out.append(rec)
    return out


def shoot(url: str, out: Path) -> list[Path]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        raise SystemExit("error: needs Debian's chromium and chromium-driver")
    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1200,800", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(arg)
    options.binary_location = chromium
    d = webdriver.Chrome(options=options, service=Service(driver_path))
    saved = []

    def save(name: str) -> None:
        """The whole page: the window grown to the page's height first."""
        width = d.get_window_size()["width"]
        height = d.execute_script("return document.body.getBoundingClientRect().bottom")
        d.set_window_size(width, max(400, int(height) + 140))  # + the browser's frame
        path = out / f"{name}.png"
        d.save_screenshot(str(path))
        saved.append(path)

    try:
        d.get(url + "/")
        wait(lambda: len(d.find_elements(By.CSS_SELECTOR, "#events tr[data-id]")) >= 2,
             15, "two events on the live page")  # fmt: skip
        save("live")
        d.get(url + "/search?plate=L41*")
        save("search")
        d.find_element(By.CSS_SELECTOR, "#events td.plate a").click()
        wait(lambda: "/events/" in d.current_url, 10, "detail page")
        images = d.find_elements(By.CSS_SELECTOR, ".images img")
        wait(lambda: all(d.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0", i) for i in images),
            10, "crops")  # fmt: skip
        save("event")
        d.get(url + "/status")
        save("status")
        d.set_window_size(390, 844)
        d.get(url + "/search?plate=L41*")
        save("search-phone")
    finally:
        d.quit()
    return saved


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--videos", type=Path, default=DATA / "videos")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "web-pages")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds for the two passes")
    args = p.parse_args()
    missing = [f for _, f in VIDEOS if not (args.videos / f).is_file()]
    if missing:
        print(f"skipped: {', '.join(missing)} not in {args.videos} (ALPRD_TEST_DATA)")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="alprd-pages-") as tmp:
        site = Path(tmp)
        port = free_port()
        cfg = config(site, args.videos, port)
        log = site / "daemon.log"
        alprd = [sys.executable, "-m", "alprd"]
        with log.open("wb") as sink:
            daemon = subprocess.Popen(
                [*alprd, "run", "--config", str(cfg), "--log-format", "json"], stderr=sink
            )
        web = subprocess.Popen([*alprd, "--config", str(cfg), "web"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            t0 = time.monotonic()
            wait(lambda: len(passes(log)) >= 2 or daemon.poll() is not None, args.timeout,
                 "two passes from the daemon")  # fmt: skip
            if daemon.poll() is not None:
                raise SystemExit(f"error: alprd run exited {daemon.returncode}; see {log}")
            print(f"daemon: {[(e['camera'], e['plate']) for e in passes(log)]} "
                  f"in {time.monotonic() - t0:.0f} s")  # fmt: skip

            def answers() -> bool:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/cameras", timeout=2)
                except OSError:
                    return False
                return True

            wait(answers, 30, "answer from alprd web")
            for path in shoot(f"http://127.0.0.1:{port}", args.out):
                print(f"saved {path}")
        finally:
            web.terminate()
            daemon.send_signal(signal.SIGTERM)
            web.wait(10)
            daemon.wait(60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
