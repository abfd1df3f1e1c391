/**
 * Agent desktop, live: one WebSocket to /ws/agent/, a snapshot first, then {type, seq, data} events.
 *
 * The page is server-rendered. Each element with data-live-partial="URL" is a fragment the
 * server renders with the same template for the page and for updates; data-live-on names
 * the event types that refresh it (data-live-id narrows session.changed to one session).
 * On the snapshot and on each event the affected fragments are fetched again, so the page
 * never shows anything the server did not render.
 *
 * Sequence numbers: events numbered at or below the snapshot's are already in it and are
 * dropped. The sequence is shared by every event of the installation, so an agent sees
 * gaps (other agents' events) all the time; a gap therefore proves nothing, and instead
 * every event re-renders from the server, every (re)connection starts with a fresh
 * snapshot, and a periodic resync heals an event lost on the way.
 */
(function () {
  "use strict";

  const root = document.querySelector("[data-live-ws]");
  if (!root) return;

  const RESYNC_MS = 30000;
  const MAX_BACKOFF_MS = 15000;
  const COALESCE_MS = 25; // a burst of events (a switchover) becomes one fetch per fragment
  const CLOSE_NOT_AUTHENTICATED = 4401;
  const CLOSE_FORBIDDEN = 4403;

  const statusEl = document.querySelector("[data-live-status]");
  const announcer = document.getElementById("live-announcer");
  const pending = new Set();
  let snapshotSeq = null;
  let lastSeq = null;
  let attempts = 0;
  let flushTimer = null;
  let socket = null;

  function setStatus(state, text) {
    if (!statusEl) return;
    statusEl.dataset.state = state;
    const label = statusEl.querySelector("[data-live-text]");
    if (label) label.textContent = text;
  }

  /** Server times are rendered in UTC; show them in the agent's own time zone. */
  function localizeTimes(scope) {
    scope.querySelectorAll("time[data-local]").forEach((el) => {
      const when = new Date(el.getAttribute("datetime"));
      if (Number.isNaN(when.getTime())) return;
      el.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
      el.title = when.toLocaleString();
    });
  }

  /** Session id -> caller name, for the sessions in scope (optionally only hung-up ones). */
  function sessionsIn(scope, onlyHungUp) {
    const found = new Map();
    scope.querySelectorAll("[data-session-id]").forEach((el) => {
      if (!onlyHungUp || el.dataset.phoneLeg === "hung_up") found.set(el.dataset.sessionId, el.dataset.caller || "A caller");
    });
    return found;
  }

  function announce(text) {
    if (!announcer) return;
    // Cleared first, so the same sentence twice in a row is read out twice.
    announcer.textContent = "";
    window.setTimeout(() => { announcer.textContent = text; }, 60);
  }

  function swap(region, html) {
    const hungBefore = sessionsIn(region, true);
    const sessionsBefore = sessionsIn(region, false);
    const focused = document.activeElement;
    const focusId = focused && focused !== document.body && region.contains(focused) ? focused.id : null;

    region.innerHTML = html;
    localizeTimes(region);

    // Keyboard users keep their place: the same control again, or the section heading
    // when that control went away (the session ended).
    if (focusId !== null) {
      const again = focusId ? document.getElementById(focusId) : null;
      const fallback = region.closest("section")?.querySelector("[tabindex='-1']");
      (again || fallback)?.focus({ preventScroll: true });
    }

    const news = [];
    sessionsIn(region, true).forEach((caller, id) => {
      if (!hungBefore.has(id)) news.push(`${caller} hung up the phone. The session stays open until you end it.`);
    });
    sessionsIn(region, false).forEach((caller, id) => {
      if (!sessionsBefore.has(id)) news.push(`New session with ${caller}.`);
    });
    if (news.length) announce(news.join(" "));
  }

  async function refresh(region) {
    // Only the newest request of a fragment may write it: answers can arrive out of order.
    const ticket = (Number(region.dataset.liveTicket) || 0) + 1;
    region.dataset.liveTicket = String(ticket);
    let response;
    try {
      response = await fetch(region.dataset.livePartial, {
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
    if (region.dataset.liveTicket === String(ticket)) swap(region, html);
  }

  function schedule(eventType, data) {
    document.querySelectorAll("[data-live-partial]").forEach((region) => {
      if (eventType !== "*") {
        const types = (region.dataset.liveOn || "").split(/\s+/);
        if (!types.includes(eventType)) return;
        const onlyId = region.dataset.liveId;
        if (onlyId && eventType === "session.changed" && data && data.id !== onlyId) return;
      }
      pending.add(region);
    });
    window.clearTimeout(flushTimer);
    flushTimer = window.setTimeout(() => {
      const regions = Array.from(pending);
      pending.clear();
      regions.forEach(refresh);
    }, COALESCE_MS);
  }

  function onMessage(message) {
    if (message.type === "snapshot") {
      snapshotSeq = message.seq;
      lastSeq = message.seq;
      attempts = 0;
      setStatus("live", "Live");
      // The page was rendered before the socket opened: catch up with everything.
      schedule("*");
      return;
    }
    if (snapshotSeq === null || typeof message.seq !== "number") return;
    if (message.seq <= lastSeq) return; // already in the snapshot, or a duplicate
    lastSeq = message.seq;
    schedule(message.type, message.data);
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
        // Not a network failure: retrying would be refused again. A fragment refresh
        // finds out whether the log-in is gone (and then reloads to the log-in page).
        setStatus("error", "Live updates off");
        schedule("*");
        return;
      }
      attempts += 1;
      const backoff = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(attempts, 5));
      setStatus("reconnecting", "Reconnecting…");
      window.setTimeout(connect, backoff * (0.75 + Math.random() * 0.5));
    });
  }

  // A safety net for an event lost on the way (the channel layer drops, it never retries).
  window.setInterval(() => {
    if (socket && socket.readyState === WebSocket.OPEN && document.visibilityState === "visible") schedule("*");
  }, RESYNC_MS);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && socket && socket.readyState === WebSocket.OPEN) schedule("*");
  });

  localizeTimes(document);
  connect();
})();
