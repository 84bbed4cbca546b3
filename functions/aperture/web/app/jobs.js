import { download, getJSON, showImage } from "./api.js";
import { announce, errorBox, formatDate, h, fill } from "./dom.js";
import { selection } from "./selection.js";

const TERMINAL = new Set(["done", "failed", "partial", "cancelled"]);
const OUTPUT_FORMATS = ["", "jpeg", "png", "webp", "gif", "tiff", "bmp"];

function outputName(index, filename, format) {
  const clean = (filename || "image").replace(/[^A-Za-z0-9._-]+/g, "_").replace(/^\.+/, "");
  const stem = clean.replace(/\.[^.]*$/, "") || "image";
  const ext = format || (clean.includes(".") ? clean.split(".").pop() : "");
  return `${String(index + 1).padStart(3, "0")}-${stem}${ext ? `.${ext}` : ""}`;
}

export function jobsView(main) {
  const chosen = selection.entries();
  const list = h("ul", { id: "job-selection", class: "plain" }, chosen.map(([id, filename]) =>
    h("li", {}, h("a", { href: `#/image/${id}` }, filename), " ",
      h("button", { type: "button", class: "link", "aria-label": `Remove ${filename} from the selection`,
        onclick: () => { selection.remove(id); jobsView(main); } }, "remove"))));
  const operations = h("textarea", { id: "operations", name: "operations", rows: "4", spellcheck: "false",
    "aria-describedby": "operations-help" }, "resize=50");
  const format = h("select", { id: "output-format" },
    OUTPUT_FORMATS.map((f) => h("option", { value: f }, f ? f.toUpperCase() : "Same as the input")));
  const message = h("div", { id: "job-message", "aria-live": "polite" });
  const form = h("form", { class: "card", onsubmit: async (e) => {
    e.preventDefault();
    const ops = operations.value.split("\n").map((s) => s.trim()).filter(Boolean);
    const images = selection.entries().map(([id, filename], i) => ({ input: id,
      output: outputName(i, filename, format.value) }));
    if (!images.length) { fill(message, errorBox("Select images in the gallery first.")); return; }
    fill(message, h("p", {}, "Submitting…"));
    try {
      const answer = await getJSON("/v1/jobs", { method: "POST", body: { images, operations: ops } });
      announce(`Job ${answer.job_id} submitted`);
      location.hash = `#/job/${answer.job_id}`;
    } catch (err) {
      fill(message, errorBox(err.message));
    }
  } },
    h("h2", {}, "New job"),
    h("p", {}, `${chosen.length} image${chosen.length === 1 ? "" : "s"} selected `,
      h("a", { href: "#/gallery" }, "(change the selection in the gallery)")),
    list,
    h("label", { for: "operations" }, "Operations, one per line"), operations,
    h("p", { id: "operations-help", class: "hint" }, "Applied in order: ", h("code", {}, "resize=50"),
      " (percent), ", h("code", {}, "blur=5"), " (kernel size), ", h("code", {}, "split=true"),
      " (four quadrants), and the transforms of the ops grammar spelled name=value, e.g. ",
      h("code", {}, "rotate=90"), ", ", h("code", {}, "grayscale=true"), "."),
    h("label", { for: "output-format" }, "Output format"), format,
    h("div", { class: "row" }, h("button", { type: "submit", disabled: !chosen.length }, "Submit the job"),
      h("button", { type: "button", class: "secondary", disabled: !chosen.length,
        onclick: () => { selection.clear(); jobsView(main); } }, "Clear the selection")),
    message);
  const recent = h("div", { id: "recent-jobs" }, h("p", {}, "Loading…"));
  fill(main, h("h1", { tabindex: "-1" }, "Batch jobs"), form, h("h2", {}, "Recent jobs"), recent);
  getJSON("/v1/jobs?limit=10").then((answer) => fill(recent, answer.jobs.length
    ? h("ul", { class: "plain" }, answer.jobs.map((j) => h("li", {},
      h("a", { href: `#/job/${j.job_id}` }, j.job_id), ` — ${j.status}, ${j.counts.done}/${j.total} done, `,
      formatDate(j.created_at))))
    : h("p", {}, "No jobs yet."))).catch((err) => fill(recent, errorBox(err.message)));
}

export function jobView(main, params, jobId) {
  const progress = h("progress", { id: "job-progress", max: "1", value: "0", "aria-label": "Job progress" });
  const status = h("p", { id: "job-status", "aria-live": "polite" }, "Loading…");
  const items = h("div", { id: "job-items" });
  fill(main, h("h1", { tabindex: "-1" }, `Job ${jobId}`), progress, status, items,
    h("p", {}, h("a", { href: "#/jobs" }, "All jobs")));
  let timer = null;
  let alive = true;
  const poll = async () => {
    try {
      const job = await getJSON(`/v1/jobs/${encodeURIComponent(jobId)}`);
      const c = job.counts;
      const finished = c.done + c.failed + c.cancelled;
      progress.max = job.total;
      progress.value = finished;
      status.dataset.status = job.status;
      status.textContent = `Status: ${job.status} — ${c.done} done, ${c.failed} failed, ${c.running} running, ` +
        `${c.queued} queued, ${c.cancelled} cancelled of ${job.total}. Operations: ${job.operations.join(", ")}.`;
      if (TERMINAL.has(job.status)) {
        renderItems(items, job);
        announce(`Job ${job.status}`);
        return;
      }
    } catch (err) {
      fill(status, errorBox(err.message));
      return;
    }
    if (alive) timer = setTimeout(poll, 1000);
  };
  poll();
  return () => { alive = false; clearTimeout(timer); };
}

function renderItems(container, job) {
  fill(container, h("h2", {}, "Items and outputs"), h("ol", { class: "plain job-items" },
    (job.items || []).map((item) => h("li", { "data-state": item.state },
      h("p", {}, `${item.output} from ${item.input}: ${item.state}`, item.error ? ` — ${item.error}` : ""),
      h("ul", { class: "grid outputs" }, item.outputs.map((out) => {
        const img = h("img", { alt: `Output ${out.name}`, class: "thumb", loading: "lazy" });
        showImage(img, out.url, null);
        const name = out.name.split("/").pop();
        return h("li", { class: "card" }, img, h("p", {}, h("a", { href: out.url, class: "output-link",
          onclick: (e) => { e.preventDefault(); download(out.url, name).catch((err) =>
            container.append(errorBox(err.message))); } }, `Download ${name}`)));
      }))))));
}
