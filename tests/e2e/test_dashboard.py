"""The admin dashboard at /ui in headless Chromium (Playwright): signing in, a chart of the
requests just made, creating and revoking a key, and a user key that sees only its own usage.

Screenshots of each page go to ``SWITCHYARD_SCREENSHOTS`` when it is set (the ones in
docs/img are made that way: ``make screenshots``), else to the test's temporary folder.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import Gateway, wait_until

# Chromium from the Debian packages, started as the machine allows (no sandbox as root, no
# background connections on a closed network).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    assert Path(chromium).exists(), "Chromium is missing: `make install-browser` installs it"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SWITCHYARD_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _sign_in(page: Page, origin: str, key: str) -> None:
    page.goto(origin + "/ui/")
    page.fill("#api-key", key)
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#view")).to_have_attribute("data-ready", "overview")


def _go(page: Page, view: str) -> None:
    page.evaluate(f"location.hash = '#/{view}'")
    expect(page.locator("#view")).to_have_attribute("data-ready", view)


def test_an_admin_sees_the_requests_just_made_and_manages_keys(gateway: Gateway, browser: Browser, shots: Path) -> None:
    user = "ui-" + secrets.token_hex(4)
    key = gateway.new_user_key(user)
    client = gateway.client(key)
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "for the chart"}])
    wait_until(lambda: gateway.requests_metered(user) == 3, what="the requests to be metered")

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("dialog", lambda dialog: dialog.accept())
    bad = page.goto(gateway.origin + "/ui/")
    assert bad is not None and bad.ok
    page.fill("#api-key", "sk-sy-not-a-key")
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#sign-in-error")).to_have_text("That key is not valid.")

    _sign_in(page, gateway.origin, gateway.info.admin_key)
    page.select_option("#overview-group_by", "user")
    series = page.locator(f'#usage-chart .legend span[data-key="{user}"]')
    expect(series).to_have_text(f"{user}: 3")
    assert page.locator(f'#usage-chart path[data-key="{user}"]').get_attribute("data-total") == "3"
    expect(page.locator("#top-users")).to_contain_text(user)
    expect(page.locator('[data-stat="latency"] .value')).to_contain_text("ms")
    page.screenshot(path=str(shots / "dashboard-overview.png"), full_page=True)

    _go(page, "requests")
    page.fill("#request-filters input[name=user]", user)
    page.click("#request-filters button[type=submit]")
    expect(page.locator("#request-log tbody tr")).to_have_count(3)
    page.screenshot(path=str(shots / "dashboard-requests.png"), full_page=True)

    # A key made in the dashboard: its secret shown once, usable at once, then revoked.
    _go(page, "keys")
    made = "ui-made-" + secrets.token_hex(4)
    page.fill("#create-key input[name=user]", made)
    page.fill("#create-key input[name=rpm]", "60")
    page.click("#create-key button[type=submit]")
    secret = page.locator("#new-key-secret").inner_text()
    assert secret.startswith("sk-sy-")
    assert gateway.admin("GET", "/v1/models", key=secret).status_code == 200
    row = page.locator("#key-list tbody tr", has_text=made)
    expect(row).to_have_count(1)
    expect(row.locator("input[name=rpm]")).to_have_value("60")
    key_id = row.locator("button[data-revoke]").get_attribute("data-revoke")
    row.locator("input[name=rpm]").fill("30")
    row.locator("button", has_text="Save limits").click()
    wait_until(lambda: gateway.admin("GET", f"/ai/keys/{key_id}").json()["rpm"] == 30, what="the limit change")
    page.screenshot(path=str(shots / "dashboard-keys.png"), full_page=True)
    page.locator(f'button[data-revoke="{key_id}"]').click()
    expect(page.locator("#key-list tbody tr", has_text=made)).to_have_count(0)
    assert gateway.admin("GET", "/v1/models", key=secret).status_code == 401

    for view in ("providers", "routes", "status"):
        _go(page, view)
        page.screenshot(path=str(shots / f"dashboard-{view}.png"), full_page=True)
    expect(page.locator("#instances")).to_contain_text("metering")
    page.close()


def test_a_user_key_sees_only_its_own_usage(gateway: Gateway, browser: Browser) -> None:
    mine, theirs = "ui-own-" + secrets.token_hex(4), "ui-other-" + secrets.token_hex(4)
    my_key, their_key = gateway.new_user_key(mine), gateway.new_user_key(theirs)
    for key in (my_key, their_key):
        gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    wait_until(lambda: gateway.requests_metered(mine) == 1 and gateway.requests_metered(theirs) == 1, what="metering")

    page = browser.new_page()
    _sign_in(page, gateway.origin, my_key)
    expect(page.locator("#who-name")).to_have_text(f"{mine} (client key)")
    for admin_only in ("providers", "routes", "status"):
        expect(page.locator(f'nav a[data-view="{admin_only}"]')).to_be_hidden()
    page.select_option("#overview-group_by", "user")
    expect(page.locator("#usage-chart .legend span")).to_have_count(1)
    expect(page.locator("#usage-chart .legend span")).to_have_text(f"{mine}: 1")
    expect(page.locator("#top-users tbody tr")).to_have_count(1)
    expect(page.locator("#top-users")).not_to_contain_text(theirs)

    _go(page, "requests")
    expect(page.locator("#request-log tbody tr")).to_have_count(1)
    expect(page.locator("#request-log")).not_to_contain_text(theirs)
    _go(page, "keys")
    expect(page.locator("#key-list tbody tr")).to_have_count(1)
    expect(page.locator("#key-list")).not_to_contain_text(theirs)
    page.close()


def test_usage_of_a_model_without_a_price_is_flagged_not_shown_as_free(gateway: Gateway, browser: Browser) -> None:
    user = "ui-unpriced-" + secrets.token_hex(4)
    key = gateway.new_user_key(user)
    client = gateway.client(key)
    client.chat.completions.create(model="gpt-sim-no-price", messages=[{"role": "user", "content": "x"}])
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    wait_until(lambda: gateway.requests_metered(user) == 2, what="metering")

    page = browser.new_page()
    _sign_in(page, gateway.origin, key)
    expect(page.locator('[data-stat="cost"] .note')).to_have_text("1 request(s) without a price, counted as $0")
    unpriced = page.locator("#top-models tbody tr", has_text="gpt-sim-no-price")
    expect(unpriced.locator(".badge")).to_have_text("no price")
    priced = page.locator("#top-models tbody tr", has_text="gpt-4o-mini")
    expect(priced).to_have_count(1)
    expect(priced.locator(".badge")).to_have_count(0)
    page.close()
