/**
 * Tell the server the viewer's time zone: every page renders its times there, in one
 * format with the zone shown (collabadmin/timezones.py). The cookie holds the browser's IANA
 * zone name and is written only when it differs, on every page (log-in pages included), so
 * the pages after the first are in the right zone and a traveller's laptop follows.
 */
(function () {
  "use strict";

  let zone = "";
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (error) {
    return;
  }
  // Zone names are letters, digits and "_+-/", all allowed in a cookie as they are: the
  // server reads the value verbatim.
  if (!zone || !/^[A-Za-z0-9_+\-\/]{1,64}$/.test(zone)) return;
  const current = document.cookie.split("; ").find((part) => part.startsWith("tz="));
  if (current && current.slice(3) === zone) return;
  const secure = window.location.protocol === "https:" ? "; secure" : "";
  document.cookie = `tz=${zone}; path=/; max-age=31536000; samesite=lax${secure}`;
})();
