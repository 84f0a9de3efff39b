"""The web page in headless Chromium: pick a user, see recommendations, click one, see them change.

Needs Debian's chromium and chromium-driver (.ci/run installs them); skipped with the reason
when they are absent. The server is a real uvicorn process on loopback.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from recloop.serving.testing import running_server, tiny_world, world_settings

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser() -> Iterator[object]:
    if not (CHROMIUM and CHROMEDRIVER):
        missing = "chromium and chromedriver are not installed (apt-get install chromium-driver)"
        pytest.skip(reason=missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.mark.slow
def test_click_a_recommendation_and_see_the_list_change(browser: object, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    world = tiny_world(tmp_path / "world")
    with running_server(world_settings(world)) as url:
        driver.get(url + "/")  # type: ignore[attr-defined]
        wait = WebDriverWait(driver, 10)
        user = driver.find_element(By.ID, "user")  # type: ignore[attr-defined]
        user.clear()
        user.send_keys("visitor-web-1")
        driver.find_element(By.ID, "load").click()  # type: ignore[attr-defined]
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#items li")))
        items = driver.find_elements(By.CSS_SELECTOR, "#items li")  # type: ignore[attr-defined]
        before = [li.get_attribute("data-item-id") for li in items]
        assert len(before) == 10
        assert "cold_start" in driver.find_element(By.ID, "status").text  # type: ignore[attr-defined]
        assert items[0].find_element(By.CSS_SELECTOR, ".title").text.startswith("Title")
        clicked = before[1]
        items[1].click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "personalised"))
        after = [
            li.get_attribute("data-item-id")
            for li in driver.find_elements(By.CSS_SELECTOR, "#items li")  # type: ignore[attr-defined]
        ]
        assert clicked not in after
        assert after != before
        assert "Clicked" in driver.find_element(By.ID, "clicked").text  # type: ignore[attr-defined]
        driver.save_screenshot("/tmp/recloop-web-page.png")  # type: ignore[attr-defined]
