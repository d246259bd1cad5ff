"""Accessible basics of every dashboard page, checked in a real browser (headless Chromium) on a real embedded
server: every control has a name, text has the contrast WCAG 2 AA asks of it (4.5:1, 3:1 for large text), the
focused control shows an outline that stands out (3:1), a phone-sized screen needs no sideways scrolling, and
the keyboard reaches the content first ("Skip to content") and then every control in order."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.e2e.local_project import local_project

FLOWS = textwrap.dedent('''
    from pushpool import flow, get_run_logger

    @flow
    def greet(name: str = "world", times: int = 1, loud: bool = False) -> None:
        get_run_logger().info(f"hello {name}")
''')

#: In the page: the contrast ratio of two CSS colours (WCAG 2 relative luminance), the background an element's
#: text is drawn on (the first ancestor with an opaque background), whether an element is shown.
HELPERS = """
  const rgb = (css) => (css.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92
                                                      : Math.pow((v + 0.055) / 1.055, 2.4); })
                                       .reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
  const ratio = (a, b) => { const [x, y] = [lum(rgb(a)), lum(rgb(b))].sort((p, q) => q - p);
                            return (x + 0.05) / (y + 0.05); };
  const background = (el) => { for (; el; el = el.parentElement) { const c = getComputedStyle(el).backgroundColor;
                                 const parts = rgb(c); if (parts.length === 3 || parts[3] > 0.5) return c; }
                               return "rgb(255, 255, 255)"; };
  const visible = (el) => { const r = el.getBoundingClientRect(); const s = getComputedStyle(el);
                            return r.width > 0 && r.height > 0 && s.visibility !== "hidden"; };
"""
#: What fails on this page: a control without a name, a picture without one, text below its contrast, sideways
#: scrolling.
CHECKS = "() => {" + HELPERS + """
  const problems = [];
  for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea, button")) {
    if (!visible(el)) continue;
    const named = el.labels && el.labels.length || el.getAttribute("aria-label") ||
                  el.getAttribute("aria-labelledby") || (el.tagName === "BUTTON" && el.textContent.trim());
    if (!named) problems.push(`no name: ${el.outerHTML.slice(0, 80)}`);
  }
  for (const el of document.querySelectorAll("svg")) {
    if (!el.getAttribute("aria-hidden") && !el.getAttribute("aria-label") && !el.querySelector("title"))
      problems.push(`svg without a name: ${el.outerHTML.slice(0, 80)}`);
  }
  for (const el of document.querySelectorAll("body *")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !visible(el) || el.closest("svg")) continue;
    const s = getComputedStyle(el);
    const large = parseFloat(s.fontSize) >= 24 || (parseFloat(s.fontSize) >= 18.66 && +s.fontWeight >= 700);
    const got = ratio(s.color, background(el));
    if (got < (large ? 3 : 4.5))
      problems.push(`contrast ${got.toFixed(2)}: ${el.tagName} "${el.textContent.trim().slice(0, 40)}"`);
  }
  if (document.documentElement.scrollWidth > window.innerWidth + 1) {
    const wide = [...document.querySelectorAll("body *")].filter((el) => el.getBoundingClientRect().right >
      window.innerWidth + 1).map((el) => el.parentElement.tagName + ">" + el.outerHTML.slice(0, 60)).slice(0, 3);
    problems.push(`scrolls sideways: ${document.documentElement.scrollWidth} > ${window.innerWidth} (${wide})`);
  }
  return problems;
}"""

#: The focused element, its outline, and the outline's contrast with what it is drawn on (around the element).
FOCUS = "() => {" + HELPERS + """ const el = document.activeElement; const s = getComputedStyle(el);
  return {tag: el.tagName, text: (el.textContent || el.value || "").trim().slice(0, 40), id: el.id,
          outline: s.outlineStyle, width: parseFloat(s.outlineWidth),
          contrast: ratio(s.outlineColor, background(el.parentElement))}; }"""


def test_every_page_has_named_controls_contrast_and_fits_a_phone(live, tmp_path: Path, chromium):
    project = local_project(live, tmp_path, FLOWS)
    deployment = project.deploy("greet")
    run = project.run(deployment, parameters={"name": "keyboard"})
    project.client.request("POST", project.client.ws("/automations"), json={
        "name": "tell-me", "trigger": {"expect": ["pushpool.flow-run.Failed"]},
        "actions": [{"type": "pause-deployment", "deployment": deployment["id"]}]})
    base, ws = live.settings.api_url, live.workspace
    pages = [f"/w/{ws}/", f"/w/{ws}/?window=7d", f"/w/{ws}/runs", f"/w/{ws}/runs/{run['id']}",
             f"/w/{ws}/deployments", f"/w/{ws}/deployments/{deployment['id']}", f"/w/{ws}/pools",
             f"/w/{ws}/pools/{project.pool}", f"/w/{ws}/automations", f"/w/{ws}/events"]

    for width, height in ((1280, 800), (390, 844)):  # a laptop, a phone
        page = chromium.new_context(viewport={"width": width, "height": height}).new_page()
        page.goto(f"{base}/sign-in")
        assert page.evaluate(CHECKS) == [], "the sign-in page"
        page.fill("#key", live.key)
        page.click("button[type=submit]")
        for path in pages:
            page.goto(f"{base}{path}")
            assert page.evaluate(CHECKS) == [], f"{path} at {width} px"
        page.context.close()


def test_the_keyboard_reaches_the_content_first_and_focus_is_visible(live, tmp_path: Path, chromium):
    page = chromium.new_context().new_page()
    page.goto(f"{live.settings.api_url}/sign-in")
    for expected in ("Skip to content", "pushpool", "key"):  # the skip link first, on every page
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUS)
        assert expected in (focused["text"], focused["id"]), focused
    page.keyboard.type(live.key)
    with page.expect_navigation():
        page.keyboard.press("Enter")  # submits the form
    assert page.url.endswith(f"/w/{live.workspace}/")
    page.goto(f"{live.settings.api_url}/w/{live.workspace}/runs")

    page.keyboard.press("Tab")
    first = page.evaluate(FOCUS)
    assert (first["tag"], first["text"]) == ("A", "Skip to content")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.tagName") == "MAIN"
    seen = []
    for _ in range(40):  # on from the content: every control of the filter form, in order, each outlined
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUS)
        seen.append(focused["id"] or focused["text"])
        assert focused["outline"] != "none" and focused["width"] >= 2 and focused["contrast"] >= 3, focused
        if focused["text"] == "Filter":
            break
    assert seen[:2] == ["All", "Scheduled"] and {"flow", "deployment", "pool", "tag", "from", "to", "sort"} <= \
        set(seen), seen
