"use strict";
(function () {
  const KEY = "imgtag-review:" + document.body.dataset.sheet;
  const kwPaths = JSON.parse(document.getElementById("kwpaths").textContent);
  const served = location.protocol === "http:" || location.protocol === "https:";
  const $ = (id) => document.getElementById(id);
  const keyOf = (path, kw) => path + "\u0000" + kw;
  function load() {
    try { return JSON.parse(localStorage.getItem(KEY) || "{}"); } catch (e) { return {}; }
  }
  function store(st) { localStorage.setItem(KEY, JSON.stringify(st)); paint(); }
  function decide(path, kw, verdict) {
    const st = load(), key = keyOf(path, kw);
    if (st[key] && st[key].verdict === verdict) delete st[key];  // a second click takes it back
    else st[key] = { path: path, keyword: kw, keyword_path: kwPaths[kw] === undefined ? null : kwPaths[kw], verdict: verdict };
    store(st);
  }
  function jsonl() {
    return Object.values(load()).map((o) => JSON.stringify(
      { path: o.path, keyword: o.keyword, keyword_path: o.keyword_path, verdict: o.verdict }) + "\n").join("");
  }
  function paint() {
    const st = load(), missing = {};
    for (const o of Object.values(st)) if (o.verdict === "missing") (missing[o.path] = missing[o.path] || []).push(o.keyword);
    for (const card of document.querySelectorAll(".card")) {
      const d = st[keyOf(card.dataset.path, card.dataset.kw)];
      card.classList.toggle("right", !!d && d.verdict === "right");
      card.classList.toggle("wrong", !!d && d.verdict === "wrong");
      const box = card.querySelector(".added");
      box.textContent = "";
      for (const kw of missing[card.dataset.path] || []) {
        const s = document.createElement("span");
        s.textContent = "+ " + kw;
        s.title = "missing keyword (click to take back)";
        s.dataset.kw = kw;
        box.appendChild(s);
      }
    }
    const n = Object.keys(st).length;
    $("count").textContent = n + (n === 1 ? " decision" : " decisions");
  }
  document.addEventListener("click", (ev) => {
    const t = ev.target, card = t.closest && t.closest(".card");
    if (!card) return;
    if (t.matches("button.v")) decide(card.dataset.path, card.dataset.kw, t.dataset.v);
    else if (t.matches("button.add")) {
      const input = card.querySelector(".miss input"), kw = input.value.trim();
      if (kw && kw !== card.dataset.kw) { decide(card.dataset.path, kw, "missing"); input.value = ""; }
    } else if (t.matches(".added span")) decide(card.dataset.path, t.dataset.kw, "missing");
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && ev.target.matches && ev.target.matches(".miss input")) ev.target.nextElementSibling.click();
  });
  $("export").addEventListener("click", () => {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([jsonl()], { type: "application/x-ndjson" }));
    a.download = "corrections.jsonl";
    document.body.appendChild(a);
    a.click();
    a.remove();
    $("status").textContent = "exported " + Object.keys(load()).length + " decisions";
  });
  $("clear").addEventListener("click", () => {
    if (confirm("Forget all decisions of this sheet in this browser?")) store({});
  });
  if (served) {
    $("save").hidden = false;
    $("save").addEventListener("click", () => {
      fetch("/corrections", { method: "POST", body: jsonl(), headers: { "Content-Type": "application/x-ndjson" } })
        .then((r) => r.json())
        .then((j) => { $("status").textContent = j.error ? "not saved: " + j.error : "saved " + j.saved + " decisions to " + j.file; });
    });
    fetch("/corrections").then((r) => r.text()).then((text) => {  // decisions saved earlier come back
      const st = load();
      for (const line of text.split("\n")) {
        if (!line.trim()) continue;
        const o = JSON.parse(line), key = keyOf(o.path, o.keyword);
        if (!st[key]) st[key] = o;
      }
      store(st);
    });
  }
  window.imgtagCorrections = jsonl;
  paint();
})();
