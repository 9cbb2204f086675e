// file-restore web UI: vanilla JavaScript, no framework, no build step.
// Every text from the server (and so from the disk image) goes into the page
// through textContent, never as HTML.
"use strict";

const PAGE = 500; // rows rendered at once; more on scroll or "Show more"
const CSRF = document.querySelector('meta[name="csrf"]').content;

const $ = (id) => document.getElementById(id);
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(url, opts) {
  const r = await fetch(url, Object.assign({ credentials: "same-origin" }, opts || {}));
  const text = await r.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
  if (!r.ok) throw new ApiError(r.status, (body && body.error) || `HTTP ${r.status}`);
  return body;
}

const q = (params) => Object.entries(params)
  .map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join("&");
const listUrl = (source, path) => `/api/list?${q({ source, path })}`;
const archiveUrl = (source, paths) =>
  `/api/archive?source=${encodeURIComponent(source)}&${paths.map((p) => `path=${encodeURIComponent(p)}`).join("&")}`;
const downloadUrl = (source, path, format) =>
  `/api/download?${q(format ? { source, path, format } : { source, path })}`;
const ROOT_PATH = btoa("/");

function humanSize(n) {
  if (n === null || n === undefined) return "";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0, v = n;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${u[i]}`;
}
function humanTime(s) {
  if (s === null || s === undefined) return "";
  return new Date(s * 1000).toISOString().replace("T", " ").slice(0, 19);
}
const TYPE_NAMES = { v: "volume", d: "dir", f: "file", l: "link", c: "char dev", b: "block dev", p: "fifo", s: "socket" };
const isDirLike = (e) => e.type === "d" || e.type === "v";

// ---------------------------------------------------------------- tree ----
// A node: {kind: source|disk|bucket|dir, source, path, label, parent,
//          entry, li, childrenEl, loaded, expanded}

let treeItems = []; // visible order, for keyboard navigation in the tree

// A LUKS or BitLocker container no passphrase has opened yet (an older daemon without
// `locked` lists every container locked).
const isLocked = (e) => !!e && !!e.encryption && e.locked !== false;

function bucketLabel(e) {
  const parts = [e.text];
  if (e.fstype) parts.push(e.encryption && e.encryption !== e.fstype ? `${e.fstype} ${e.encryption}` : e.fstype);
  if (e.label) parts.push(`"${e.label}"`);
  if (e.size !== null && e.size !== undefined) parts.push(humanSize(e.size));
  if (e.encryption) parts.push(isLocked(e) ? "locked" : "open");
  return parts.join(" · ");
}

// "[crypto_LUKS LUKS2, locked]" as the CLI prints it; "[ext4]" or
// '[ntfs "Windows"]' otherwise.
function fstypeTag(e) {
  const type = e.label ? `${e.fstype} "${e.label}"` : e.fstype;
  if (!e.encryption) return `[${type}]`;
  const enc = e.encryption !== e.fstype ? ` ${e.encryption}` : "";
  return `[${type}${enc}, ${isLocked(e) ? "locked" : "open"}]`;
}

// A path of the API (base64 of raw bytes) as text, invalid UTF-8 as U+FFFD.
function pathText(b64) {
  const bin = atob(b64);
  return new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
}

// Lists what is below a node. A disk's children are its buckets, fetched
// through its bucket types (part, raw) so the tree goes disk -> bucket.
async function childrenOf(node) {
  if (node.kind === "disk") {
    const types = await api(listUrl(node.source, node.path));
    const lists = await Promise.all(types.map(async (t) => {
      try {
        const bs = await api(listUrl(node.source, t.filepath));
        return bs.map((b) => Object.assign({}, b, { text: `${t.text}/${b.text}` }));
      } catch (err) {
        return [{ text: t.text, type: "v", filepath: t.filepath, leaf: true, size: null, mtime: null, error: err.message }];
      }
    }));
    return lists.flat();
  }
  return api(listUrl(node.source, node.path));
}

const childKind = { source: "disk", disk: "bucket", bucket: "dir", dir: "dir" };

function makeNode(kind, source, path, label, parent, entry) {
  const node = { kind, source, path, label, parent, entry, loaded: null, expanded: false };
  const twisty = el("span", { class: "twisty", "aria-hidden": "true" }, "▸");
  const text = el("span", { class: "label" }, label);
  node.row = el("div", { class: `node ${kind}`, tabindex: "-1", role: "treeitem", "aria-expanded": "false", "data-kind": kind },
    twisty, text);
  if (entry && entry.fstype) node.row.dataset.fstype = entry.fstype;
  node.childrenEl = el("div", { class: "children", role: "group" });
  node.errorEl = el("div", { class: "node-error", role: "alert" });
  node.unlockEl = null;
  if (isLocked(entry)) {
    // Under the row, not in it: a long label keeps the button in view.
    node.row.dataset.locked = "true";
    node.unlockButton = el("button", {
      type: "button", class: "unlock", "aria-expanded": "false",
      "aria-label": `Unlock ${entry.encryption || "LUKS"} container ${pathText(path).replace(/^\//, "")}`,
      onclick: () => openUnlock(node),
    }, "Unlock…");
    node.unlockEl = el("div", { class: "unlock" }, node.unlockButton);
  }
  node.li = el("div", { class: "treeitem" }, node.row, node.unlockEl, node.errorEl, node.childrenEl);
  node.li.__node = node; // for keyboard navigation and openEntry
  node.row.addEventListener("click", (ev) => {
    ev.stopPropagation();
    if (ev.target === twisty) toggle(node); else select(node, true);
  });
  return node;
}

