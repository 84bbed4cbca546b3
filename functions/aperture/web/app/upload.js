import { uploadFile } from "./api.js";
import { announce, formatBytes, h, fill } from "./dom.js";

const STATUS_TEXT = { created: "created", duplicate: "duplicate (already uploaded)", rejected: "rejected" };

export function uploadView(main) {
  const input = h("input", { id: "file-input", type: "file", multiple: true,
    accept: "image/jpeg,image/png,image/gif,image/webp,image/tiff,image/bmp" });
  const list = h("ol", { id: "upload-list", class: "uploads", "aria-label": "Uploads" });
  const zone = h("div", { id: "drop-zone", class: "drop-zone" },
    h("p", {}, "Drop image files here, or "),
    h("label", { for: "file-input", class: "button-like" }, "Choose files"),
    input,
    h("p", { class: "hint" }, "JPEG, PNG, GIF, WebP, TIFF or BMP; up to 25 MB each. One request per file."));

  const start = (files) => { if (files.length) uploadAll([...files], list); };
  input.addEventListener("change", () => { start(input.files); input.value = ""; });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    start(e.dataTransfer ? e.dataTransfer.files : []);
  });
  fill(main, h("h1", { tabindex: "-1" }, "Upload"), zone, h("h2", {}, "Files"), list,
    h("p", {}, h("a", { href: "#/gallery" }, "Go to the gallery")));
}

async function uploadAll(files, list) {
  announce(`Uploading ${files.length} file${files.length > 1 ? "s" : ""}`);
  const rows = files.map((file) => {
    const progress = h("progress", { max: "100", value: "0", "aria-label": `Upload progress of ${file.name}` });
    const outcome = h("span", { class: "outcome" }, "uploading…");
    const row = h("li", { class: "upload" }, h("span", { class: "name" }, file.name),
      h("span", { class: "size" }, formatBytes(file.size)), progress, outcome);
    list.append(row);
    return { file, progress, outcome, row };
  });
  // a few at a time: each file is its own request with its own progress
  const queue = [...rows];
  const worker = async () => {
    for (let item = queue.shift(); item; item = queue.shift()) {
      const answer = await uploadFile(item.file, (f) => (item.progress.value = Math.round(f * 100)));
      item.progress.value = 100;
      item.row.dataset.status = answer.status;
      const text = STATUS_TEXT[answer.status] || answer.status;
      fill(item.outcome, 
        answer.id ? h("a", { href: `#/image/${answer.id}` }, text) : text,
        answer.error ? ` — ${answer.error}${answer.status_code ? ` (${answer.status_code})` : ""}` : "");
    }
  };
  await Promise.all([worker(), worker(), worker()]);
  const counts = {};
  for (const r of rows) counts[r.row.dataset.status] = (counts[r.row.dataset.status] || 0) + 1;
  announce(`Uploads finished: ${Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(", ")}`);
}
