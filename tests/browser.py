"""Look at a page as a person would: headless Chromium (Debian's chromium and chromium-driver)
through Selenium. Used by the tests and by scripts/report_screenshot.py."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,1500",
]


@dataclass
class PageCheck:
    images: int
    images_decoded: int
    console_errors: list[str]
    title: str


NO_CHROMIUM = "SKIPPED: needs Debian's chromium and chromium-driver (make test installs them)"


def chromium_available() -> bool:
    return bool(shutil.which("chromium") and shutil.which("chromedriver"))


def check_page(html: Path, screenshot: Path | None = None) -> PageCheck:
    """Open ``html`` (a file) in headless Chromium; count decoded images and console errors."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory() as profile:
        options.add_argument(f"--user-data-dir={profile}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        try:
            driver.get(Path(html).resolve().as_uri())
            images = driver.execute_script("return document.images.length")
            decoded = driver.execute_script(
                "return Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length"
            )
            errors = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
            if screenshot is not None:  # the first screenful, as a reader opening the page sees it
                driver.save_screenshot(str(screenshot))
            return PageCheck(images, decoded, errors, driver.title)
        finally:
            driver.quit()
