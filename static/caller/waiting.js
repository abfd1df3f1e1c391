/**
 * The caller's queue page refreshes itself: every few seconds it fetches its status
 * fragment (the same template the page includes) and swaps it in only when what the
 * caller sees has changed (data-fingerprint), so a screen reader announces real changes
 * only. It stops once the session has ended (data-final). Callers are anonymous, so a
 * WebSocket would add little: the wait is seconds to minutes, and polling is cheap.
 */
(function () {
  "use strict";

  const region = document.querySelector("[data-poll-url]");
  if (!region) return;
  const interval = Number(region.dataset.pollInterval) || 3000;

  async function poll() {
    if (region.querySelector("[data-final]")) return;
    try {
      const response = await fetch(region.dataset.pollUrl, { credentials: "same-origin", cache: "no-store" });
      if (response.ok) {
        const next = document.createElement("template");
        next.innerHTML = await response.text();
        const now = region.querySelector("[data-fingerprint]");
        const then = next.content.querySelector("[data-fingerprint]");
        if (!now || !then || now.dataset.fingerprint !== then.dataset.fingerprint) {
          const focusId = region.contains(document.activeElement) ? document.activeElement.id : "";
          region.replaceChildren(next.content);
          if (focusId) document.getElementById(focusId)?.focus({ preventScroll: true });
          if (region.querySelector("[data-final]")) {
            document.title = "Session ended";
            document.getElementById("keep-open-note")?.remove(); // nothing left to wait for
          }
        }
      }
    } catch (error) {
      // Offline for a moment: try again at the next tick.
    }
    window.setTimeout(poll, interval);
  }

  window.setTimeout(poll, interval);
})();
