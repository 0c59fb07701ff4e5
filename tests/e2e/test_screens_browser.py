"""The screens in a real browser (Debian's headless Chromium, driven by Playwright) on a
running hostwright with a simulated node: what a customer and staff see, live.

- A customer opens the client link WHMCS minted: the splash advances step by step while the
  node's gates open one after another, and turns into the dashboard without a reload (a value
  the test left in the page's JavaScript survives); a step the node fails shows the error
  screen, and Try again once the node is back ends on the dashboard. On SQLite with one
  ``hostwright up`` and on RabbitMQ + PostgreSQL with every part a process.
- Staff sign in, find the service, watch its Deploy tab change live, read a task's log
  streamed while its step is held on the node, delete the succeeded tasks from the queue in
  bulk and see the queue change (the same post from a form on another site is refused), and
  change a setting: a bad value shows the API's own message and changes nothing.
- Markup a node puts in a step's log line stays text in the console, streamed or recorded.

Screenshots go to each test's folder; with ``HOSTWRIGHT_SAVE_SCREENSHOTS=1`` the splash and
the console are saved to ``docs/screens/`` for the README.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from tests.support.browser import Browser, browser, eventually, save_readme_shot
from tests.support.deployment import Deployment, wait_until
from tests.support.screens_deployment import (
    EmbeddedDeployment,
    client_link,
    fail,
    heal,
    hold,
    order_unified,
    running_system,
)
from tests.support.worker_groups import POSTGRES_DEPLOYMENTS

__all__ = ["browser"]  # the fixture, imported for the tests here

STREAM_FLIPS = 5  # the DNS records step runs 7 commands: a gate stays shut after 5 flips
SCREENS = pytest.mark.xdist_group("screens-browser")  # one worker: each starts a whole system
pytestmark = pytest.mark.slow

# Every mutation of the page is noted: each distinct list of (step, state) of a timeline, in
# the order the page showed them (evaluated through the DevTools protocol: the page's CSP,
# which forbids inline scripts, does not apply to it).
OBSERVE_TIMELINE = """(selector) => {
  window.__seen = [];
  const snap = () => JSON.stringify(Array.from(
      document.querySelectorAll(selector + ' li[data-step]'),
      (li) => [li.dataset.step, li.dataset.state]));
  const note = () => {
    const now = snap();
    if (window.__seen[window.__seen.length - 1] !== now) window.__seen.push(now);
  };
  note();
  new MutationObserver(note).observe(document.body,
      {subtree: true, childList: true, attributes: true, characterData: true});
}"""


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=SCREENS),
        pytest.param("postgresql", marks=POSTGRES_DEPLOYMENTS),
    ]
)
def unstarted(request: pytest.FixtureRequest, tmp_path: Path) -> Deployment:
    """SQLite + in-process transport (one ``up``), or RabbitMQ + PostgreSQL (a process per
    part); the session's broker and database fixtures are asked for outside the event loop."""
    if request.param == "sqlite":
        return EmbeddedDeployment(tmp_path)
    return Deployment(
        tmp_path,
        request.getfixturevalue("amqp_url"),
        request.getfixturevalue("exchange_name"),
        request.getfixturevalue("fresh_postgres_url"),
    )


@pytest.fixture
async def system(unstarted: Deployment) -> AsyncIterator[Deployment]:
    async with running_system(unstarted) as running:
        yield running


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[Deployment]:
    async with running_system(EmbeddedDeployment(tmp_path)) as running:
        yield running


# --- reading the page ------------------------------------------------------------------


async def steps_of(page: Page, selector: str) -> dict[str, str]:
    """The timeline as the page shows it: step → state."""
    found: list[list[str]] = await page.eval_on_selector_all(
        f"{selector} li[data-step]", "els => els.map(li => [li.dataset.step, li.dataset.state])"
    )
    return dict((step, state) for step, state in found)


async def visible_screen(page: Page) -> list[str]:
    """Which of the client area's three screens are shown (exactly one should be)."""
    shown = []
    for screen in ("#splash", "#dashboard", "#error-screen"):
        if await page.is_visible(screen):
            shown.append(screen)
    return shown


