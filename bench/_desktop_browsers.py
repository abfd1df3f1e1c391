"""Real Administration pages in headless Chromium (Playwright), timing when the DOM shows a
change (``bench.desktop_load``).

``python -m bench._desktop_browsers --port P --cookie C --pages overview,sessions --out FILE``
opens each page (``/`` or ``/console/sessions/``) logged in by the session cookie, with
the project's own scripts. A script added before the page's own watches the live
fragment with a ``MutationObserver``: the first time a marker ``Load caller N`` (a session
the load requested, on the sessions page) or ``Load failover N`` (a failover's reason, in
the overview's recent failovers) is in the fragment's text, it notes the wall-clock time
(``performance.timeOrigin + performance.now()``, ms since the epoch: the machine's clock,
the one the load stamps its commits with). It also counts the fragment fetches and their
``Content-Length``. Prints ``ready`` once every page shows "Live"; on SIGUSR1 (or
SIGTERM) writes ``{"pages": [{"kind", "seen": {marker: ms}, "fetches": [[ms, bytes]]}]}``
to FILE and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
PATHS = {"overview": "/", "sessions": "/console/sessions/"}

WATCH = """
(() => {
  const seen = {};
  const fetches = [];
  window.__bench = { seen, fetches };
  const now = () => performance.timeOrigin + performance.now();
  const original = window.fetch.bind(window);
  window.fetch = async (...args) => {
    const response = await original(...args);
    fetches.push([now(), Number(response.headers.get("content-length") || 0)]);
    return response;
  };
  const pattern = /Load (caller|failover) (\\d+)/g;
  function scan(container) {
    const at = now();
    for (const match of container.textContent.matchAll(pattern)) {
      const key = `${match[1]} ${match[2]}`;
      if (!(key in seen)) seen[key] = at;
    }
  }
  document.addEventListener("DOMContentLoaded", () => {
    const container = document.querySelector("[data-live-partial]");
    if (!container) return;
    scan(container);
    const options = { subtree: true, childList: true, characterData: true };
    new MutationObserver(() => scan(container)).observe(container, options);
  });
})();
"""


async def main_async(args: argparse.Namespace) -> None:
    from playwright.async_api import async_playwright

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGUSR1, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    base = f"http://127.0.0.1:{args.port}"
    name, _, value = args.cookie.partition("=")
    kinds = [kind for kind in args.pages.split(",") if kind]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = await browser.new_context()
        await context.add_cookies([{"name": name, "value": value, "url": base}])
        await context.add_init_script(WATCH)
        pages = []
        for kind in kinds:
            page = await context.new_page()
            await page.goto(base + PATHS[kind], timeout=120_000)
            await page.wait_for_selector('[data-live-status][data-state="live"]', timeout=120_000)
            pages.append((kind, page))
        print("ready", flush=True)
        await stop.wait()
        out = {"pages": []}
        for kind, page in pages:
            data = await page.evaluate("window.__bench")
            out["pages"].append({"kind": kind, **data})
        await browser.close()
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    tmp.replace(args.out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cookie", required=True)
    parser.add_argument("--pages", required=True, help="comma-separated: overview or sessions")
    parser.add_argument("--out", required=True)
    asyncio.run(main_async(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
