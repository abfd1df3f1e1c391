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
 * dropped. Every later event refreshes the fragment, debounced so a burst (a switchover
 * sends several) becomes one fetch. Every (re)connection starts with a fresh snapshot and
 * a refresh; a periodic resync heals an event lost on the way (the channel layer drops).
 */
(function () {
  "use strict";

  const root = document.querySelector("[data-live-ws]");
  const container = document.querySelector("[data-live-partial]");
  if (!root || !container) return;

  const { connectLive, fetchFragment } = window.CollabLive;
  const DEBOUNCE_MS = 100;
  let timer = null;
  let ticket = 0;

  function swap(html) {
    const incoming = document.createElement("template");
    incoming.innerHTML = html;
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
  }

  async function refresh() {
    // Only the newest request may write: answers can arrive out of order.
    const mine = ++ticket;
    const html = await fetchFragment(fragmentUrl());
    if (html !== null && mine === ticket) swap(html);
  }

  function fragmentUrl() {
    const url = new URL(container.dataset.livePartial, window.location.href);
    new URLSearchParams(window.location.search).forEach((value, key) => {
      if (!url.searchParams.has(key)) url.searchParams.set(key, value);
    });
    return url.toString();
  }

  function schedule() {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, DEBOUNCE_MS);
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

  connectLive({
    path: root.dataset.liveWs,
    onSnapshot: schedule, // the page was rendered before the socket opened: catch up
    onEvent: schedule,
    onRefused: schedule, // finds out whether the log-in is gone (then reloads to the log-in page)
    resync: schedule,
  });
})();
