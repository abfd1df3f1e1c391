/**
 * Agent desktop, live: one WebSocket to /ws/agent/, a snapshot first, then {type, seq, data} events.
 *
 * The page is server-rendered. Each element with data-live-partial="URL" is a fragment the
 * server renders with the same template for the page and for updates; data-live-on names
 * the event types that refresh it (data-live-id narrows session.changed to one session).
 * On the snapshot and on each event the affected fragments are fetched again, so the page
 * never shows anything the server did not render; when several are due at once (the
 * snapshot, the resync) and the page names one answer for them all (data-live-all, each
 * region's part in data-live-part), that one is fetched instead.
 *
 * The sessions list (data-live-part="sessions") is not fetched on a session change: the
 * socket is opened with ?push=sessions and each session.changed brings the list as the
 * server rendered it for this agent (message.html.sessions, sessions/list_push.py), which
 * is swapped in at once. An event without it (the server could not render it) fetches.
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
  // One answer holding every region that names its data-live-part (the desktop's state and
  // sessions): fetched instead of one request per region when several are due at once
  // (the snapshot, the resync, an agent change).
  const togetherUrl = root.dataset.liveAll || null;

  const announcer = document.getElementById("live-announcer");
  const pending = new Set();
  let flushTimer = null;

  /** Session id -> caller name, for the sessions in scope (optionally only those whose phone leg is ``phoneLeg``). */
  function sessionsIn(scope, phoneLeg) {
    const found = new Map();
    scope.querySelectorAll("[data-session-id]").forEach((el) => {
      if (!phoneLeg || el.dataset.phoneLeg === phoneLeg) found.set(el.dataset.sessionId, el.dataset.caller || "A caller");
    });
    return found;
  }

  /** Banners (server failed, drained, logged out by an administrator): id -> their short title. */
  function bannersIn(scope) {
    return new Map(Array.from(scope.querySelectorAll("[data-banner]"), (el) => [el.id, el.dataset.banner]));
  }

  // --- Getting the agent's attention when the desktop is not in front -------------------
  // A new session routed while the tab is in the background would go unnoticed: the tab
  // title counts them until the tab is focused, a short tone plays (unless turned off,
  // remembered in this browser), and a browser notification shows where the agent allowed
  // it. Permission is asked from a click, never on load (browsers ignore or penalise that).
  const SOUND_KEY = "collabadmin.agent.sound";
  const baseTitle = document.title;
  let unseen = 0;
  let audio = null;

  function inFront() {
    return document.visibilityState === "visible" && document.hasFocus();
  }

  function flagTitle(count, what) {
    unseen += count;
    document.title = `(${unseen}) ${what} — ${baseTitle}`;
  }

  function clearTitle() {
    if (!unseen) return;
    unseen = 0;
    document.title = baseTitle;
  }
  window.addEventListener("focus", clearTitle);
  document.addEventListener("visibilitychange", () => { if (inFront()) clearTitle(); });

  function soundOn() {
    try { return window.localStorage.getItem(SOUND_KEY) !== "off"; } catch (e) { return true; }
  }

  const soundToggle = document.querySelector("[data-sound-toggle]");
  function showSound() {
    if (soundToggle) soundToggle.setAttribute("aria-pressed", soundOn() ? "true" : "false");
  }
  soundToggle?.addEventListener("click", () => {
    try { window.localStorage.setItem(SOUND_KEY, soundOn() ? "off" : "on"); } catch (e) { /* private mode: this page only */ }
    showSound();
  });
  showSound();

  function audioContext() {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return null;
    audio = audio || new Context();
    return audio;
  }
  // Browsers let a page make sound only after the user interacted with it: the first
  // click or key press on the desktop unlocks the tone for the rest of the visit.
  function unlockAudio() {
    if (soundOn()) audioContext()?.resume?.();
  }
  document.addEventListener("pointerdown", unlockAudio, { once: true });
  document.addEventListener("keydown", unlockAudio, { once: true });

  /** Two short sine notes, falling: generated, no sound file to serve. */
  function chime() {
    if (!soundOn()) return;
    try {
      const context = audioContext();
      if (!context) return;
      context.resume?.();
      const start = context.currentTime + 0.01;
      [880, 660].forEach((frequency, i) => {
        const at = start + i * 0.16;
        const tone = context.createOscillator();
        const volume = context.createGain();
        tone.type = "sine";
        tone.frequency.setValueAtTime(frequency, at);
        volume.gain.setValueAtTime(0.0001, at);
        volume.gain.exponentialRampToValueAtTime(0.2, at + 0.02);
        volume.gain.exponentialRampToValueAtTime(0.0001, at + 0.15);
        tone.connect(volume).connect(context.destination);
        tone.start(at);
        tone.stop(at + 0.16);
      });
    } catch (e) { /* no audio device: the title and the notification remain */ }
  }

  const notifyButton = document.querySelector("[data-notify-enable]");
  const notifyStatus = document.querySelector("[data-notify-status]");
  function showNotifyPermission() {
    if (!notifyButton || !notifyStatus) return;
    if (!("Notification" in window)) {
      notifyButton.hidden = true;
      notifyStatus.textContent = "";
      return;
    }
    const permission = window.Notification.permission;
    notifyButton.hidden = permission !== "default";
    notifyStatus.textContent = permission === "granted" ? "Notifications on"
      : permission === "denied" ? "Notifications blocked in this browser's settings" : "";
  }
  notifyButton?.addEventListener("click", async () => {
    try { await window.Notification.requestPermission(); } catch (e) { /* old browsers: callback form only */ }
    showNotifyPermission();
  });
  showNotifyPermission();

  function notify(title, body) {
    if (!("Notification" in window) || window.Notification.permission !== "granted") return;
    try {
      const note = new window.Notification(title, { body, tag: "collabadmin-agent" });
      note.onclick = () => { window.focus(); note.close?.(); };
    } catch (e) { /* some browsers allow notifications from service workers only */ }
  }

  function newSessions(callers) {
    chime();
    if (inFront()) return;
    flagTitle(callers.length, callers.length === 1 ? "New session" : "New sessions");
    const title = callers.length === 1 ? `New session with ${callers[0]}` : `${callers.length} new sessions`;
    notify(title, "Open the Agent desktop to join.");
  }

  function newBanners(titles) {
    if (inFront()) return;
    flagTitle(1, "Action needed");
    notify(titles.join(" · "), "Open the Agent desktop: it says what happened and what to do.");
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
    const hungBefore = sessionsIn(region, "hung_up");
    const unknownBefore = sessionsIn(region, "unknown");
    const sessionsBefore = sessionsIn(region, null);
    const bannersBefore = bannersIn(region);
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
    sessionsIn(region, "hung_up").forEach((caller, id) => {
      if (!hungBefore.has(id)) news.push(`${caller} hung up the phone. The session stays open until you end it.`);
    });
    sessionsIn(region, "unknown").forEach((caller, id) => {
      if (!unknownBefore.has(id)) {
        news.push(`The phone state of the session with ${caller} is unknown. When the call is over, end the web session.`);
      }
    });
    const arrived = [];
    sessionsIn(region, null).forEach((caller, id) => {
      if (!sessionsBefore.has(id)) {
        news.push(`New session with ${caller}.`);
        arrived.push(caller);
      }
    });
    if (arrived.length) newSessions(arrived);
    const raised = [];
    bannersIn(region).forEach((title, id) => {
      if (!bannersBefore.has(id)) {
        news.push(`${title}.`);
        raised.push(title);
      }
    });
    if (raised.length) newBanners(raised);
    // A session someone else ended: who and why (the row says it too, for a while).
    region.querySelectorAll("[data-ended-text]").forEach((el) => {
      if (!endedBefore.has(el.dataset.endedId)) news.push(el.dataset.endedText);
    });
    if (news.length) announce(news.join(" "));
  }

  /** A new request of ``region``: only the newest may write it (answers can arrive out of order). */
  function nextTicket(region) {
    const ticket = String((Number(region.dataset.liveTicket) || 0) + 1);
    region.dataset.liveTicket = ticket;
    return ticket;
  }

  async function refresh(region) {
    const ticket = nextTicket(region);
    const html = await fetchFragment(region.dataset.livePartial);
    if (html !== null && region.dataset.liveTicket === ticket) swap(region, html);
  }

  /** Several regions with one request: each takes its own part of the answer. */
  async function refreshTogether(regions) {
    const tickets = new Map(regions.map((region) => [region, nextTicket(region)]));
    const html = await fetchFragment(togetherUrl);
    if (html === null) return;
    const answer = document.createElement("template");
    answer.innerHTML = html;
    tickets.forEach((ticket, region) => {
      const part = answer.content.querySelector(`[data-live-part="${region.dataset.livePart}"]`);
      if (part && region.dataset.liveTicket === ticket) swap(region, part.innerHTML);
    });
  }

  function flush() {
    const regions = Array.from(pending);
    pending.clear();
    const together = togetherUrl ? regions.filter((region) => region.dataset.livePart) : [];
    if (together.length > 1) {
      refreshTogether(together);
      regions.filter((region) => !together.includes(region)).forEach(refresh);
    } else {
      regions.forEach(refresh);
    }
  }

  // The region whose fragment the server pushes with each session change.
  const pushedRegion = document.querySelector('[data-live-partial][data-live-part="sessions"]');

  /** The list pushed with a session change, swapped in at once (newer than any answer on its
   * way, which the new ticket drops, and than any fetch still due, which is no longer). */
  function applyPushed(html) {
    nextTicket(pushedRegion);
    pending.delete(pushedRegion);
    swap(pushedRegion, html);
  }

  function schedule(eventType, data, pushed = null) {
    let added = false;
    document.querySelectorAll("[data-live-partial]").forEach((region) => {
      if (region === pushed) return;
      if (eventType !== "*") {
        const types = (region.dataset.liveOn || "").split(/\s+/);
        if (!types.includes(eventType)) return;
        const onlyId = region.dataset.liveId;
        if (onlyId && eventType === "session.changed" && data && data.id !== onlyId) return;
      }
      pending.add(region);
      added = true;
    });
    if (!added) return; // nothing (more) to fetch: a pushed list, or an event no region shows
    window.clearTimeout(flushTimer);
    flushTimer = window.setTimeout(flush, COALESCE_MS);
  }

  function onEvent(message) {
    const html = message.html && typeof message.html.sessions === "string" ? message.html.sessions : null;
    if (pushedRegion && html !== null) {
      applyPushed(html);
      schedule(message.type, message.data, pushedRegion);
    } else {
      schedule(message.type, message.data);
    }
  }

  const everything = () => schedule("*");
  connectLive({
    path: pushedRegion ? `${root.dataset.liveWs}?push=sessions` : root.dataset.liveWs,
    onSnapshot: everything, // the page was rendered before the socket opened: catch up
    onEvent,
    // Refused: a fragment refresh finds out whether the log-in is gone (then reloads).
    onRefused: everything,
    resync: everything,
  });
})();