async def wait_steps(page: Page, selector: str, wanted: dict[str, str], what: str) -> None:
    async def there() -> bool:
        steps = await steps_of(page, selector)
        return all(steps.get(step) == state for step, state in wanted.items())

    await eventually(there, 30, what, page)


async def wait_screen(page: Page, screen: str) -> None:
    async def shown() -> bool:
        return await visible_screen(page) == [screen]

    await eventually(shown, 60, f"{screen} alone shown", page)


async def seen_timelines(page: Page) -> list[dict[str, str]]:
    seen: list[str] = await page.evaluate("window.__seen")
    return [dict(json.loads(snapshot)) for snapshot in seen]


def done_count(steps: dict[str, str]) -> int:
    return sum(1 for state in steps.values() if state == "done")


# --- the customer ------------------------------------------------------------------------


async def test_the_splash_advances_step_by_step_and_turns_into_the_dashboard_without_a_reload(
    system: Deployment, browser: Browser
) -> None:
    hold(system, "v-add-user")  # the first gate: the service's user
    await order_unified(system, 101)
    page = await browser.page()
    await page.goto(await minted_link(system, 101))
    await page.evaluate("window.__loaded = 'the first load'")
    await page.evaluate(OBSERVE_TIMELINE, "#timeline")

    await wait_steps(page, "#timeline", {"web.package": "done", "web.user": "running"}, "gate 1")
    assert await visible_screen(page) == ["#splash"]
    assert (await page.inner_text("#status")).strip() == "provisioning"
    steps = await steps_of(page, "#timeline")
    assert {steps[s] for s in ("web.domain", "mail.domain", "dns.zone@uni1")} == {"waiting"}
    bar = page.locator("#progress-bar")
    assert await bar.get_attribute("data-done") == "1"
    assert await bar.get_attribute("data-total") == str(len(steps))
    save_readme_shot(await browser.shot(page, "splash"), "splash")  # the README's

    hold(system, "v-add-web-domain")  # the user goes through; the web domain waits
    await wait_steps(
        page,
        "#timeline",
        {"web.user": "done", "web.domain": "running", "dns.records@uni1": "done"},
        "gate 2",
    )
    assert await visible_screen(page) == ["#splash"]
    assert await page.locator("#activity li").count() > 0

    heal(system)
    await wait_screen(page, "#dashboard")
    assert await page.evaluate("window.__loaded") == "the first load", "the page was reloaded"
    assert (await page.inner_text("#status")).strip() == "active"
    seen = [steps for steps in await seen_timelines(page) if steps]
    assert len(seen) >= 3, seen  # at least: gate 1, gate 2, every step done
    assert [done_count(s) for s in seen] == sorted(done_count(s) for s in seen), seen
    assert set(seen[-1].values()) == {"done"}, seen[-1]
    await browser.shot(page, "dashboard")
    assert not [e for e in browser.errors if e.startswith("page error")], browser.errors


async def test_a_failing_node_shows_the_error_screen_and_try_again_ends_on_the_dashboard(
    system: Deployment, browser: Browser
) -> None:
    fail(system, "v-add-web-domain")
    await order_unified(system, 102)
    page = await browser.page()
    await page.goto(await minted_link(system, 102))
    await wait_screen(page, "#error-screen")
    assert (await page.inner_text("#status")).strip() == "deploy_failed"
    said = (await page.inner_text("#error-text")).strip()
    assert said and "Traceback" not in said
    assert (await steps_of(page, "#timeline"))["web.domain"] == "failed"
    await browser.shot(page, "error-screen")

    heal(system)  # the node is back
    await page.click("#retry-button")
    await wait_screen(page, "#dashboard")
    assert (await page.inner_text("#status")).strip() == "active"
    assert not [e for e in browser.errors if e.startswith("page error")], browser.errors


async def minted_link(system: Deployment, service_id: int) -> str:
    """The link, once the views know the service (the order is answered before)."""

    async def known() -> bool:
        return (await system.client.get(f"/v1/services/{service_id}")).status_code == 200

    await wait_until(known, 30, f"service {service_id} in the views")
    return await client_link(system, service_id)


