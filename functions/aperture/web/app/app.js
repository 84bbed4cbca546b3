// The page's router: #/gallery, #/upload, #/image/ID, #/search?q=, #/jobs, #/job/ID, #/dashboard, #/key.
import { getKey } from "./api.js";
import { dashboardView } from "./dashboard.js";
import { fill, h } from "./dom.js";
import { galleryView } from "./gallery.js";
import { imageView } from "./image.js";
import { jobsView, jobView } from "./jobs.js";
import { keyView, renderWho, whoami } from "./key.js";
import { searchView } from "./search.js";
import { uploadView } from "./upload.js";

const ROUTES = [
  [/^\/gallery$/, galleryView, "Gallery"],
  [/^\/upload$/, uploadView, "Upload"],
  [/^\/image\/([0-9a-f]{1,64})$/, imageView, "Image"],
  [/^\/search$/, searchView, "Search"],
  [/^\/jobs$/, jobsView, "Jobs"],
  [/^\/job\/([A-Za-z0-9_-]{1,100})$/, jobView, "Job"],
  [/^\/dashboard$/, dashboardView, "Dashboard"],
  [/^\/key$/, keyView, "API key"],
];

let cleanup = null;
let first = true;

function route() {
  const main = document.getElementById("main");
  const raw = location.hash.replace(/^#/, "") || "/gallery";
  const [path, search = ""] = raw.split("?");
  const params = new URLSearchParams(search);
  if (cleanup) { cleanup(); cleanup = null; }
  for (const link of document.querySelectorAll("nav a")) {
    const current = link.getAttribute("href") === `#${path}`;
    if (current) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  if (!getKey() && path !== "/key") {
    keyView(main, { next: `#${raw}` });
    document.title = "API key — Aperture";
    focusHeading(main);
    return;
  }
  for (const [pattern, view, title] of ROUTES) {
    const match = pattern.exec(path);
    if (!match) continue;
    document.title = `${title} — Aperture`;
    const result = view(main, params, ...match.slice(1).map(decodeURIComponent));
    if (typeof result === "function") cleanup = result;
    focusHeading(main);
    return;
  }
  fill(main, h("h1", { tabindex: "-1" }, "Not found"), h("p", {}, "No such page. ",
    h("a", { href: "#/gallery" }, "Go to the gallery.")));
  focusHeading(main);
}

// After a route change, focus moves to the new page's heading (not on the first load).
function focusHeading(main) {
  if (first) { first = false; return; }
  const heading = main.querySelector("h1");
  if (heading) heading.focus();
}

window.addEventListener("hashchange", route);
route();
if (getKey()) whoami().then(renderWho).catch(() => renderWho(null)); else renderWho(null);
