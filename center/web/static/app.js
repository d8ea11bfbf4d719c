// zhichao center: keyboard review and image zoom. Loaded from /static, no inline script.
"use strict";
(function () {
  function queueKeys(table) {
    const rows = Array.from(table.querySelectorAll("tbody tr[data-href]"));
    if (!rows.length) return;
    let at = 0;
    const mark = () => rows.forEach((r, i) => r.classList.toggle("current", i === at));
    mark();
    document.addEventListener("keydown", (e) => {
      if (e.target.closest("input, textarea, select") || e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.key === "j") { at = Math.min(at + 1, rows.length - 1); mark(); rows[at].scrollIntoView({block: "nearest"}); }
      else if (e.key === "k") { at = Math.max(at - 1, 0); mark(); rows[at].scrollIntoView({block: "nearest"}); }
      else if (e.key === "Enter" || e.key === "o") { window.location = rows[at].dataset.href; }
      else if (e.key === "c") { window.location = rows[at].dataset.href + "#review"; }
      else if (e.key === "r") { window.location = rows[at].dataset.href + "#reject"; }
    });
  }
  function caseKeys() {
    const review = document.getElementById("review");
    const reject = document.getElementById("reject");
    document.addEventListener("keydown", (e) => {
      if (e.target.closest("input, textarea, select") || e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.key === "c" && review) { review.querySelector("button, input, textarea").focus(); e.preventDefault(); }
      else if (e.key === "r" && reject) { reject.querySelector("select, textarea, button").focus(); e.preventDefault(); }
      else if (e.key === "u") { window.location = "/staff"; }
    });
    const target = window.location.hash && document.querySelector(window.location.hash);
    if (target) { const f = target.querySelector("select, textarea, input:not([type=hidden]), button"); if (f) f.focus(); }
  }
  document.addEventListener("DOMContentLoaded", () => {
    const queue = document.querySelector("table[data-keys=queue]");
    if (queue) queueKeys(queue);
    if (document.body.classList.contains("case-page")) caseKeys();
    document.querySelectorAll(".images img").forEach((img) => {
      img.addEventListener("click", () => img.classList.toggle("zoomed"));
    });
  });
})();