# --- staff -------------------------------------------------------------------------------


async def sign_in(page: Page, system: Deployment) -> None:
    base = str(system.client.base_url)
    await page.goto(f"{base}/admin/services")
    assert page.url.startswith(f"{base}/admin/sign-in"), page.url  # no session: the sign-in
    await page.fill("form#sign-in input[name=token]", system.staff_token)
    await page.press("form#sign-in input[name=token]", "Enter")
    await page.wait_for_url(lambda url: "/admin/sign-in" not in url)


async def task_of(system: Deployment, service_id: int, step: str) -> dict[str, Any]:
    reply = await system.staff.get("/v1/tasks", params={"service_id": str(service_id)})
    found: list[dict[str, Any]] = [t for t in reply.json()["tasks"] if t["step"] == step]
    assert len(found) == 1, reply.text
    return found[0]


async def test_staff_watch_a_deploy_live_read_a_streamed_log_and_run_the_queue_and_settings(
    system: Deployment, browser: Browser
) -> None:
    base = str(system.client.base_url)
    page = await browser.page()
    await sign_in(page, system)

    # find the service
    hold(system, "v-add-web-domain", "v-add-dns-record")
    await order_unified(system, 201)
    await minted_link(system, 201)  # in the views by now
    await page.goto(f"{base}/admin/services")
    await page.fill("form#service-search input[name=q]", "site201.example.org")
    await page.press("form#service-search input[name=q]", "Enter")
    row = page.locator("#services-table tr[data-service-id='201']")
    await row.wait_for()
    assert await page.locator("#services-table tr[data-service-id]").count() == 1
    await browser.shot(page, "console-services")

    # its Deploy tab, live: held on the web domain and the DNS records' first record
    await page.goto(f"{base}/admin/services/201?tab=deploy")
    await page.evaluate("window.__loaded = 'the first load'")
    await page.evaluate(OBSERVE_TIMELINE, "#deploy-timeline")
    await wait_steps(
        page,
        "#deploy-timeline",
        {"web.domain": "running", "dns.records@uni1": "running", "mail.dkim": "done"},
        "the deploy at its gates",
    )
    save_readme_shot(await browser.shot(page, "console-deploy"), "console")  # the README's

    # the DNS records' log, streamed while its step is held on the node
    records = await task_of(system, 201, "dns.records@uni1")
    log_page = await browser.page()
    await sign_in(log_page, system)
    await log_page.goto(f"{base}/admin/tasks/{records['task_id']}")

    async def streamed() -> bool:
        return "dns-record u201" in await log_page.inner_text("#task-log")

    # The page hears only the lines logged after it began to listen, and nothing says when
    # that is: the step's commands are let through one at a time (the gate moves between its
    # two commands), each line waited for, until one shows while the step is held again.
    for flip in range(STREAM_FLIPS):
        hold(system, "v-add-web-domain", ("v-delete-dns-record", "v-add-dns-record")[flip % 2])
        with contextlib.suppress(AssertionError):
            await wait_until(streamed, 5, "a line")
            break
    assert await streamed(), await log_page.inner_text("#task-log")
    # its attempt still runs (the task view's "dispatched"): the line came before the end
    assert (await task_of(system, 201, "dns.records@uni1"))["state"] == "dispatched"
    assert "attempt 1 succeeded" not in await log_page.inner_text("#task-log")
    await browser.shot(log_page, "console-task-log")

    heal(system)

    async def ended() -> bool:
        return "attempt 1 succeeded" in await log_page.inner_text("#task-log")

    await eventually(ended, 30, "the step's end in the log", log_page)

    async def all_done() -> bool:
        return set((await steps_of(page, "#deploy-timeline")).values()) == {"done"}

    await eventually(all_done, 30, "every step done on the Deploy tab", page)
    assert await page.evaluate("window.__loaded") == "the first load", "the tab was reloaded"
    seen = [steps for steps in await seen_timelines(page) if steps]
    assert len(seen) >= 2 and set(seen[-1].values()) == {"done"}, seen
    await system.wait_status([201], "active", 30)

    # the queue: delete the succeeded tasks in bulk
    await page.goto(f"{base}/admin/tasks")
    succeeded = page.locator("#queue-table tr[data-task-id][data-state='succeeded']")
    assert await succeeded.count() == 7
    # the same bulk action posted by a form on another site, with the signed-in session's
    # cookie (in a browser context of its own, so the console's tab is left as it is): refused
    elsewhere = await browser.page()
    await elsewhere.context.add_cookies(await page.context.cookies())
    await elsewhere.set_content(
        f'<form method="post" action="{base}/admin/tasks/bulk">'
        '<input name="action" value="delete-succeeded"><input name="confirm" value="yes"></form>'
    )
    async with elsewhere.expect_response(lambda r: r.url.endswith("/admin/tasks/bulk")) as sent:
        # submitted after evaluate returns: the navigation ends the script's context
        await elsewhere.evaluate("setTimeout(() => document.forms[0].submit(), 0)")
    assert (await sent.value).status == 403
    assert len((await system.staff.get("/v1/tasks")).json()["tasks"]) == 7

    bulk = page.locator("form.bulk[data-action='delete-succeeded']")
    await bulk.locator("input[name=confirm]").check()
    await bulk.locator("button, input[type=submit]").first.click()

    async def emptied() -> bool:
        return await succeeded.count() == 0

    await eventually(emptied, 30, "the succeeded tasks gone from the queue", page)
    assert (await system.staff.get("/v1/tasks")).json()["tasks"] == []

    # a setting: a bad value shows the API's own message and changes nothing
    before = (await system.staff.get("/v1/settings")).json()
    refused = await system.staff.put("/v1/settings", json={"batch_size": 0})
    assert refused.status_code == 422
    message = refused.json()["error"]
    await page.goto(f"{base}/admin/settings")
    await page.fill("#settings-form [name=batch_size]", "0")
    await page.press("#settings-form [name=batch_size]", "Enter")
    flash = page.locator(".flash.error")
    await flash.wait_for()
    assert message in await flash.inner_text()
    assert (await system.staff.get("/v1/settings")).json() == before
    assert not [e for e in browser.errors if e.startswith("page error")], browser.errors


