// What both dashboard pages share: reading the JSON API (with the read
// token when the daemon asks for one), refreshing every 10 s, formatting,
// and building DOM and SVG nodes. Data only ever reaches the page as
// textContent or attribute values, never as markup.

const TOKEN_KEY = "sperform.read-token";
export const REFRESH_MS = 10_000;
/// A server counts as stale when nothing came for longer than this.
export const STALE_MS = 2 * 60_000;

const SVG_NS = "http://www.w3.org/2000/svg";

/// An element with attributes and children (nodes or text).
export function el(tag, attributes = {}, ...children) {
  return build(document.createElement(tag), attributes, children);
}

/// An SVG element with attributes and children.
export function svg(tag, attributes = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attributes, children);
}

function build(node, attributes, children) {
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null && value !== false) {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children) {
    if (child !== undefined && child !== null) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return node;
}

function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? localStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

function storeToken(token, remember) {
  try {
    forgetToken();
    (remember ? localStorage : sessionStorage).setItem(TOKEN_KEY, token);
  } catch {
    // Storage refused (private mode): the token lasts as long as the page.
    fallbackToken = token;
  }
}

function forgetToken() {
  fallbackToken = null;
  try {
    sessionStorage.removeItem(TOKEN_KEY);
    localStorage.removeItem(TOKEN_KEY);
  } catch {
    // Nothing stored.
  }
}

let fallbackToken = null;
let pendingPrompt = null;

/// An error the API answered, with its status and `{"error": ...}` message.
export class ApiFailure extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/// GETs `path` from the JSON API and returns the parsed body. A `401` asks
/// for the read token (once, however many requests were refused) and
/// tries again with it.
export async function getJson(path) {
  for (;;) {
    const token = storedToken() ?? fallbackToken;
    const headers = { Accept: "application/json" };
    if (token) {
      headers.Authorization = `Bearer ${token}`;
    }
    const response = await fetch(path, { headers, cache: "no-store" });
    if (response.status === 401) {
      if (token) {
        forgetToken();
      }
      await askForToken(token ? "The daemon refused that token." : null);
      continue;
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const message = body && typeof body.error === "string" ? body.error : response.statusText;
      throw new ApiFailure(response.status, message);
    }
    return body;
  }
}

function askForToken(problem) {
  if (!pendingPrompt) {
    pendingPrompt = showTokenPrompt(problem).finally(() => {
      pendingPrompt = null;
    });
  }
  return pendingPrompt;
}

function showTokenPrompt(problem) {
  return new Promise((resolve) => {
    const input = el("input", {
      id: "token",
      type: "password",
      autocomplete: "current-password",
      spellcheck: "false",
      required: true,
    });
    const remember = el("input", { id: "remember", type: "checkbox" });
    const form = el(
      "form",
      { id: "token-prompt", class: "card token-prompt" },
      el("h2", {}, "Read token needed"),
      el("p", {}, "This sperform asks for its read token before it shows any data."),
      problem ? el("p", { class: "problem", role: "alert" }, problem) : null,
      el("label", { for: "token" }, "Read token"),
      input,
      el("label", { class: "check" }, remember, " Remember on this device"),
      el("button", { type: "submit" }, "Show the data"),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const token = input.value.trim();
      if (!token) {
        return;
      }
      storeToken(token, remember.checked);
      form.remove();
      resolve();
    });
    document.querySelector("main").prepend(form);
    input.focus();
  });
}

/// Calls `load` now and then every 10 s, until paused with the page's
/// Pause button; not while the tab is hidden. `load` returns true when it
/// got fresh data.
export function refreshEvery(load) {
  const button = document.getElementById("pause");
  const updated = document.getElementById("updated");
  let paused = false;
  let timer = null;
  let running = false;

  async function run() {
    clearTimeout(timer);
    timer = null;
    if (running) {
      return;
    }
    running = true;
    try {
      if (await load()) {
        updated.textContent = `Updated ${clockTime(new Date(), true)}`;
      }
    } finally {
      running = false;
      schedule();
    }
  }

  function schedule() {
    if (!paused && !document.hidden && timer === null) {
      timer = setTimeout(run, REFRESH_MS);
    }
  }

  button.addEventListener("click", () => {
    paused = !paused;
    button.setAttribute("aria-pressed", String(paused));
    button.textContent = paused ? "Resume" : "Pause";
    if (paused) {
      clearTimeout(timer);
      timer = null;
      updated.textContent = "Paused";
    } else {
      run();
    }
  });
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      clearTimeout(timer);
      timer = null;
    } else if (!paused) {
      run();
    }
  });
  run();
}

/// Shows `message` in the page's problem banner, or hides it for null.
export function showProblem(message) {
  const banner = document.getElementById("problem");
  banner.textContent = message ?? "";
  banner.hidden = message === null;
}

/// Why a load failed, in words for the banner.
export function describeFailure(error) {
  if (error instanceof ApiFailure) {
    return `The daemon answered ${error.status}: ${error.message}`;
  }
  return `The daemon could not be reached (${error.message}); trying again in ${REFRESH_MS / 1000} s.`;
}

const percentFormat = new Intl.NumberFormat(undefined, {
  minimumFractionDigits: 1,
  maximumFractionDigits: 1,
});
const exactFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

/// A percentage for a glance: one decimal, or a dash for no data.
export function percent(value) {
  return value === null || value === undefined ? "–" : `${percentFormat.format(value)}\u00a0%`;
}

/// A percentage for tooltips and tables: up to two decimals.
export function exact(value) {
  return value === null || value === undefined ? "–" : exactFormat.format(value);
}

const clockFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const secondsFormat = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});
const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  dateStyle: "medium",
  timeStyle: "medium",
});

/// Hours and minutes in the viewer's local time.
export function clockTime(date, withSeconds = false) {
  return (withSeconds ? secondsFormat : clockFormat).format(date);
}

/// Date and time in the viewer's local time.
export function dateTime(date) {
  return dateTimeFormat.format(date);
}

/// "12 s ago", "5 min ago", "3 h ago", "2 d ago" for `ms` milliseconds.
export function ago(ms) {
  if (ms < -1000) {
    return `in ${duration(-ms)}`;
  }
  if (ms < 1000) {
    return "just now";
  }
  return `${duration(ms)} ago`;
}

function duration(ms) {
  const seconds = Math.floor(ms / 1000);
  if (seconds < 60) {
    return `${seconds} s`;
  }
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) {
    return `${minutes} min`;
  }
  const hours = Math.floor(minutes / 60);
  if (hours < 48) {
    return `${hours} h`;
  }
  return `${Math.floor(hours / 24)} d`;
}

/// The `d` of an SVG path through the points of `values` (null for none),
/// broken where a value is missing, so a gap is drawn as a gap. A point
/// with no neighbour is a zero-length line: a dot under round line caps.
export function linePath(values, x, y) {
  const runs = [];
  let run = null;
  values.forEach((value, index) => {
    if (value === null || value === undefined) {
      run = null;
      return;
    }
    if (run === null) {
      run = [];
      runs.push(run);
    }
    run.push(`${x(index).toFixed(1)} ${y(value).toFixed(1)}`);
  });
  return runs
    .map((points) => `M${points.join("L")}${points.length === 1 ? "h0" : ""}`)
    .join("");
}
