// file-restore web UI: the Versions panel. A file's "Versions" button asks
// GET /api/versions for that path in every snapshot of its VM in the catalog
// and shows one row per snapshot (newest first), each existing version with
// its own download link. Uses app.js's helpers; every guest-provided text
// goes in by textContent.
"use strict";

const versions = { source: null, entry: null, seq: 0 };

const versionsUrl = (source, path, hash) =>
  `/api/versions?${q(hash ? { source, path, hash: "1" } : { source, path })}`;

// The "Versions" button of a file row (listing and search results).
function versionsButton(source, e) {
  const name = e.path || e.text;
  return el("button", {
    type: "button", class: "versions", title: "This path in every snapshot of this VM",
    "aria-label": `Versions of ${name}`,
    onclick: (ev) => { ev.stopPropagation(); openVersions(source, e); },
  }, "Versions");
}

function openVersions(source, e) {
  Object.assign(versions, { source, entry: e });
  $("versions-title").textContent = `Versions of ${e.path || pathText(e.filepath)}`;
  $("versions").hidden = false;
  $("versions").scrollIntoView({ block: "nearest" });
  loadVersions(false);
}

function closeVersions() {
  versions.seq++; // an answer still on its way is dropped
  $("versions").hidden = true;
  $("versions-rows").replaceChildren();
}

async function loadVersions(hash) {
  const seq = ++versions.seq;
  const { source, entry } = versions;
  const status = $("versions-status");
  status.classList.remove("error");
  status.textContent = "asking every snapshot of this VM (a VM starts for each one not running yet)…";
  $("versions-rows").replaceChildren();
  $("versions-hash").disabled = true;
  try {
    const answer = await api(versionsUrl(source, entry.filepath, hash));
    if (seq !== versions.seq) return;
    const rows = answer.rows || [];
    $("versions-rows").replaceChildren(...rows.map((r) => versionRow(r, entry.filepath)));
    const present = rows.filter((r) => r.exists).length;
    const failed = rows.filter((r) => r.error).length;
    const plural = (n, w) => `${n} ${w}${n === 1 ? "" : "s"}`;
    status.textContent = `${plural(rows.length, "snapshot")}: present in ${present}` +
      (failed ? `, ${failed} could not be asked` : "") +
      (hash ? " (changes told by content, SHA-256)" : " (changes told by type, size and mtime)");
  } catch (err) {
    if (seq !== versions.seq) return;
    status.textContent = err.message;
    status.classList.add("error");
  } finally {
    if (seq === versions.seq) $("versions-hash").disabled = false;
    loadStatus(); // VMs may have started
  }
}

function versionRow(r, path) {
  const state = r.error ? "error" : r.exists ? "present" : "missing";
  const stateCell = el("td", { class: `state ${state}` }, state);
  if (r.error) stateCell.append(el("span", { class: "row-error" }, `: ${r.error}`));
  const changed = el("td", { class: "chg" });
  if (r.changed === true) {
    changed.append(el("span", { class: "changed", title: "differs from the next older version" }, "changed"));
  }
  const actions = el("td", { class: "a" });
  if (r.exists && r.type === "f") {
    actions.append(el("a", { href: downloadUrl(r.id, path), download: "", class: "dl" }, "Download"));
  }
  if (r.sha256) actions.append(el("span", { class: "sha", title: r.sha256 }, ` sha256 ${r.sha256.slice(0, 12)}…`));
  return el("tr", { "data-label": r.label, "data-state": state, "data-changed": String(r.changed === true) },
    changed,
    el("td", { class: "label", title: r.id }, r.label),
    el("td", { class: "m" }, humanTime(r.time)),
    stateCell,
    el("td", { class: "s" }, humanSize(r.size)),
    el("td", { class: "m" }, humanTime(r.mtime)),
    actions);
}

$("versions-close").addEventListener("click", closeVersions);
$("versions-hash").addEventListener("click", () => { if (versions.entry) loadVersions(true); });
$("versions").addEventListener("keydown", (ev) => {
  if (ev.key === "Escape") { closeVersions(); $("rows").focus(); ev.preventDefault(); }
});
