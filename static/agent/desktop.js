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

  const { connectLive, fetchFragment } = window.CollabLive;
  const COALESCE_MS = 25; // a burst of events (a switchover) becomes one fetch per fragment

  const announcer = document.getElementById("live-announcer");
  const pending = new Set();
  let flushTimer = null;

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

  /** Ids of the sessions listed as recently ended in scope. */
  function endedIn(scope) {
    return new Set(Array.from(scope.querySelectorAll("[data-ended-id]"), (el) => el.dataset.endedId));
  }

  function swap(region, html) {
    const hungBefore = sessionsIn(region, true);
    const sessionsBefore = sessionsIn(region, false);
    const endedBefore = endedIn(region);
    const focused = document.activeElement;
    const focusId = focused && focused !== document.body && region.contains(focused) ? focused.id : null;

    region.innerHTML = html;

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
    // A session someone else ended: who and why (the row says it too, for a while).
    region.querySelectorAll("[data-ended-text]").forEach((el) => {
      if (!endedBefore.has(el.dataset.endedId)) news.push(el.dataset.endedText);
    });
    if (news.length) announce(news.join(" "));
  }

  async function refresh(region) {
    // Only the newest request of a fragment may write it: answers can arrive out of order.
    const ticket = (Number(region.dataset.liveTicket) || 0) + 1;
    region.dataset.liveTicket = String(ticket);
    const html = await fetchFragment(region.dataset.livePartial);
    if (html !== null && region.dataset.liveTicket === String(ticket)) swap(region, html);
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

  const everything = () => schedule("*");
  connectLive({
    path: root.dataset.liveWs,
    onSnapshot: everything, // the page was rendered before the socket opened: catch up
    onEvent: (message) => schedule(message.type, message.data),
    // Refused: a fragment refresh finds out whether the log-in is gone (then reloads).
    onRefused: everything,
    resync: everything,
  });
})();