# an MX target (dots enough for the node to take it) that is markup
HOSTILE = "<img src=x id=hostile-img>.<b id=hostile-b>x</b>.example.org"


@SCREENS
async def test_a_hostile_line_a_node_puts_in_a_tasks_log_stays_text(
    embedded: Deployment, browser: Browser
) -> None:
    """A record the node holds in the service's zone, with markup in its value, comes back in
    the DNS records step's log line (the step replaces an MX it did not want, naming its
    value): streamed or recorded, the console shows it as text, never as an element."""
    system = embedded
    base = str(system.client.base_url)
    hold(system, "v-list-dns-records")  # the records step's first listing waits
    await order_unified(system, 301)

    async def zone_made() -> bool:
        reply = await system.staff.get("/v1/tasks", params={"service_id": "301"})
        states = {t["step"]: t["state"] for t in reply.json()["tasks"]}
        return states.get("dns.zone@uni1") == "succeeded"

    await wait_until(zone_made, 30, "the zone of service 301")
    await system.on_node(
        "uni1", "v-add-dns-record", "u301", "site301.example.org", "@", "MX", HOSTILE
    )
    page = await browser.page()
    await sign_in(page, system)
    records = await task_of(system, 301, "dns.records@uni1")
    await page.goto(f"{base}/admin/tasks/{records['task_id']}")
    heal(system)

    async def ended() -> bool:
        return "attempt 1 succeeded" in await page.inner_text("#task-log")

    await eventually(ended, 30, "the records step's end in the log", page)
    for shown in ("streamed", "rendered by the server"):
        text = await page.inner_text("#task-log")
        assert HOSTILE in text, f"{shown}:\n{text}"
        assert await page.locator("#task-log *").count() == 0, shown
        assert await page.locator("#hostile-img, #hostile-b").count() == 0, shown
        await page.reload()
    await browser.shot(page, "console-hostile-log")
