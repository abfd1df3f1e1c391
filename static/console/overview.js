/**
 * Administration desktop, live: one WebSocket to /ws/status/, a snapshot first, then {type, seq, data} events.
 *
 * The page is server-rendered. The element with data-live-partial="URL" holds the overview
 * fragment; the server renders the same template for the page and for each refresh. Each
 * [data-region] of a fetched fragment replaces the content of the page's region of the same
 * name, so the regions themselves (the alert banner's aria-live included) stay in place.
 *
 * Sequence numbers: events numbered at or below the snapshot's are already in it and are
 * dropped. Every later event refreshes the fragment, debounced so a burst (a switchover
 * sends several) becomes one fetch. Every (re)connection starts with a fresh snapshot and
 * a refresh; a periodic resync heals an event lost on the way (the channel layer drops).
 */
(function () {
  "use strict";

  const root = document.querySelector("[data-live-ws]");
  const container = document.querySelector("[data-live-partial]");
  if (!root || !container) return;

  const DEBOUNCE_MS = 100;
  const RESYNC_MS = 30000;
  const MAX_BACKOFF_MS = 15000;
  const CLOSE_NOT_AUTHENTICATED = 4401;
  const CLOSE_FORBIDDEN = 4403;

  const statusEl = document.querySelector("[data-live-status]");
  let snapshotSeq = null;
  let lastSeq = null;
  let attempts = 0;
  let timer = null;
  let socket = null;
  let ticket = 0;

  function setStatus(state, text) {
    if (!statusEl) return;
    statusEl.dataset.state = state;
    const label = statusEl.querySelector("[data-live-text]");
    if (label) label.textContent = text;
  }

  /** Server times are rendered in UTC; show them in the administrator's own time zone. */
  function localizeTimes(scope) {
    scope.querySelectorAll("time[data-local]").forEach((el) => {
      const when = new Date(el.getAttribute("datetime"));
      if (Number.isNaN(when.getTime())) return;
      el.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
      el.title = when.toLocaleString();
    });
  }

  function swap(html) {
    const incoming = document.createElement("template");
    incoming.innerHTML = html;
    const focused = document.activeElement;
    const focusKey = focused && container.contains(focused) ? focused.getAttribute("aria-label") : null;
    incoming.content.querySelectorAll("[data-region]").forEach((fresh) => {
      const region = container.querySelector(`[data-region="${fresh.dataset.region}"]`);
      if (!region) return;
      localizeTimes(fresh);
      // Untouched regions stay as they are: no needless re-announcement or repaint.
      if (region.innerHTML !== fresh.innerHTML) region.innerHTML = fresh.innerHTML;
    });
    // Keyboard users keep their place: the same control again, after the swap.
    if (focusKey && !container.contains(document.activeElement)) {
      const again = Array.from(container.querySelectorAll("[aria-label]")).find((el) => el.getAttribute("aria-label") === focusKey);
      if (again) again.focus({ preventScroll: true });
    }
  }

  async function refresh() {
    // Only the newest request may write: answers can arrive out of order.
    const mine = ++ticket;
    let response;
    try {
      response = await fetch(container.dataset.livePartial, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { "X-Requested-With": "fetch" },
      });
    } catch (error) {
      return; // offline: the socket reconnects and resyncs
    }
    if (response.redirected || response.status === 403) {
      window.location.reload(); // logged out meanwhile: the page itself goes to the log-in
      return;
    }
    if (!response.ok) return;
    const html = await response.text();
    if (mine === ticket) swap(html);
  }

  function schedule() {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, DEBOUNCE_MS);
  }

  function onMessage(message) {
    if (message.type === "snapshot") {
      snapshotSeq = message.seq;
      lastSeq = message.seq;
      attempts = 0;
      setStatus("live", "Live");
      schedule(); // the page was rendered before the socket opened: catch up
      return;
    }
    if (snapshotSeq === null || typeof message.seq !== "number") return;
    if (message.seq <= lastSeq) return; // already in the snapshot, or a duplicate
    lastSeq = message.seq;
    schedule();
  }

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(`${scheme}//${window.location.host}${root.dataset.liveWs}`);
    snapshotSeq = null;
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      onMessage(message);
    });
    socket.addEventListener("close", (event) => {
      socket = null;
      if (event.code === CLOSE_NOT_AUTHENTICATED || event.code === CLOSE_FORBIDDEN) {
        setStatus("error", "Live updates off");
        schedule(); // finds out whether the log-in is gone (then reloads to the log-in page)
        return;
      }
      attempts += 1;
      const backoff = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(attempts, 5));
      setStatus("reconnecting", "Reconnecting…");
      window.setTimeout(connect, backoff * (0.75 + Math.random() * 0.5));
    });
  }

  // --- Actions: one <dialog> asks for the reason and the confirmation ---------------------------
  const dialog = document.getElementById("action-dialog");
  if (dialog && typeof dialog.showModal === "function") {
    const form = dialog.querySelector("[data-action-form]");
    let opener = null;
    container.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (!button || button.disabled) return;
      opener = button;
      form.action = button.dataset.action;
      form.elements.expected_epoch.value = button.dataset.epoch || "";
      form.elements.on.value = button.dataset.on || "";
      form.elements.reason.value = "";
      dialog.querySelector("#action-title").textContent = `${button.dataset.title}?`;
      dialog.querySelector("#action-text").textContent = button.dataset.text || "";
      dialog.querySelector("[data-action-submit]").textContent = button.dataset.title;
      dialog.showModal();
      form.elements.reason.focus();
    });
    dialog.querySelector("[data-action-cancel]").addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => {
      if (opener && document.body.contains(opener)) opener.focus({ preventScroll: true });
    });
    form.addEventListener("submit", (event) => {
      if (!form.elements.reason.value.trim()) {
        event.preventDefault();
        form.elements.reason.setAttribute("aria-invalid", "true");
        form.elements.reason.focus();
        return;
      }
      dialog.querySelector("[data-action-submit]").disabled = true;
    });
  }

  // A safety net for an event lost on the way.
  window.setInterval(() => {
    if (socket && socket.readyState === WebSocket.OPEN && document.visibilityState === "visible") schedule();
  }, RESYNC_MS);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && socket && socket.readyState === WebSocket.OPEN) schedule();
  });

  localizeTimes(document);
  connect();
})();
