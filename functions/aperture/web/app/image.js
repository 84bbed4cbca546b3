import { blobURL, download, getJSON, query, showImage } from "./api.js";
import { announce, errorBox, formatBytes, formatDate, h, fill } from "./dom.js";
import { describe } from "./gallery.js";
import { resultsList } from "./search.js";
import { selection } from "./selection.js";

const FORMATS = ["jpeg", "png", "webp", "gif", "tiff", "bmp"];
const FUNCS = ["min", "mean", "median", "max"];

function channelsOf(mode) {
  if (mode === "RGB" || mode === "YCbCr" || mode === "CMYK") return ["r", "g", "b"];
  if (mode === "RGBA" || mode === "P") return ["r", "g", "b", "a"];
  if (mode === "L" || mode === "I" || mode === "I;16" || mode === "F" || mode === "1") return ["l"];
  return ["luma"];
}

function table(caption, rows) {
  return h("table", { class: "kv" }, h("caption", {}, caption),
    h("tbody", {}, rows.filter(([, v]) => v !== undefined && v !== null && v !== "").map(([k, v]) =>
      h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, typeof v === "object" ? JSON.stringify(v) : String(v))))));
}

export function imageView(main, params, id) {
  fill(main, h("h1", { tabindex: "-1" }, "Image"), h("p", {}, "Loading…"));
  const base = `/v1/images/${encodeURIComponent(id)}`;
  getJSON(base).then((record) => render(main, record, base)).catch((err) =>
    fill(main, h("h1", { tabindex: "-1" }, "Image"), errorBox(err.message)));
}

function render(main, record, base) {
  const title = record.filename || record.id;
  const picture = h("img", { alt: describe(record), class: "original" });
  showImage(picture, record.original_url, record.original_url ? null : `${base}/original`);
  const labels = (record.label_scores && record.label_scores.length)
    ? h("ul", { class: "labels" }, record.label_scores.map((l) =>
      h("li", {}, `${l.name} `, h("span", { class: "score" }, `${(l.score * 100).toFixed(1)}%`))))
    : h("p", {}, record.status === "pending" ? "Still processing: labels come soon." : "No labels.");
  const selectBox = h("input", { type: "checkbox", id: "select-this", checked: selection.has(record.id),
    onchange: (e) => (e.target.checked ? selection.add(record.id, record.filename) : selection.remove(record.id)) });

  fill(main, 
    h("h1", { tabindex: "-1" }, title),
    h("div", { class: "image-layout" },
      h("figure", {}, picture, h("figcaption", {}, `${record.format} · ${record.width}×${record.height} · ` +
        `${formatBytes(record.size)}`)),
      h("div", {},
        h("p", {}, selectBox, h("label", { for: "select-this" }, " Selected for a job")),
        table("Metadata", [["Id", record.id], ["File name", record.filename], ["Status", record.status],
          ["Error", record.error], ["Format", record.format], ["Mode", record.mode],
          ["Size", `${record.width} × ${record.height} px, ${formatBytes(record.size)}`], ["Frames", record.frames],
          ["Camera", record.camera], ["Captured", formatDate(record.captured_at)],
          ["Uploaded", formatDate(record.created_at)]]),
        h("h2", {}, "Labels"), labels)),
    record.exif && Object.keys(record.exif).length ? table("EXIF", Object.entries(record.exif)) : null,
    statsSection(record, base),
    transformSection(record, base),
    similarSection(record, base),
  );
}

