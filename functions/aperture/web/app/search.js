import { getJSON, query } from "./api.js";
import { errorBox, h, fill } from "./dom.js";
import { describe, thumb } from "./gallery.js";

export function resultsList(results, label) {
  return h("ol", { class: "grid results", "aria-label": label }, results.map((r) =>
    h("li", { class: "card result", "data-id": r.id },
      h("a", { href: `#/image/${r.id}`, class: "thumb-link" }, thumb(r, describe(r))),
      h("p", { class: "caption" }, h("a", { href: `#/image/${r.id}` }, r.filename || r.id)),
      h("p", { class: "meta" }, "Score ", h("span", { class: "score" }, r.score.toFixed(3))))));
}

export function searchView(main, params) {
  const q = params.get("q") || "";
  const input = h("input", { id: "search-q", name: "q", type: "search", value: q, required: true, maxlength: "500",
    placeholder: "e.g. a cat sitting" });
  const out = h("div", { id: "search-results", "aria-live": "polite" });
  const form = h("form", { role: "search", class: "row", onsubmit: (e) => {
    e.preventDefault();
    location.hash = `#/search${query({ q: input.value.trim() })}`;
  } }, h("label", { for: "search-q" }, "Describe the image"), input, h("button", { type: "submit" }, "Search"));
  fill(main, h("h1", { tabindex: "-1" }, "Search"), form, out);
  if (!q) return;
  fill(out, h("p", {}, "Searching…"));
  getJSON(`/v1/search${query({ q, limit: 24 })}`)
    .then((answer) => fill(out, 
      h("p", {}, `${answer.results.length} result${answer.results.length === 1 ? "" : "s"} for “${q}”, best first.`),
      answer.results.length ? resultsList(answer.results, `Results for ${q}`) : null))
    .catch((err) => fill(out, errorBox(err.message)));
}
