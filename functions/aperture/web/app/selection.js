// The images selected in the gallery for a batch job (kept for the browser tab).
const KEY = "aperture.selection";

function load() {
  try { return new Map(JSON.parse(sessionStorage.getItem(KEY) || "[]")); } catch { return new Map(); }
}
const selected = load();
const save = () => sessionStorage.setItem(KEY, JSON.stringify([...selected]));

export const selection = {
  has: (id) => selected.has(id),
  add(id, filename) { selected.set(id, filename || id); save(); },
  remove(id) { selected.delete(id); save(); },
  clear() { selected.clear(); save(); },
  entries: () => [...selected],
  get size() { return selected.size; },
};
