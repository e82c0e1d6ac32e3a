// The console's live updates: the server says when an alert changed (server-sent events), and
// the page fetches its own <main> again. Forms work without this script; with it, nothing a
// person is typing is replaced: the update waits until the form is left.
"use strict";
(function () {
  if (document.body.dataset.live !== "1") return;
  const main = document.getElementById("main");
  const badge = document.getElementById("live");
  const swaps = !document.getElementById("chart"); // a chart page redraws itself
  let pending = false;
  let source = null;

  function busy() {
    const active = document.activeElement;
    if (active && main.contains(active) && active.closest("form")) return true;
    return main.querySelector("details[open]") !== null;
  }

  async function refresh() {
    if (!swaps) return;
    if (busy()) { pending = true; return; }
    pending = false;
    try {
      const answer = await fetch(location.href, { headers: { "X-Fragment": "1" }, credentials: "same-origin" });
      if (answer.status === 401) { location.reload(); return; }
      if (!answer.ok) return;
      main.innerHTML = await answer.text();
      main.dataset.updated = String(Date.now());
      document.dispatchEvent(new CustomEvent("console:updated"));
    } catch (e) { /* offline for a moment: the stream's reconnection brings the next update */ }
  }

  function state(ok) {
    if (!badge) return;
    badge.textContent = ok ? badge.dataset.ok : badge.dataset.lost;
    badge.classList.toggle("lost", !ok);
  }

  function connect() {
    source = new EventSource("/api/events");
    let first = true;
    source.addEventListener("open", () => {
      state(true);
      main.dataset.connects = String(Number(main.dataset.connects || 0) + 1);
    });
    source.addEventListener("alerts", () => {
      state(true);
      if (first) { first = false; if (main.dataset.updated) refresh(); else main.dataset.updated = "0"; return; }
      refresh();
    });
    source.addEventListener("error", () => {
      state(false);
      if (source.readyState === EventSource.CLOSED) { // refused (a session that ended): try again
        setTimeout(() => { connect(); refresh(); }, 5000);
      }
    });
  }

  connect();
  setInterval(() => { if (pending) refresh(); }, 2000);
  setInterval(refresh, 60000); // "12 min ago" moves on
  document.addEventListener("focusout", () => { if (pending) setTimeout(() => { if (pending) refresh(); }, 300); });
})();
