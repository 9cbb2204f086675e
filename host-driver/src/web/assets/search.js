// file-restore web UI: the search box. Searches the open SOURCE below the
// directory shown (GET /api/find, JSON Lines read as they arrive), lists the
// matches in place of the listing, and opens a match's directory in the tree.
// Uses app.js's helpers; every guest-provided text goes in by textContent.
"use strict";

const search = { ctrl: null, node: null, found: 0, notes: 0 };
const MAX_NOTES = 50; // skipped places shown; the rest only counted

const findUrl = (params) => `/api/find?${q(params)}`;

// The bytes of an API path (base64) as a binary string, and back.
const pathBytes = (b64) => atob(b64);
const bytesPath = (bin) => btoa(bin);

function parentOf(b64) {
  const p = pathBytes(b64);
  const i = p.lastIndexOf("/");
  return bytesPath(i > 0 ? p.slice(0, i) : "/");
}

function searchStatus(text, isError) {
  const s = $("search-status");
  s.textContent = text;
  s.classList.toggle("error", !!isError);
}

// Shows the search results instead of the listing (or the listing again).
function showResults(on) {
  $("search-results").hidden = !on;
  $("listing").hidden = on;
  $("more").hidden = on;
  $("toolbar").hidden = on;
  $("search-clear").hidden = !on;
}

// Back to the directory: any running search is stopped.
function leaveSearch() {
  if (search.ctrl) search.ctrl.abort();
  search.ctrl = null;
  showResults(false);
}

// The query of the form, or null (with a message) when it asks for nothing.
function searchParams(node) {
  const text = $("search").value.trim();
  const type = $("search-type").value;
  const days = $("search-days").value.trim();
  const params = { source: node.source, path: node.path };
  // A plain word finds names containing it; a glob is taken as it is (both
  // ignore case).
  if (text) params.iname = /[*?[]/.test(text) ? text : `*${text}*`;
  if (type) params.type = type;
  if (days) {
    const n = Number(days);
    if (!Number.isInteger(n) || n < 1) {
      searchStatus(`"${days}" is not a whole number of days`, true);
      return null;
    }
    params.newer = String(Math.floor(Date.now() / 1000) - n * 86400);
  }
  if (!text && !type && !days) {
    searchStatus("type a name (or pick a type or a number of days) to search for", true);
    return null;
  }
  return params;
}

function startSearch() {
  const node = view.node;
  if (!node) { $("message").textContent = "open a source (or a directory of it) to search in first"; return; }
  leaveSearch();
  showResults(true);
  $("search-rows").replaceChildren();
  $("search-notes").replaceChildren();
  const params = searchParams(node);
  if (!params) return;
  const ctrl = new AbortController();
  Object.assign(search, { ctrl, node, found: 0, notes: 0 });
  searchStatus(`searching below ${pathText(node.path)}…`);
  runSearch(node, findUrl(params), ctrl);
}

// Reads the answer line by line while it arrives.
async function runSearch(node, url, ctrl) {
  const mine = () => search.ctrl === ctrl;
  const state = { ended: false, failed: false, visited: 0 };
  try {
    const r = await fetch(url, { credentials: "same-origin", signal: ctrl.signal });
    if (!r.ok) {
      let msg = `HTTP ${r.status}`;
      try { msg = (await r.json()).error || msg; } catch (_) { /* not JSON */ }
      if (mine()) searchStatus(`search refused: ${msg}`, true);
      return;
    }
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (!mine()) { reader.cancel().catch(() => {}); return; }
      buf += done ? dec.decode() : dec.decode(value, { stream: true });
      const frag = document.createDocumentFragment();
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (line) searchLine(node, line, frag, state);
      }
      $("search-rows").append(frag);
      if (done) break;
      if (!state.ended && !state.failed) {
        searchStatus(`searching… ${search.found} found, ${state.visited} entries looked at`);
      }
    }
    if (!state.ended && !state.failed) searchStatus("the search broke off (the answer ended early)", true);
  } catch (err) {
    if (mine() && !ctrl.signal.aborted) searchStatus(`the search broke off: ${err.message}`, true);
  } finally {
    if (mine()) loadStatus(); // the search may have started the VM
  }
}

