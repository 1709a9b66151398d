// The list of every server: filter, sort, page; one request to
// /api/v1/overview per refresh, whatever the number of servers.

import {
  STALE_MS,
  ago,
  dateTime,
  clockTime,
  describeFailure,
  el,
  getJson,
  linePath,
  percent,
  refreshEvery,
  showProblem,
  svg,
} from "./common.js";

const PAGE_SIZE = 100;
const MINUTE_MS = 60_000;
/// The direction a column sorts in when first clicked.
const FIRST_DIRECTION = { name: "ascending", last_seen: "descending", cpu: "descending", ram: "descending" };

const countFormat = new Intl.NumberFormat();

const state = {
  servers: [],
  // The daemon's clock at the last answer, and when that answer came
  // (performance.now()), so ages do not depend on the viewer's clock.
  daemonNow: 0,
  receivedAt: 0,
  filter: "",
  sort: "name",
  direction: "ascending",
  page: 0,
  loaded: false,
};

const body = document.querySelector("#servers tbody");
const filterInput = document.getElementById("filter");

/// The view (filter, sort, page) lives in the query string too, so it can
/// be bookmarked and survives a reload: `/?q=web&sort=cpu&order=descending`.
function readView() {
  const query = new URLSearchParams(location.search);
  const sort = query.get("sort");
  if (sort !== null && Object.hasOwn(FIRST_DIRECTION, sort)) {
    state.sort = sort;
    state.direction = FIRST_DIRECTION[sort];
  }
  const order = query.get("order");
  if (order === "ascending" || order === "descending") {
    state.direction = order;
  }
  filterInput.value = query.get("q") ?? "";
  state.filter = filterInput.value.trim().toLowerCase();
  const page = Number.parseInt(query.get("page") ?? "1", 10);
  state.page = Number.isFinite(page) && page > 1 ? page - 1 : 0;
}

function writeView() {
  const query = new URLSearchParams();
  if (filterInput.value.trim()) {
    query.set("q", filterInput.value.trim());
  }
  if (state.sort !== "name" || state.direction !== "ascending") {
    query.set("sort", state.sort);
    query.set("order", state.direction);
  }
  if (state.page > 0) {
    query.set("page", String(state.page + 1));
  }
  const search = query.toString();
  history.replaceState(null, "", search ? `?${search}` : location.pathname);
}

/// The latest minute that holds data: the current one, or the one before
/// while the current minute has no sample yet.
function latest(values) {
  for (const index of [values.length - 1, values.length - 2]) {
    if (index >= 0 && values[index] !== null) {
      return { value: values[index], index };
    }
  }
  return { value: null, index: null };
}

function prepare(answer) {
  const start = Date.parse(answer.start);
  return answer.servers.map((server) => {
    const cpu = latest(server.cpu);
    const ram = latest(server.ram);
    return {
      name: server.name,
      lastSeen: server.last_seen === null ? null : Date.parse(server.last_seen),
      cpu: server.cpu,
      ram: server.ram,
      cpuNow: cpu.value,
      ramNow: ram.value,
      nowMinute: cpu.index === null ? null : new Date(start + cpu.index * MINUTE_MS),
      lowerName: server.name.toLowerCase(),
    };
  });
}

function daemonNow() {
  return state.daemonNow + (performance.now() - state.receivedAt);
}

/// Orders two values, a missing one (null) last whatever the direction.
function compareMissingLast(a, b, descending) {
  if (a === null || b === null) {
    return a === null ? (b === null ? 0 : 1) : -1;
  }
  return descending ? b - a : a - b;
}

