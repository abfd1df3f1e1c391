/**
 * Every page of the Administration desktop, live: one WebSocket to /ws/status/, a snapshot
 * first, then {type, seq, data} events.
 *
 * The page is server-rendered. The element with data-live-partial="URL" holds the page's
 * fragment; the server renders the same template for the page and for each refresh (the
 * page's own query string, its filters and page number, goes along). Each
 * [data-region] of a fetched fragment replaces the content of the page's region of the same
 * name, so the regions themselves (the alert banner's aria-live included) stay in place.
 *
 * Sequence numbers: events numbered at or below the snapshot's are already in it and are
 * dropped. Every later event refreshes the fragment, unless the page's template lists its
 * type in data-live-ignore (the page shows nothing it changes; the socket asks the server
 * not to send those at all, /ws/status/?ignore=...). Refreshes are throttled:
 * at most one in flight, at least MIN_INTERVAL_MS apart, the first at once; events that
 * come meanwhile make one refresh after it, so a burst (a switchover sends several) is one
 * fetch and a steady stream still refreshes the page several times a second. The fetch
 * names the newest event the page has heard of (?live_seq=N): the server answers with a
 * render that reflects it, shared with every other watcher (console/live_fragments.py),
 * and says which number it reflects (X-Live-Seq); the page applies an answer only if it is
 * newer than what it shows. Every (re)connection starts with a fresh snapshot and a
 * refresh; a periodic resync (which asks for the server's current number) heals an event
 * lost on the way (the channel layer drops).
 *
 * Pushed fragments (data-live-push="1": the overview, the sessions page): the socket asks
 * the server to send the fragment's render with the event (/ws/status/?push=URL,
 * console/pushed_fragments.py). A pushed render is applied as a fetched answer would be
 * (newer only; a delta only onto the render it was made from); one the page cannot apply
 * makes it fetch. After each fetched answer the page tells the socket which render it shows.
 */
