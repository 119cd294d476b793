// The dashboard's shell: hash routes to pages, the time-zone picker, and the token.
// Each page is a module exporting `render(root)`, which returns a cleanup function
// (closes its streams and timers) called when the user leaves the page.

import { setZone, zone, zones } from "./lib/time.js";

const PAGES = {
  overview: () => import("./pages/overview.js"),
  live: () => import("./pages/live.js"),
  calls: () => import("./pages/calls.js"),
  queues: () => import("./pages/queues.js"),
  endpoints: () => import("./pages/endpoints.js"),
  events: () => import("./pages/events.js"),
};

let cleanup = () => {};
let rendering = 0;

async function route() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const page = name in PAGES ? name : "overview";
  for (const a of document.querySelectorAll("nav a")) {
    if (a.getAttribute("href") === `#/${page}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  cleanup();
  cleanup = () => {};
  const turn = ++rendering;
  const view = document.getElementById("view");
  view.replaceChildren();
  const module = await PAGES[page]();
  if (turn !== rendering) return;
  document.title = `DAMI · ${page[0].toUpperCase()}${page.slice(1)}`;
  try {
    cleanup = (await module.render(view, rest.map(decodeURIComponent))) ?? (() => {});
  } catch (error) {
    view.append(Object.assign(document.createElement("p"), {
      className: "error",
      role: "alert",
      textContent: error.message,
    }));
  }
}

function setupZone() {
  const input = document.getElementById("tz");
  const list = document.getElementById("tz-list");
  input.value = zone();
  for (const z of zones()) list.append(new Option(z));
  input.addEventListener("change", () => {
    if (setZone(input.value.trim())) route();
    else input.setCustomValidity("not a time zone"), input.reportValidity();
  });
  input.addEventListener("input", () => input.setCustomValidity(""));
}

setupZone();
addEventListener("hashchange", route);
route();