function compare(a, b) {
  const descending = state.direction === "descending";
  let order = 0;
  if (state.sort === "name") {
    order = a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
    return descending ? -order : order;
  }
  const key = { last_seen: "lastSeen", cpu: "cpuNow", ram: "ramNow" }[state.sort];
  order = compareMissingLast(a[key], b[key], descending);
  // Ties keep name order, so equal rows do not swap between refreshes.
  return order !== 0 ? order : a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function sparkline(server) {
  const width = 160;
  const height = 32;
  const x = (index) => 2 + (index * (width - 4)) / 59;
  const y = (value) => 2 + ((100 - value) * (height - 4)) / 100;
  return svg(
    "svg",
    {
      class: "spark",
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": `CPU and RAM of ${server.name} over the last 60 minutes`,
    },
    svg("rect", { class: "spark-bg", x: 0, y: 0, width, height, rx: 3 }),
    svg("line", { class: "spark-axis", x1: 2, x2: width - 2, y1: y(0), y2: y(0) }),
    svg("path", { class: "line ram", d: linePath(server.ram, x, y) }),
    svg("path", { class: "line cpu", d: linePath(server.cpu, x, y) }),
  );
}

function lastSeenCell(server) {
  const cell = el("td", { class: "seen" });
  if (server.lastSeen !== null) {
    cell.dataset.ms = String(server.lastSeen);
    cell.title = dateTime(new Date(server.lastSeen));
  }
  fillLastSeen(cell);
  return cell;
}

/// Writes the age of the sample into a last-seen cell and marks it stale.
function fillLastSeen(cell) {
  if (cell.dataset.ms === undefined) {
    cell.replaceChildren("never");
    cell.classList.add("stale");
    return;
  }
  const age = daemonNow() - Number(cell.dataset.ms);
  const stale = age > STALE_MS;
  cell.classList.toggle("stale", stale);
  cell.replaceChildren(ago(age));
  if (stale) {
    cell.append(el("span", { class: "badge" }, "stale"));
  }
}

function row(server) {
  const title = server.nowMinute ? `minute from ${clockTime(server.nowMinute)}` : "no data in the last two minutes";
  return el(
    "tr",
    { "data-server": server.name },
    el(
      "th",
      { scope: "row", class: "name" },
      el("a", { href: `/servers/${encodeURIComponent(server.name)}` }, server.name),
    ),
    lastSeenCell(server),
    el("td", { class: "number cpu-now", title }, percent(server.cpuNow)),
    el("td", { class: "number ram-now", title }, percent(server.ramNow)),
    el("td", { class: "spark-column" }, sparkline(server)),
  );
}

function render() {
  const matching = state.filter
    ? state.servers.filter((server) => server.lowerName.includes(state.filter))
    : state.servers.slice();
  matching.sort(compare);
  const pages = Math.max(1, Math.ceil(matching.length / PAGE_SIZE));
  state.page = Math.min(state.page, pages - 1);
  const first = state.page * PAGE_SIZE;
  const shown = matching.slice(first, first + PAGE_SIZE);

  body.replaceChildren(...shown.map(row));
  for (const header of document.querySelectorAll("th[data-sort]")) {
    if (header.dataset.sort === state.sort) {
      header.setAttribute("aria-sort", state.direction);
    } else {
      header.removeAttribute("aria-sort");
    }
  }

  const total = state.servers.length;
  const empty = document.getElementById("empty");
  empty.hidden = !state.loaded || shown.length > 0;
  empty.textContent =
    total === 0 ? "No server has reported yet." : `No server name contains “${filterInput.value.trim()}”.`;
  const count = state.filter
    ? `${countFormat.format(matching.length)} of ${countFormat.format(total)} servers match`
    : `${countFormat.format(total)} ${total === 1 ? "server" : "servers"}`;
  document.getElementById("shown").textContent = !state.loaded
    ? ""
    : matching.length > PAGE_SIZE
      ? `${count} · showing ${countFormat.format(first + 1)}–${countFormat.format(first + shown.length)}`
      : count;

  const pager = document.getElementById("pager");
  pager.hidden = pages <= 1;
  document.getElementById("page").textContent = `Page ${state.page + 1} of ${pages}`;
  document.getElementById("previous").disabled = state.page === 0;
  document.getElementById("next").disabled = state.page >= pages - 1;
}

async function load() {
  try {
    const answer = await getJson("/api/v1/overview");
    state.servers = prepare(answer);
    state.daemonNow = Date.parse(answer.at);
    state.receivedAt = performance.now();
    state.loaded = true;
    showProblem(null);
    render();
    return true;
  } catch (error) {
    showProblem(describeFailure(error));
    return false;
  }
}

filterInput.addEventListener("input", () => {
  state.filter = filterInput.value.trim().toLowerCase();
  state.page = 0;
  render();
  writeView();
});
for (const header of document.querySelectorAll("th[data-sort]")) {
  header.querySelector("button").addEventListener("click", () => {
    const key = header.dataset.sort;
    if (state.sort === key) {
      state.direction = state.direction === "ascending" ? "descending" : "ascending";
    } else {
      state.sort = key;
      state.direction = FIRST_DIRECTION[key];
    }
    state.page = 0;
    render();
    writeView();
  });
}
document.getElementById("previous").addEventListener("click", () => {
  state.page -= 1;
  render();
  writeView();
});
document.getElementById("next").addEventListener("click", () => {
  state.page += 1;
  render();
  writeView();
});
// Ages move on between refreshes (and while paused).
setInterval(() => {
  if (state.loaded) {
    body.querySelectorAll("td.seen").forEach(fillLastSeen);
  }
}, 1000);

readView();
refreshEvery(load);