(function () {
  "use strict";

  const root = document.querySelector("[data-live-ws]");
  const container = document.querySelector("[data-live-partial]");
  if (!root || !container) return;

  const { connectLive, fetchVersioned } = window.CollabLive;
  const MIN_INTERVAL_MS = 200;
  const CURRENT = Infinity; // a refresh that needs the server's current number (no ?live_seq)
  const ignored = new Set((container.dataset.liveIgnore || "").split(/\s+/).filter(Boolean));
  let wanted = -Infinity; // the newest event number the next refresh must show
  let pending = false;
  let inFlight = false;
  let lastStart = -Infinity;
  let timer = null;
  let ticket = 0;
  let shown = { seq: -1, rendered: -1 }; // the version on the page (the page's own render: none)
  let wholeNeeded = false; // the next refresh asks for the whole fragment (no X-Live-Base)

  /** Put the page's own copy of each block the answer left out (<template data-keep>) in
   * its place; false when the page lacks one (then only a whole fragment will do). */
  function keepBlocks(incoming) {
    for (const keep of incoming.content.querySelectorAll("template[data-keep]")) {
      const held = container.querySelector(`[data-block="${CSS.escape(keep.dataset.keep)}"]`);
      if (!held) return false;
      keep.replaceWith(held.cloneNode(true));
    }
    return true;
  }

  /** Apply an answer; false when it was a delta the page cannot complete. */
  function swap(html, delta) {
    const incoming = document.createElement("template");
    incoming.innerHTML = html;
    if (delta && !keepBlocks(incoming)) return false;
    const focused = document.activeElement;
    const focusKey = focused && container.contains(focused) ? focused.getAttribute("aria-label") : null;
    incoming.content.querySelectorAll("[data-region]").forEach((fresh) => {
      const region = container.querySelector(`[data-region="${fresh.dataset.region}"]`);
      if (!region) return;
      // Untouched regions stay as they are: no needless re-announcement or repaint.
      if (region.innerHTML !== fresh.innerHTML) region.innerHTML = fresh.innerHTML;
    });
    // Keyboard users keep their place: the same control again, after the swap.
    if (focusKey && !container.contains(document.activeElement)) {
      const again = Array.from(container.querySelectorAll("[aria-label]")).find((el) => el.getAttribute("aria-label") === focusKey);
      if (again) again.focus({ preventScroll: true });
    }
    return true;
  }

  /** Whether an answer may replace what the page shows: any answer newer than it (a
   * higher number, or a later render of the same number), never an older one. An answer
   * without a version (the server could not number it) only if it is the newest request's. */
  function isNewer(answer, mine) {
    if (answer.seq === null || answer.rendered === null) return mine === ticket;
    return answer.seq > shown.seq || (answer.seq === shown.seq && answer.rendered > shown.rendered);
  }

  async function refresh(seq) {
    const mine = ++ticket;
    const base = wholeNeeded || shown.seq < 0 ? null : `${shown.seq}.${shown.rendered}`;
    const answer = await fetchVersioned(fragmentUrl(seq), base);
    if (answer === null || !isNewer(answer, mine)) return;
    // The server pushes the next render as a delta from this one (console/pushed_fragments.py).
    if (apply(answer) && pushed) live.send({ type: "shown", version: `${shown.seq}.${shown.rendered}` });
  }

  /** Show an answer (fetched, or pushed on the socket); false when it could not be, and
   * a refresh is then due. */
  function apply(answer) {
    // A delta is made against what the page showed when it asked: only then can it apply.
    const from = answer.delta || null;
    if (from !== null && from !== `${shown.seq}.${shown.rendered}`) {
      schedule(answer.seq);
      return false;
    }
    if (!swap(answer.html, from !== null)) {
      wholeNeeded = true; // a block the page should hold is missing: ask for everything
      schedule(answer.seq);
      return false;
    }
    wholeNeeded = false;
    if (answer.seq !== null && answer.rendered !== null) shown = { seq: answer.seq, rendered: answer.rendered };
    // The events heard of while it was on its way may already be in it (a render reflects
    // every event numbered before it started): then no refresh is due for them.
    if (pending && wanted <= shown.seq) {
      pending = false;
      wanted = -Infinity;
    }
    return true;
  }

  /** A render the server pushed with an event ({type: "fragment", seq, rendered, delta, html}). */
  function applyPushed(message) {
    const answer = { html: message.html, seq: message.seq, rendered: message.rendered, delta: message.delta };
    if (typeof answer.rendered !== "number" || typeof answer.html !== "string") return schedule(answer.seq);
    if (isNewer(answer, null)) apply(answer);
  }

  function fragmentUrl(seq) {
    const url = new URL(container.dataset.livePartial, window.location.href);
    new URLSearchParams(window.location.search).forEach((value, key) => {
      if (!url.searchParams.has(key)) url.searchParams.set(key, value);
    });
    url.searchParams.delete("live_seq");
    if (Number.isFinite(seq)) url.searchParams.set("live_seq", String(seq));
    return url.toString();
  }

  /** Start the refresh that is due, if it may start now; else when it may. */
  function pump() {
    if (!pending || inFlight || timer !== null) return;
    const wait = lastStart + MIN_INTERVAL_MS - performance.now();
    if (wait > 0) {
      timer = window.setTimeout(() => {
        timer = null;
        pump();
      }, wait);
      return;
    }
    const seq = wanted;
    pending = false;
    wanted = -Infinity;
    inFlight = true;
    lastStart = performance.now();
    refresh(seq).finally(() => {
      inFlight = false;
      pump();
    });
  }

  /** A refresh that shows at least event ``seq`` (CURRENT: whatever the server has now). */
  function schedule(seq) {
    wanted = Math.max(wanted, seq);
    pending = true;
    pump();
  }

  // --- Actions: one <dialog> asks for the reason and the confirmation ---------------------------
  // A button with data-action="URL" opens it; data-title, data-text describe the action and
  // data-fields='{"name": "value"}' become hidden fields of the form posted to URL;
  // data-minutes="60" adds the minutes field (a silence), data-reason-label renames "Reason",
  // data-number-field one optional number input (a drain's deadline).
  const dialog = document.getElementById("action-dialog");
  if (dialog && typeof dialog.showModal === "function") {
    const form = dialog.querySelector("[data-action-form]");
    const fields = form.querySelector("[data-action-fields]");
    let opener = null;
    container.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (!button || button.disabled) return;
      opener = button;
      form.action = button.dataset.action;
      form.elements.next.value = window.location.pathname + window.location.search;
      fields.replaceChildren();
      let extra = {};
      try {
        extra = JSON.parse(button.dataset.fields || "{}");
      } catch (error) {
        extra = {};
      }
      Object.entries(extra).forEach(([name, value]) => {
        const input = document.createElement("input");
        input.type = "hidden";
        input.name = name;
        input.value = String(value);
        fields.appendChild(input);
      });
      // A maintenance window asks for its length; a disabled input is not sent at all.
      const minutes = dialog.querySelector("[data-action-minutes]");
      const wantsMinutes = Boolean(button.dataset.minutes);
      minutes.hidden = !wantsMinutes;
      form.elements.minutes.disabled = !wantsMinutes;
      form.elements.minutes.value = button.dataset.minutes || "";
      dialog.querySelector("[data-action-reason-label]").textContent = button.dataset.reasonLabel || "Reason";
      // data-number-field='{"name": ..., "label": ...}': one optional visible number field
      // (a drain's deadline in minutes).
      if (button.dataset.numberField) {
        const spec = JSON.parse(button.dataset.numberField);
        const label = document.createElement("label");
        label.htmlFor = "action-number";
        label.textContent = spec.label;
        const input = document.createElement("input");
        Object.assign(input, { type: "number", id: "action-number", name: spec.name, min: "1", max: spec.max || "" });
        fields.append(label, input);
      }
      form.elements.reason.value = "";
      form.elements.reason.removeAttribute("aria-invalid");
      dialog.querySelector("#action-title").textContent = `${button.dataset.title}?`;
      dialog.querySelector("#action-text").textContent = button.dataset.text || "";
      const submit = dialog.querySelector("[data-action-submit]");
      submit.textContent = button.dataset.title;
      submit.disabled = false;
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

  // The server need not send what the page ignores (the overview: 50 session events a
  // second), nor more than the newest event of each MIN_INTERVAL_MS (the page would not
  // refresh sooner): ?coalesce=1 (common/coalesce.py).
  const liveQuery = new URLSearchParams({ coalesce: "1" });
  if (ignored.size) liveQuery.set("ignore", [...ignored].join(","));
  // A fragment rendered once for all its watchers comes with the event instead of being
  // fetched (the server says so by sending {type: "fragment"}; else it sends events).
  const pushed = container.dataset.livePush === "1" && window.CollabLive.readsGzip;
  if (pushed) {
    const target = new URL(fragmentUrl(CURRENT));
    liveQuery.set("push", target.pathname + target.search);
  }
  const livePath = `${root.dataset.liveWs}?${liveQuery}`;

  const live = connectLive({
    path: livePath,
    // The page was rendered before the socket opened: catch up to the snapshot's number.
    // A new snapshot may start a new numbering (a Sentinel failover can lose the last few
    // increments of the counter): what the page shows is compared with answers from then on.
    onSnapshot: (message) => {
      shown = { seq: -1, rendered: -1 };
      schedule(typeof message.seq === "number" ? message.seq : CURRENT);
    },
    onEvent: (message) => {
      if (message.type === "fragment") applyPushed(message);
      else if (!ignored.has(message.type)) schedule(message.seq);
    },
    onRefused: () => schedule(CURRENT), // finds out whether the log-in is gone (then reloads to the log-in page)
    resync: () => schedule(CURRENT),
  });
})();