async function load(node) {
  if (!node.loaded) {
    node.loaded = childrenOf(node).then((entries) => { node.entries = entries; return entries; });
    node.loaded.catch(() => { node.loaded = null; });
  }
  return node.loaded;
}

async function expand(node) {
  // A locked container has nothing to list (its content becomes a bucket of its own).
  if (isLocked(node.entry)) return;
  if (node.expanded) return;
  node.expanded = true;
  node.row.setAttribute("aria-expanded", "true");
  node.row.querySelector(".twisty").textContent = "▾";
  node.errorEl.textContent = "";
  node.childrenEl.replaceChildren(el("div", { class: "loading" }, "loading…"));
  try {
    const entries = await load(node);
    const kids = entries.filter((e) => node.kind === "source" || node.kind === "disk" || isDirLike(e));
    node.childrenEl.replaceChildren(...kids.map((e) => {
      const kind = childKind[node.kind];
      const label = kind === "bucket" || e.fstype ? bucketLabel(e) : e.text;
      const child = makeNode(kind, node.source, e.filepath, label, node, e);
      if (e.error) child.errorEl.textContent = e.error;
      return child.li;
    }));
    if (!kids.length) node.childrenEl.replaceChildren(el("div", { class: "empty" }, "no subdirectories"));
  } catch (err) {
    node.childrenEl.replaceChildren();
    node.errorEl.textContent = err.message;
  }
  refreshTreeItems();
}

function collapse(node) {
  node.expanded = false;
  node.row.setAttribute("aria-expanded", "false");
  node.row.querySelector(".twisty").textContent = "▸";
  node.childrenEl.replaceChildren();
  refreshTreeItems();
}

function toggle(node) {
  if (isLocked(node.entry)) return openUnlock(node);
  return node.expanded ? collapse(node) : expand(node);
}

// Lists a node's children again (after an unlock added buckets to a disk).
async function reload(node) {
  node.loaded = null;
  node.entries = null;
  if (node.expanded) { node.expanded = false; await expand(node); }
}

// ---------------------------------------------------------------- LUKS ----
// A locked container's row has "Unlock…": it opens a passphrase field under
// the row. The passphrase goes to POST /api/unlock in the body only (the
// field has no name, so no form submission could put it in a URL) and is
// cleared from the field as soon as it is sent.