function searchLine(node, line, frag, state) {
  let ev;
  try { ev = JSON.parse(line); } catch (_) {
    state.failed = true;
    searchStatus("the server sent a line that is not JSON", true);
    return;
  }
  if (ev.match) {
    search.found++;
    frag.append(searchRow(node, ev.match));
  } else if (ev.skip) {
    search.notes++;
    if (search.notes <= MAX_NOTES) {
      $("search-notes").append(el("li", {}, `Not searched: ${ev.skip.path}: ${ev.skip.reason}`));
    }
  } else if (ev.progress) {
    state.visited = ev.progress.visited;
  } else if (ev.end) {
    state.ended = true;
    const e = ev.end;
    const found = `${e.matched} ${e.matched === 1 ? "match" : "matches"}, ${e.visited} ${e.visited === 1 ? "entry" : "entries"} looked at`;
    const skipped = e.skipped ? `, ${e.skipped} ${e.skipped === 1 ? "place" : "places"} not searched` : "";
    const cut = e.truncated ? ` — stopped at ${e.matched} results: narrow the search to see the rest` : "";
    searchStatus(`${found}${skipped}${cut}`);
    if (search.notes > MAX_NOTES) {
      $("search-notes").append(el("li", {}, `and ${search.notes - MAX_NOTES} more places not searched`));
    }
  } else if (ev.error) {
    state.failed = true;
    searchStatus(ev.error, true);
  }
}

function searchRow(node, e) {
  const full = e.path || pathText(e.filepath);
  const name = el("td", { class: "n" });
  if (isDirLike(e)) {
    name.append(el("a", { href: "#", class: "open", onclick: (ev) => { ev.preventDefault(); reveal(node, e.filepath, null); } }, full));
  } else {
    name.append(el("span", {}, full));
  }
  if (e.type === "l" && e.target !== undefined) name.append(el("span", { class: "target" }, ` → ${e.target}`));
  const actions = el("td", { class: "a" },
    el("a", { href: "#", class: "reveal", onclick: (ev) => { ev.preventDefault(); reveal(node, parentOf(e.filepath), e.filepath); } }, "Show in folder"));
  if (e.type === "f") {
    actions.append(" ", el("a", { href: downloadUrl(node.source, e.filepath), download: "", class: "dl" }, "Download"),
      " ", versionsButton(node.source, e));
  }
  return el("tr", { "data-type": e.type },
    el("td", { class: "t", title: TYPE_NAMES[e.type] || e.type }, TYPE_NAMES[e.type] || e.type),
    name,
    el("td", { class: "s" }, humanSize(e.size)),
    el("td", { class: "m" }, humanTime(e.mtime)),
    actions);
}

// Opens directory `target` (base64) below tree node `base` level by level,
// then puts the cursor on `focus` (a path in it) when given.
async function reveal(base, target, focus) {
  leaveSearch();
  const want = pathBytes(target);
  let node = base;
  try {
    for (;;) {
      const here = pathBytes(node.path);
      if (here === want) break;
      await expand(node);
      await load(node); // an expand already under way has its children then
      const prefix = here.endsWith("/") ? here : `${here}/`;
      const next = Array.from(node.childrenEl.children).map((li) => li.__node).find((n) => {
        if (!n) return false;
        const p = pathBytes(n.path);
        return want === p || want.startsWith(p.endsWith("/") ? p : `${p}/`);
      });
      if (!next || !pathBytes(next.path).startsWith(prefix)) break;
      node = next;
    }
  } catch (err) {
    $("message").textContent = err.message;
  }
  await select(node, true);
  node.row.scrollIntoView({ block: "nearest" });
  if (!focus || view.node !== node) return;
  const i = view.shown.findIndex((x) => x.filepath === focus);
  if (i < 0) return;
  view.cursor = i;
  while (view.cursor >= view.rendered) renderMore();
  markCursor();
  $("rows").focus({ preventScroll: true });
}

$("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); startSearch(); });
$("search-clear").addEventListener("click", () => { leaveSearch(); $("rows").focus(); });
$("search").addEventListener("keydown", (ev) => {
  if (ev.key === "Escape") { $("search").value = ""; leaveSearch(); ev.preventDefault(); }
});
