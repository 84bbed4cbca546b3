// Everything that talks to the API: the key (sessionStorage), JSON calls, uploads
// with progress, and images (signed links as they are; key-fetched blobs otherwise).

const KEY = "aperture.apiKey";

export function getKey() { return sessionStorage.getItem(KEY) || ""; }
export function setKey(key) { sessionStorage.setItem(KEY, key); }
export function clearKey() { sessionStorage.removeItem(KEY); }

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) message = `${response.status}: ${body.error.message}`;
  } catch { /* not JSON */ }
  return new ApiError(response.status, message);
}

// fetch with the key; throws ApiError (with the API's JSON message) unless 2xx.
export async function call(path, { method = "GET", body, headers = {}, key = getKey() } = {}) {
  const init = { method, headers: { ...headers } };
  if (key) init.headers["x-api-key"] = key;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, `network error: ${err.message}`);
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

export async function getJSON(path, options) {
  return (await call(path, options)).json();
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

// One POST /v1/images per file, with upload progress: onProgress(fraction).
// Resolves to the answer's entry for the file ({filename, id, status, error?, status_code?}).
export function uploadFile(file, onProgress) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    const form = new FormData();
    form.append("files", file, file.name);
    xhr.open("POST", "/v1/images");
    xhr.setRequestHeader("x-api-key", getKey());
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); });
    xhr.addEventListener("load", () => {
      const body = xhr.response;
      if (body && Array.isArray(body.files) && body.files.length) {
        resolve(body.files[0]);
      } else {
        const message = body && body.error ? body.error.message : `HTTP ${xhr.status}`;
        resolve({ filename: file.name, id: null, status: "rejected", error: message, status_code: xhr.status });
      }
    });
    xhr.addEventListener("error", () =>
      resolve({ filename: file.name, id: null, status: "rejected", error: "network error", status_code: 0 }));
    xhr.send(form);
  });
}

// A blob: URL of a keyed GET (previews, downloads, images without a signed link).
export async function blobURL(path) {
  const response = await call(path);
  return URL.createObjectURL(await response.blob());
}

function sameOrigin(url) {
  try { return new URL(url, location.href).origin === location.origin; } catch { return false; }
}

// Shows an image in `img`: the URL the API handed out (a signed link opens without a
// key); when there is none, or it is refused (no signature yet), the bytes of
// `fallbackPath` fetched with the key, as a blob URL.
export function showImage(img, url, fallbackPath) {
  const fallback = async () => {
    img.removeEventListener("error", fallback);
    const path = fallbackPath || (url && sameOrigin(url) ? url : null);
    if (!path) { img.alt = `${img.alt} (not available)`; return; }
    try {
      const blob = await blobURL(path);
      img.addEventListener("load", () => URL.revokeObjectURL(blob), { once: true });
      img.src = blob;
    } catch (err) {
      img.alt = `${img.alt} (${err.message})`;
    }
  };
  if (url) {
    img.addEventListener("error", fallback);
    img.src = url;
  } else {
    fallback();
  }
}

// Starts a download of a keyed GET as `filename`; throws ApiError on 4xx/5xx.
export async function download(path, filename) {
  const response = await call(path);
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