const containerOf = (node) => pathText(node.path).replace(/^\//, "");

function diskOf(node) {
  let n = node;
  while (n && n.kind !== "disk") n = n.parent;
  return n;
}

function openUnlock(node) {
  if (!node.unlockEl) return;
  if (!node.unlock) {
    const name = containerOf(node);
    const enc = node.entry.encryption || "LUKS";
    const input = el("input", {
      type: "password", class: "passphrase", autocomplete: "off", spellcheck: "false",
      autocapitalize: "off", "aria-label": `Passphrase for ${enc} container ${name}`,
    });
    const submit = el("button", { type: "submit", class: "unlock-submit" }, "Unlock");
    const cancel = el("button", { type: "button", class: "unlock-cancel", onclick: () => closeUnlock(node) }, "Cancel");
    const msg = el("div", { class: "unlock-msg", role: "status", "aria-live": "polite" });
    const form = el("form", { class: "unlock-form", autocomplete: "off", "aria-label": `Unlock ${name}` },
      el("label", { class: "unlock-label" }, "Passphrase ", input), submit, cancel, msg);
    form.addEventListener("submit", (ev) => { ev.preventDefault(); submitUnlock(node); });
    node.unlock = { form, input, submit, cancel, msg };
    node.unlockEl.append(form);
  }
  node.unlock.form.hidden = false;
  node.unlockButton.hidden = true;
  node.unlockButton.setAttribute("aria-expanded", "true");
  if (!node.unlock.input.disabled) node.unlock.input.focus();
}

function closeUnlock(node) {
  if (!node.unlock) return;
  node.unlock.input.value = "";
  node.unlock.form.hidden = true;
  node.unlockButton.hidden = false;
  node.unlockButton.setAttribute("aria-expanded", "false");
  node.row.focus();
}

function unlockMessage(node, text, kind) {
  const m = node.unlock.msg;
  m.textContent = text;
  m.className = `unlock-msg ${kind || ""}`.trim();
}

async function submitUnlock(node) {
  const { input, submit, cancel } = node.unlock;
  const pass = input.value;
  if (!pass) { unlockMessage(node, "Type the passphrase first.", "error"); input.focus(); return; }
  input.value = "";
  const name = containerOf(node);
  input.disabled = submit.disabled = cancel.disabled = true;
  node.unlock.form.setAttribute("aria-busy", "true");
  unlockMessage(node, `Unlocking ${name}… (the key derivation takes a few seconds)`, "busy");
  let answer = null, failure = null;
  try {
    answer = await api(`/api/unlock?${q({ source: node.source })}`, {
      method: "POST",
      headers: { "X-CSRF-Token": CSRF, "Content-Type": "application/json" },
      body: JSON.stringify({ passphrase: pass }),
    });
  } catch (err) {
    failure = err.message;
  }
  input.disabled = submit.disabled = cancel.disabled = false;
  node.unlock.form.removeAttribute("aria-busy");
  loadStatus(); // the call may have started the VM
  const mine = answer && (answer.containers || []).find((c) => c.container === name);
  if (mine && (mine.outcome === "opened" || mine.outcome === "already-open")) {
    // LUKS/BitLocker: its content is a new bucket of the disk (and the container
    // is now open). A ZFS dataset opens in place: its pool's node lists it again.
    const inGroup = node.parent && node.parent.kind !== "disk" && node.parent.kind !== "source";
    const holder = inGroup ? node.parent : diskOf(node);
    if (!holder) return;
    await reload(holder);
    const fresh = Array.from(holder.childrenEl.children).map((li) => li.__node)
      .find((n) => n && n.entry && (inGroup ? n.path === node.path : n.entry.text === mine.bucket));
    if (fresh) select(fresh, false);
    return;
  }
  if (mine) {
    const why = mine.message || `${mine.encryption} container ${name} was not opened (${mine.outcome})`;
    unlockMessage(node, mine.outcome === "wrong-key" ? `Wrong passphrase: ${why}` : why, "error");
  } else {
    unlockMessage(node, failure || `the VM lists no LUKS container ${name} any more: collapse and expand its disk`, "error");
  }
  input.focus();
}

function refreshTreeItems() {
  treeItems = Array.from($("sources").querySelectorAll(".node"));
}

// ------------------------------------------------------------- listing ----

const view = { node: null, entries: [], shown: [], rendered: 0, cursor: -1, selected: new Set() };
const inFilesystem = (node) => node && (node.kind === "bucket" || node.kind === "dir");

function updateSelection() {
  const n = view.selected.size;
  $("dl-sel").disabled = n === 0;
  $("dl-sel").textContent = n ? `Selection as tar (${n})` : "Selection as tar";
}

function crumbsOf(node) {
  const out = [];
  for (let n = node; n; n = n.parent) out.unshift(n);
  return out;
}

async function select(node, expandToo) {
  leaveSearch(); // search.js: back from search results to the listing
  document.querySelectorAll(".node.selected").forEach((n) => n.classList.remove("selected"));
  node.row.classList.add("selected");
  node.row.focus({ preventScroll: true });
  view.node = node;
  $("breadcrumb").replaceChildren(...crumbsOf(node).flatMap((n, i, all) => {
    const a = el("a", { href: "#", onclick: (ev) => { ev.preventDefault(); select(n, true); } }, n.label);
    return i < all.length - 1 ? [a, el("span", { class: "sep" }, " › ")] : [el("strong", {}, n.label)];
  }));
  const locked = isLocked(node.entry);
  const inFs = (node.kind === "bucket" || node.kind === "dir") && !locked;
  $("dl-zip").disabled = !inFs;
  $("dl-tzst").disabled = !inFs;
  $("select-all").disabled = !inFs;
  $("select-all").checked = false;
  view.selected.clear();
  updateSelection();
  $("filter").value = "";
  $("message").textContent = "";
  $("rows").replaceChildren(el("tr", {}, el("td", { colspan: "6", class: "loading" }, "loading…")));
  if (expandToo) expand(node);
  if (locked) {
    view.entries = [];
    applyFilter();
    const enc = node.entry.encryption || "LUKS";
    $("rows").replaceChildren(el("tr", {}, el("td", { colspan: "6", class: "note" },
      `${enc} container ${containerOf(node)} is locked: unlock it with its passphrase (Unlock… in the tree, or Enter on it there); its content then appears as a luks/ (or bitlocker/) bucket of this disk.`)));
    return;
  }
  try {
    const entries = await load(node);
    if (view.node !== node) return;
    view.entries = entries;
    applyFilter();
  } catch (err) {
    if (view.node !== node) return;
    view.entries = [];
    applyFilter();
    $("message").textContent = err.message;
  }
}

function applyFilter() {
  const f = $("filter").value.toLowerCase();
  view.shown = f ? view.entries.filter((e) => e.text.toLowerCase().includes(f)) : view.entries;
  view.rendered = 0;
  view.cursor = view.shown.length ? 0 : -1;
  $("rows").replaceChildren();
  renderMore();
  const n = view.shown.length, all = view.entries.length;
  const plural = (k) => `${k} ${k === 1 ? "entry" : "entries"}`;
  $("count").textContent = f ? `${n} of ${plural(all)}` : plural(all);
}

function renderMore() {
  const body = $("rows");
  const end = Math.min(view.shown.length, view.rendered + PAGE);
  const frag = document.createDocumentFragment();
  for (let i = view.rendered; i < end; i++) frag.append(row(view.shown[i], i));
  body.append(frag);
  view.rendered = end;
  const left = view.shown.length - end;
  $("more").replaceChildren(left > 0
    ? el("button", { type: "button", id: "show-more", onclick: renderMore }, `Show ${Math.min(PAGE, left)} more (${left} not shown)`)
    : "");
  markCursor();
}

function row(e, i) {
  const node = view.node;
  const name = el("td", { class: "n" });
  if (isDirLike(e)) {
    name.append(el("a", { href: "#", class: "open", onclick: (ev) => { ev.preventDefault(); openEntry(e); } }, e.text));
  } else {
    name.append(el("span", {}, e.text));
  }
  if (e.type === "l" && e.target !== undefined) name.append(el("span", { class: "target" }, ` → ${e.target}`));
  if (e.fstype) name.append(el("span", { class: "fstype" }, ` ${fstypeTag(e)}`));
  if (e.error) name.append(el("span", { class: "row-error" }, ` ${e.error}`));
  const actions = el("td", { class: "a" });
  const inFs = node.kind === "bucket" || node.kind === "dir";
  if (inFs && e.type === "f") {
    actions.append(el("a", { href: downloadUrl(node.source, e.filepath), download: "", class: "dl" }, "Download"),
      " ", versionsButton(node.source, e)); // versions.js
  } else if (inFs && e.type === "d") {
    actions.append(
      el("a", { href: downloadUrl(node.source, e.filepath, "zip"), download: "", class: "dl" }, "zip"), " ",
      el("a", { href: downloadUrl(node.source, e.filepath, "tar.zst"), download: "", class: "dl" }, "tar.zst"));
  }
  const pick = el("td", { class: "c" });
  if (inFs && e.type !== "v") {
    const box = el("input", { type: "checkbox", class: "pick", "aria-label": `Select ${e.text}` });
    box.checked = view.selected.has(e.filepath);
    box.addEventListener("change", () => {
      if (box.checked) view.selected.add(e.filepath); else view.selected.delete(e.filepath);
      updateSelection();
    });
    pick.append(box);
  }
  const tr = el("tr", { "data-index": String(i), "data-type": e.type },
    pick,
    el("td", { class: "t", title: TYPE_NAMES[e.type] || e.type }, TYPE_NAMES[e.type] || e.type),
    name,
    el("td", { class: "s" }, humanSize(e.size)),
    el("td", { class: "m" }, humanTime(e.mtime)),
    actions);
  tr.addEventListener("click", () => { view.cursor = i; markCursor(); });
  tr.addEventListener("dblclick", () => activate(e));
  return tr;
}

// Opens a directory-like entry of the listing: finds (or makes) its node in
// the tree under the current node and selects it.
async function openEntry(e) {
  const parent = view.node;
  await expand(parent);
  const found = Array.from(parent.childrenEl.children)
    .map((li) => li.__node).find((n) => n && n.path === e.filepath);
  const kind = childKind[parent.kind];
  const node = found || makeNode(kind, parent.source, e.filepath, kind === "bucket" || e.fstype ? bucketLabel(e) : e.text, parent, e);
  if (!found) { parent.childrenEl.append(node.li); refreshTreeItems(); }
  select(node, true);
  if (isLocked(e)) openUnlock(node);
}

function activate(e) {
  if (!e) return;
  if (isDirLike(e)) { openEntry(e); return; }
  const link = $("rows").querySelector(`tr[data-index="${view.cursor}"] a.dl`);
  if (link) link.click();
}

function markCursor() {
  $("rows").querySelectorAll("tr.cursor").forEach((r) => r.classList.remove("cursor"));
  const tr = $("rows").querySelector(`tr[data-index="${view.cursor}"]`);
  if (tr) { tr.classList.add("cursor"); tr.scrollIntoView({ block: "nearest" }); }
}

function moveCursor(delta) {
  if (!view.shown.length) return;
  view.cursor = Math.max(0, Math.min(view.shown.length - 1, view.cursor + delta));
  while (view.cursor >= view.rendered) renderMore();
  markCursor();
}

function toggleCursor() {
  const box = $("rows").querySelector(`tr[data-index="${view.cursor}"] input.pick`);
  if (box) { box.checked = !box.checked; box.dispatchEvent(new Event("change")); }
}

// ------------------------------------------------------------- sources ----

function groupTitle(s) {
  if (s.kind === "source") return "Command line";
  const root = s.root || "";
  return s.group ? `${root} › VM ${s.group}` : root;
}

async function loadSources() {
  const box = $("sources");
  try {
    const { sources, single } = await api("/api/sources");
    box.replaceChildren();
    let last = null;
    let singleNode = null;
    for (const s of sources) {
      const title = groupTitle(s);
      if (title !== last) { box.append(el("div", { class: "group" }, title)); last = title; }
      const label = s.time && s.kind === "snapshot" ? `${s.label} (${humanTime(s.time)})` : s.label;
      const node = makeNode("source", s.id, ROOT_PATH, label, null, null);
      node.row.title = s.id;
      box.append(node.li);
      if (single && s.id === single) singleNode = node;
    }
    if (!sources.length) box.append(el("div", { class: "empty" }, "no sources: pass SOURCE or --root DIR"));
    refreshTreeItems();
    // One SOURCE on the command line: its disks are the first level, no click needed.
    if (singleNode) select(singleNode, true);
  } catch (err) {
    box.replaceChildren(el("div", { class: "node-error" }, err.message));
  }
}

// -------------------------------------------------------------- status ----

function secs(s) {
  if (s === null || s === undefined) return "?";
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

async function loadStatus() {
  const box = $("status");
  try {
    const vms = await api("/api/status");
    box.replaceChildren(...vms.map((vm) => el("div", { class: "vm" },
      el("div", { class: "vm-label" }, vm.label),
      el("div", { class: "vm-info" }, `${vm.accel}, up ${secs(vm.uptime)}, idle stop in ${secs(vm.timeout_left)}`),
      el("button", { type: "button", class: "stop", "data-name": vm.name, onclick: () => stopVm(vm.name) }, "Stop"))));
    if (!vms.length) box.append(el("div", { class: "empty" }, "none"));
  } catch (err) {
    box.replaceChildren(el("div", { class: "node-error" }, err.message));
  }
}

async function stopVm(name) {
  try {
    await api(`/api/stop?${q({ name })}`, { method: "POST", headers: { "X-CSRF-Token": CSRF } });
  } catch (err) {
    $("message").textContent = err.message;
  }
  loadStatus();
}

// ------------------------------------------------------------ keyboard ----

function treeKey(ev, node) {
  const i = treeItems.indexOf(node.row);
  // Moving shows a node's listing; only → (or a click) expands it in the tree.
  const go = (j) => { const r = treeItems[j]; if (r) select(r.parentElement.__node, false); };
  switch (ev.key) {
    case "ArrowDown": go(i + 1); break;
    case "ArrowUp": go(i - 1); break;
    case "ArrowRight":
      if (isLocked(node.entry)) openUnlock(node); else if (!node.expanded) expand(node); else go(i + 1);
      break;
    case "ArrowLeft": if (node.expanded) collapse(node); else if (node.parent) select(node.parent, false); break;
    case "Enter": if (isLocked(node.entry)) openUnlock(node); else $("rows").focus(); break;
    default: return false;
  }
  return true;
}

document.addEventListener("keydown", (ev) => {
  const filter = $("filter");
  if (ev.target === filter) {
    if (ev.key === "Escape") { filter.value = ""; applyFilter(); $("rows").focus(); ev.preventDefault(); }
    if (ev.key === "ArrowDown" || ev.key === "Enter") { $("rows").focus(); ev.preventDefault(); }
    return;
  }
  // "Unlock…", the passphrase field and its buttons keep their keys (Escape closes it).
  const unlockBox = ev.target.closest && ev.target.closest("div.unlock");
  if (unlockBox) {
    const node = unlockBox.parentElement.__node;
    if (ev.key === "Escape" && node) { closeUnlock(node); ev.preventDefault(); }
    return;
  }
  // The search form, the Versions panel and its buttons keep their keys too.
  if (ev.target.closest && ev.target.closest("#search-form, #versions, button.versions")) return;
  if (ev.key === "/") { filter.focus(); ev.preventDefault(); return; }
  const nodeRow = ev.target.closest && ev.target.closest(".node");
  if (nodeRow) {
    const node = nodeRow.parentElement.__node;
    if (node && treeKey(ev, node)) ev.preventDefault();
    return;
  }
  if (!view.node) return;
  const e = view.shown[view.cursor];
  switch (ev.key) {
    case "ArrowDown": moveCursor(1); break;
    case "ArrowUp": moveCursor(-1); break;
    case "PageDown": moveCursor(20); break;
    case "PageUp": moveCursor(-20); break;
    case "Home": moveCursor(-view.shown.length); break;
    case "End": moveCursor(view.shown.length); break;
    case "Enter": case "ArrowRight": activate(e); break;
    case "d": if (e && !isDirLike(e)) activate(e); break;
    case " ": toggleCursor(); break;
    case "Backspace": case "ArrowLeft": if (view.node.parent) select(view.node.parent, false); break;
    default: return;
  }
  ev.preventDefault();
});

$("filter").addEventListener("input", applyFilter);
$("dl-zip").addEventListener("click", () => { if (view.node) location.href = downloadUrl(view.node.source, view.node.path, "zip"); });
$("dl-tzst").addEventListener("click", () => { if (view.node) location.href = downloadUrl(view.node.source, view.node.path, "tar.zst"); });
$("dl-sel").addEventListener("click", () => {
  if (view.node && view.selected.size) location.href = archiveUrl(view.node.source, [...view.selected]);
});
$("select-all").addEventListener("change", () => {
  const on = $("select-all").checked;
  for (const e of view.shown) {
    if (e.type === "v") continue;
    if (on) view.selected.add(e.filepath); else view.selected.delete(e.filepath);
  }
  $("rows").querySelectorAll("input.pick").forEach((b) => { b.checked = on; });
  updateSelection();
});
$("refresh-status").addEventListener("click", loadStatus);
$("rows").tabIndex = 0;
new IntersectionObserver((es) => {
  if (es.some((x) => x.isIntersecting) && view.rendered < view.shown.length) renderMore();
}).observe($("more"));

loadSources();
loadStatus();
setInterval(loadStatus, 15000);
