/**
 * The live-update plumbing shared by the desktops: one WebSocket that starts with a
 * snapshot and then carries {type, seq, data} events, the "Live" indicator, and fetching
 * the server-rendered fragments that the pages swap in.
 *
 * Sequence numbers: events numbered at or below the snapshot's are already in it and are
 * dropped, as are duplicates. Every (re)connection starts with a fresh snapshot; a
 * periodic resync heals an event lost on the way (the pub/sub channel layer delivers at
 * most once).
 */
(function () {
  "use strict";

  const MAX_BACKOFF_MS = 15000;
  const CLOSE_NOT_AUTHENTICATED = 4401;
  const CLOSE_FORBIDDEN = 4403;
  // "Service restart": the node is stopping gracefully (uvicorn closes every WebSocket with
  // it; docs/operations.md, 'Graceful stop'). Not an error: reconnect at once (the load
  // balancer sends us to another node) and say nothing unless that fails too.
  const CLOSE_SERVICE_RESTART = 1012;
  const RESTART_JITTER_MS = 400;

  const statusEl = document.querySelector("[data-live-status]");

  function setStatus(state, text) {
    if (!statusEl) return;
    statusEl.dataset.state = state;
    const label = statusEl.querySelector("[data-live-text]");
    if (label) label.textContent = text;
  }

  /** The fragment's HTML, or null (offline, or an error: the next event or resync retries).
   * A log-in that expired meanwhile reloads the page, which then goes to the log-in. */
  async function fetchFragment(url) {
    const answer = await fetchVersioned(url);
    return answer === null ? null : answer.html;
  }

  /** A number from a header, or null. */
  function headerNumber(response, name) {
    const value = Number.parseInt(response.headers.get(name) || "", 10);
    return Number.isFinite(value) ? value : null;
  }

  /**
   * The fragment as {html, seq, rendered}, or null (as fetchFragment). ``seq`` is the live
   * sequence number the server's render reflects (X-Live-Seq) and ``rendered`` when it was
   * made (X-Live-Rendered, ms): a page applies only an answer newer than what it shows
   * (console/live_fragments.py). Both are null when the server sent none (Redis away).
   * ``base`` names the render the page shows ("seq.rendered"): the server may then leave
   * out the blocks the page has (``delta`` is then that name, console/live_blocks.py).
   */
  async function fetchVersioned(url, base = null) {
    let response;
    const headers = { "X-Requested-With": "fetch" };
    if (base) headers["X-Live-Base"] = base;
    try {
      response = await fetch(url, { credentials: "same-origin", cache: "no-store", headers });
    } catch (error) {
      return null;
    }
    if (response.redirected || response.status === 403) {
      window.location.reload();
      return null;
    }
    if (!response.ok) return null;
    let html;
    try {
      html = await response.text();
    } catch (error) {
      return null;
    }
    return {
      html,
      seq: headerNumber(response, "X-Live-Seq"),
      rendered: headerNumber(response, "X-Live-Rendered"),
      delta: response.headers.get("X-Live-Delta"),
    };
  }

  /** The text of gzipped bytes (the browser's own DecompressionStream). */
  function gunzip(buffer) {
    const stream = new Blob([buffer]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).text();
  }

  /** Whether this browser can read pushed fragments (gzipped binary messages). */
  const readsGzip = typeof DecompressionStream === "function";

  /**
   * Keep a WebSocket to ``path`` open. ``onSnapshot(message)`` runs on each snapshot,
   * ``onEvent(message)`` on each newer event, ``onRefused()`` when the server refuses the
   * user (4401/4403: not a network failure, so no retry). ``resync()`` runs every
   * ``resyncMs`` while the socket is open and the tab visible, and when the tab shows again.
   * Returns ``{send(message)}``: a JSON message to the server while the socket is open.
   */
  function connectLive({ path, onSnapshot, onEvent, onRefused, resync, resyncMs = 30000 }) {
    let socket = null;
    let snapshotSeq = null;
    let lastSeq = null;
    let attempts = 0;
    let redisRunId = null;

    function onMessage(message) {
      if (message.type === "heartbeat") {
        // Redis restarted since our snapshot: subscriptions and events were lost. Reconnect
        // at once for a fresh snapshot (common/heartbeat.py).
        if (redisRunId && message.redis && message.redis !== redisRunId && socket) {
          attempts = -1;
          socket.close();
        }
        return;
      }
      if (message.type === "snapshot") {
        redisRunId = message.redis || null;
        snapshotSeq = lastSeq = message.seq;
        attempts = 0;
        setStatus("live", "Live");
        onSnapshot(message);
        return;
      }
      if (snapshotSeq === null || typeof message.seq !== "number") return;
      if (message.seq <= lastSeq) return; // already in the snapshot, or a duplicate
      lastSeq = message.seq;
      onEvent(message);
    }

    // Messages are handled one after the other, in the order they came: a binary one (a
    // pushed fragment: gzipped JSON) is decompressed first, and what follows it waits.
    let handled = Promise.resolve();

    function open() {
      const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
      socket = new WebSocket(`${scheme}//${window.location.host}${path}`);
      socket.binaryType = "arraybuffer";
      snapshotSeq = null;
      socket.addEventListener("message", (event) => {
        handled = handled
          .then(() => (typeof event.data === "string" ? event.data : gunzip(event.data)))
          .then((text) => onMessage(JSON.parse(text)))
          .catch(() => {}); // not JSON, not gzip: ignored, as any malformed message
      });
      socket.addEventListener("close", (event) => {
        socket = null;
        if (event.code === CLOSE_NOT_AUTHENTICATED || event.code === CLOSE_FORBIDDEN) {
          setStatus("error", "Live updates off");
          onRefused();
          return;
        }
        if (event.code === CLOSE_SERVICE_RESTART) {
          attempts = 0;
          // A little jitter only, so that every desktop of the node does not come back in the same instant.
          window.setTimeout(open, Math.random() * RESTART_JITTER_MS);
          return;
        }
        attempts += 1;
        const backoff = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(attempts, 5));
        setStatus("reconnecting", "Reconnecting…");
        window.setTimeout(open, backoff * (0.75 + Math.random() * 0.5));
      });
    }

    const isOpen = () => socket !== null && socket.readyState === WebSocket.OPEN;
    window.setInterval(() => {
      if (isOpen() && document.visibilityState === "visible") resync();
    }, resyncMs);
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && isOpen()) resync();
    });
    open();
    // Tell the server something about the page (a console page: the render it shows);
    // dropped while the socket is not open (the next connection starts afresh anyway).
    return {
      send(message) {
        if (isOpen()) socket.send(JSON.stringify(message));
      },
    };
  }

  // No time is formatted here: the server renders every time, pages and fragments alike, in
  // the viewer's zone and one format (collabadmin/timezones.py, static/js/timezone.js).
  window.CollabLive = { connectLive, fetchFragment, fetchVersioned, setStatus, readsGzip };
})();
