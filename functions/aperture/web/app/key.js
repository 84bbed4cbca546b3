import { ApiError, clearKey, getJSON, getKey, setKey } from "./api.js";
import { announce, errorBox, h, fill } from "./dom.js";

// Checks a key with GET /v1/me; resolves to {team, role, ...} or throws ApiError.
export function whoami(key = getKey()) {
  return getJSON("/v1/me", { key });
}

export function renderWho(me) {
  const who = document.getElementById("who");
  who.textContent = me ? `Team ${me.team} · ${me.role}` : "No API key";
}

export function keyView(main, { next } = {}) {
  const input = h("input", { id: "api-key", name: "api-key", type: "password", autocomplete: "off",
    spellcheck: "false", required: true, "aria-describedby": "api-key-help" });
  const result = h("div", { id: "key-result", "aria-live": "polite" });
  const form = h("form", { class: "card", onsubmit: async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    fill(result, h("p", {}, "Checking the key…"));
    try {
      const me = await whoami(key);
      setKey(key);
      input.value = "";
      renderWho(me);
      fill(result, h("p", { class: "ok" }, `Key accepted: team ${me.team}, role ${me.role}.`));
      announce(`Key accepted for team ${me.team}`);
      if (next && location.hash === next) window.dispatchEvent(new HashChangeEvent("hashchange"));
      else if (next) location.hash = next;
    } catch (err) {
      const why = err instanceof ApiError && err.status === 401
        ? `This key was refused (${err.message}). Check that it is complete and not revoked.`
        : `The key could not be checked: ${err.message}`;
      fill(result, errorBox(why));
      input.focus();
    }
  } },
    h("label", { for: "api-key" }, "API key"),
    h("p", { id: "api-key-help", class: "hint" },
      "Paste the key you were given (aperture keys create). It is kept in this tab only (sessionStorage) " +
      "and sent as the x-api-key header."),
    h("div", { class: "row" }, input, h("button", { type: "submit" }, "Use this key")),
  );
  const forget = h("button", { type: "button", class: "secondary", onclick: () => {
    clearKey(); renderWho(null); fill(result, h("p", {}, "Key forgotten.")); announce("Key forgotten");
  } }, "Forget the key");
  fill(main, h("h1", { tabindex: "-1" }, "API key"), form, result, getKey() ? forget : null);
}
