import { getJSON } from "./api.js";
import { errorBox, h, svg, fill } from "./dom.js";

// Hand-made SVG bar charts, each followed by the same numbers as a table.

function barChart({ id, title, rows, width = 640, height = 220, vertical = true }) {
  const max = Math.max(1, ...rows.map((r) => r.value));
  const pad = { top: 12, right: 8, bottom: vertical ? 40 : 8, left: vertical ? 32 : 150 };
  const w = width - pad.left - pad.right;
  const hgt = (vertical ? height : 28 * rows.length + 16) - pad.top - pad.bottom;
  const totalH = hgt + pad.top + pad.bottom;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${totalH}`, role: "img", "aria-labelledby": `${id}-title`,
    class: "chart", id, preserveAspectRatio: "xMidYMid meet" });
  chart.append(svg("title", { id: `${id}-title` }, `${title}: ${rows.map((r) => `${r.label} ${r.value}`).join(", ")}`));
  const axis = svg("g", { class: "axis" });
  if (vertical) {
    axis.append(svg("line", { x1: pad.left, y1: pad.top + hgt, x2: pad.left + w, y2: pad.top + hgt }));
    axis.append(svg("text", { x: pad.left - 4, y: pad.top + 8, "text-anchor": "end" }, String(max)));
    axis.append(svg("text", { x: pad.left - 4, y: pad.top + hgt, "text-anchor": "end" }, "0"));
  }
  chart.append(axis);
  const band = (vertical ? w : hgt) / Math.max(1, rows.length);
  rows.forEach((r, i) => {
    const size = (r.value / max) * (vertical ? hgt : w - 40);
    const bar = vertical
      ? svg("rect", { x: pad.left + i * band + band * 0.15, y: pad.top + hgt - size, width: band * 0.7, height: size })
      : svg("rect", { x: pad.left, y: pad.top + i * band + band * 0.15, width: size, height: band * 0.7 });
    bar.setAttribute("class", "bar");
    bar.setAttribute("data-label", r.label);
    bar.setAttribute("data-value", String(r.value));
    bar.append(svg("title", {}, `${r.label}: ${r.value}`));
    chart.append(bar);
    if (vertical) {
      if (r.tick) chart.append(svg("text", { x: pad.left + i * band + band / 2, y: pad.top + hgt + 16,
        "text-anchor": "middle", class: "tick" }, r.tick));
    } else {
      chart.append(svg("text", { x: pad.left - 6, y: pad.top + i * band + band / 2 + 5, "text-anchor": "end",
        class: "tick" }, r.label));
      chart.append(svg("text", { x: pad.left + size + 4, y: pad.top + i * band + band / 2 + 5, class: "tick" },
        String(r.value)));
    }
  });
  return chart;
}

function dataTable(id, caption, head, rows) {
  return h("details", { class: "chart-data" }, h("summary", {}, `${caption} as a table`),
    h("table", { id }, h("caption", {}, caption),
      h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, h("th", { scope: "row" }, r.label), h("td", {}, String(r.value)))))));
}

function section(id, title, rows, options = {}) {
  return h("section", { class: "card", "aria-labelledby": `${id}-h` }, h("h2", { id: `${id}-h` }, title),
    rows.length ? barChart({ id: `${id}-chart`, title, rows, ...options }) : h("p", {}, "Nothing yet."),
    dataTable(`${id}-table`, title, options.head || ["Item", "Images"], rows));
}

export function dashboardView(main) {
  fill(main, h("h1", { tabindex: "-1" }, "Dashboard"), h("p", {}, "Loading…"));
  getJSON("/v1/stats").then((stats) => {
    const days = stats.uploads_per_day.map((d, i) => ({ label: d.date, value: d.uploads,
      tick: (stats.uploads_per_day.length - 1 - i) % 7 === 0 ? d.date.slice(5) : "" }));
    const formats = Object.entries(stats.formats).sort((a, b) => b[1] - a[1])
      .map(([label, value]) => ({ label, value }));
    const cameras = stats.top_cameras.map((c) => ({ label: c.camera, value: c.images }));
    fill(main, h("h1", { tabindex: "-1" }, "Dashboard"),
      h("p", { id: "totals" }, `${stats.total_images} images in total; most popular format: `,
        stats.most_popular_format || "none", "."),
      section("uploads", "Uploads per day, last 30 days (UTC)", days, { head: ["Day", "Uploads"] }),
      section("formats", "Images per format", formats, { vertical: false, head: ["Format", "Images"] }),
      section("cameras", "Top cameras", cameras, { vertical: false, head: ["Camera", "Images"] }));
  }).catch((err) => fill(main, h("h1", { tabindex: "-1" }, "Dashboard"), errorBox(err.message)));
}