function statsSection(record, base) {
  const section = h("section", { "aria-labelledby": "stats-h" }, h("h2", { id: "stats-h" }, "Pixel statistics"));
  if (record.status !== "processed") {
    section.append(h("p", {}, "Statistics are available once the image is processed."));
    return section;
  }
  const channels = channelsOf(record.mode);
  const cells = new Map();
  const tbody = h("tbody", {}, channels.map((c) => h("tr", {}, h("th", { scope: "row" }, c.toUpperCase()),
    FUNCS.map((f) => { const td = h("td", { "data-func": f, "data-channel": c }, "…"); cells.set(`${f}/${c}`, td); return td; }))));
  section.append(h("table", { id: "stats-table", class: "stats" },
    h("caption", {}, "Per channel, over every pixel"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Channel"), FUNCS.map((f) => h("th", { scope: "col" }, f)))),
    tbody));
  for (const f of FUNCS) for (const c of channels) {
    getJSON(`${base}/stats/${f}${query({ channel: c })}`, { headers: { Accept: "application/json" } })
      .then((answer) => {
        const value = Number(answer.value);
        cells.get(`${f}/${c}`).textContent = Number.isInteger(value) ? String(value) : value.toFixed(3);
      })
      .catch((err) => (cells.get(`${f}/${c}`).textContent = err.message));
  }
  return section;
}

function transformSection(record, base) {
  const ops = h("input", { id: "ops", name: "ops", type: "text", value: "resize:256x256", spellcheck: "false",
    "aria-describedby": "ops-help" });
  const format = h("select", { id: "format" }, FORMATS.map((f) => h("option", { value: f }, f.toUpperCase())));
  const preview = h("img", { id: "preview", alt: "Transform preview", hidden: true });
  const message = h("div", { id: "transform-message", "aria-live": "polite" });
  const path = () => `${base}.${format.value}${ops.value.trim() ? query({ ops: ops.value.trim() }) : ""}`;
  let previous = null;
  const doPreview = async () => {
    fill(message, h("p", {}, "Rendering…"));
    try {
      const url = await blobURL(path());
      if (previous) URL.revokeObjectURL(previous);
      previous = url;
      preview.src = url;
      preview.alt = `Preview of ${record.filename || record.id} with ${ops.value || "no operations"}`;
      preview.hidden = false;
      fill(message, h("p", {}, `Preview: ${format.value.toUpperCase()}, ${ops.value || "no operations"}.`));
    } catch (err) {
      fill(message, errorBox(err.message));
    }
  };
  const doDownload = async () => {
    const stem = (record.filename || record.id).replace(/\.[^.]*$/, "");
    try {
      await download(path(), `${stem}.${format.value}`);
      fill(message, h("p", { class: "ok" }, `Downloading ${stem}.${format.value}.`));
      announce(`Downloading ${stem}.${format.value}`);
    } catch (err) {
      fill(message, errorBox(err.message));
    }
  };
  return h("section", { "aria-labelledby": "transform-h" },
    h("h2", { id: "transform-h" }, "Transform and download"),
    h("form", { class: "transform", onsubmit: (e) => { e.preventDefault(); doPreview(); } },
      h("label", { for: "ops" }, "Operations"), ops,
      h("p", { id: "ops-help", class: "hint" }, "Separated by |, applied in order, e.g. ",
        h("code", {}, "crop:0,0,200,200|rotate:90|resize:50%|blur:2|grayscale|quality:80"),
        ". Leave empty to convert only."),
      h("label", { for: "format" }, "Format"), format,
      h("div", { class: "row" }, h("button", { type: "submit" }, "Preview"),
        h("button", { type: "button", id: "download", onclick: doDownload }, "Download"))),
    message, preview);
}

function similarSection(record, base) {
  const out = h("div", { id: "similar", "aria-live": "polite" });
  const button = h("button", { type: "button", onclick: async () => {
    fill(out, h("p", {}, "Looking…"));
    try {
      const answer = await getJSON(`${base}/similar${query({ limit: 12 })}`);
      fill(out, answer.results.length ? resultsList(answer.results, "Similar images")
        : h("p", {}, "No similar images."));
    } catch (err) {
      fill(out, errorBox(err.message));
    }
  } }, "More like this");
  return h("section", { "aria-labelledby": "similar-h" }, h("h2", { id: "similar-h" }, "More like this"), button, out);
}
