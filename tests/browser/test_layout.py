"""The console on a phone (375 px wide) and in dark mode."""

from __future__ import annotations

import re

from playwright.async_api import Page

from tests.browser.helpers import BROWSER_MARKS, Console, OpenPage, sign_in

pytestmark = BROWSER_MARKS

# The page's background as painted: the first element from body up whose background colour is
# not transparent (the canvas takes html's, else body's).
BACKGROUND = """() => {
  for (const element of [document.body, document.documentElement]) {
    const colour = getComputedStyle(element).backgroundColor;
    if (colour !== 'rgba(0, 0, 0, 0)' && colour !== 'transparent') return colour;
  }
  return 'transparent';
}"""


def luminance(colour: str) -> float:
    """0 (black) to 255 (white), from `rgb(r, g, b)` or `rgba(r, g, b, a)`."""
    red, green, blue = (float(part) for part in re.findall(r"[\d.]+", colour)[:3])
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


async def test_at_375_px_wide_the_page_has_no_horizontal_scroll(
    open_page: OpenPage, console: Console
) -> None:
    page = await open_page(viewport={"width": 375, "height": 812}, is_mobile=True)
    await sign_in(page, console)
    assert await page.locator("section#runs tr[data-run-id]").count() > 0
    page_width, body_width, viewport = await page.evaluate(
        "() => [document.documentElement.scrollWidth, document.body.scrollWidth, window.innerWidth]"
    )
    assert viewport == 375
    assert page_width <= viewport
    assert body_width <= viewport
    # Nor is anything cut off at the right edge (html or body with overflow-x hidden would
    # hide the scroll bar, not the problem); a box that scrolls sideways itself may be wider.
    cut_off = await page.evaluate(
        """() => {
          const inScroller = e => {
            for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
              if (getComputedStyle(a).overflowX !== 'visible') return true;
            }
            return false;
          };
          return [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && !inScroller(e))
            .slice(0, 5).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : ''));
        }"""
    )
    assert cut_off == [], f"elements past the right edge at 375 px: {cut_off}"


async def test_dark_mode_follows_the_system_and_darkens_the_background(
    page: Page, console: Console
) -> None:
    await page.emulate_media(color_scheme="light")
    await sign_in(page, console)
    light = await page.evaluate(BACKGROUND)

    await page.emulate_media(color_scheme="dark")
    dark = await page.evaluate(BACKGROUND)

    assert dark != light, (light, dark)
    assert dark != "transparent"
    assert luminance(dark) < luminance(light), (light, dark)
