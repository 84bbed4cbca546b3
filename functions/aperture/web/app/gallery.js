import { getJSON, query, showImage } from "./api.js";
import { announce, errorBox, h, fill } from "./dom.js";
import { selection } from "./selection.js";

const FORMATS = ["", "jpeg", "png", "gif", "webp", "tiff", "bmp"];
const PAGE = 24;

export function thumbnailPath(id) {
  return `/v1/images/${encodeURIComponent(id)}.jpg?ops=resize:256x256`;
}

export function thumb(item, alt) {
  const img = h("img", { alt, loading: "lazy", width: "160", height: "160", class: "thumb" });
  showImage(img, item.thumbnail_url, item.thumbnail_url ? null : thumbnailPath(item.id));
  return img;
}

export function describe(item) {
  const labels = (item.labels || []).slice(0, 3).join(", ");
  return `${item.filename || item.id}${labels ? ` — ${labels}` : ""}`;
}

export function galleryView(main, params) {
  const state = { format: params.get("format") || "", camera: params.get("camera") || "", cursor: null, done: false };
  const format = h("select", { id: "filter-format", name: "format" },
    FORMATS.map((f) => h("option", { value: f, selected: f === state.format }, f ? f.toUpperCase() : "Any format")));
  const camera = h("select", { id: "filter-camera", name: "camera" },
    h("option", { value: "" }, "Any camera"));
  if (state.camera) camera.append(h("option", { value: state.camera, selected: true }, state.camera));
  const filters = h("form", { class: "filters", onsubmit: (e) => {
    e.preventDefault();
    location.hash = `#/gallery${query({ format: format.value, camera: camera.value })}`;
  } },
    h("label", { for: "filter-format" }, "Format"), format,
    h("label", { for: "filter-camera" }, "Camera"), camera,
    h("button", { type: "submit" }, "Apply filters"));
  const grid = h("ul", { id: "gallery", class: "grid", "aria-label": "Images" });
  const message = h("div", { "aria-live": "polite" });
  const more = h("button", { type: "button", id: "load-more", onclick: () => loadPage() }, "Load more");
  const sentinel = h("div", { class: "sentinel", "aria-hidden": "true" });
  const selected = h("p", { id: "selection-count" });
  const updateSelected = () => fill(selected, `${selection.size} selected for a job. `,
    selection.size ? h("a", { href: "#/jobs" }, "Create a job with the selection") : "");
  updateSelected();

  fill(main, h("h1", { tabindex: "-1" }, "Gallery"), filters, selected, grid, message, more, sentinel);

  getJSON("/v1/stats").then((stats) => {
    for (const { camera: name, images } of stats.top_cameras || []) {
      if (name === state.camera) continue;
      camera.append(h("option", { value: name }, `${name} (${images})`));
    }
  }).catch(() => {});

  let loading = false;
  async function loadPage() {
    if (loading || state.done) return;
    loading = true;
    more.disabled = true;
    try {
      const page = await getJSON(`/v1/images${query({ limit: PAGE, cursor: state.cursor, format: state.format,
        camera: state.camera })}`);
      for (const item of page.images) grid.append(card(item, updateSelected));
      state.cursor = page.next_cursor;
      state.done = !page.next_cursor;
      if (!grid.children.length) fill(message, h("p", {}, "No images yet. ",
        h("a", { href: "#/upload" }, "Upload some.")));
      announce(`${grid.children.length} images shown${state.done ? "" : ", more available"}`);
    } catch (err) {
      fill(message, errorBox(err.message));
      state.done = true;
    } finally {
      loading = false;
      more.disabled = state.done;
      more.hidden = state.done;
    }
  }
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) loadPage();
  }, { rootMargin: "300px" });
  observer.observe(sentinel);
  loadPage();
  return () => observer.disconnect();
}

function card(item, onSelect) {
  const id = `sel-${item.id}`;
  const box = h("input", { type: "checkbox", id, checked: selection.has(item.id), onchange: (e) => {
    if (e.target.checked) selection.add(item.id, item.filename); else selection.remove(item.id);
    onSelect();
  } });
  return h("li", { class: "card image-card", "data-id": item.id, "data-status": item.status },
    h("a", { href: `#/image/${item.id}`, class: "thumb-link" }, thumb(item, describe(item))),
    h("div", { class: "caption" },
      box, h("label", { for: id }, h("span", { class: "visually-hidden" }, "Select "), item.filename || item.id)),
    h("p", { class: "meta" }, `${item.format || ""} ${item.width || "?"}×${item.height || "?"} · ${item.status}`));
}
