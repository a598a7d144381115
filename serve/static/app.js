// cbir's page: draw (Pointer Events) or drop an image, POST it to /api/search, show the neighbours.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const pad = $("pad");
  const ctx = pad.getContext("2d");
  const els = {
    info: $("info"), hint: $("hint"), clear: $("clear"), file: $("file"), label: $("label"), topk: $("topk"),
    input: $("input"), inputEmpty: $("input-empty"), match: $("match"), error: $("error"),
    summary: $("summary"), results: $("results"), drop: $("drop"),
  };
  const DEBOUNCE_MS = 150;

  let info = null;        // GET /api/info
  let query = null;       // the last query: {blob, name}
  let stroke = null;      // the stroke being drawn: {id, x, y}
  let timer = 0;          // the debounced search after a stroke
  let seq = 0;            // answers to older requests are dropped
  let inflight = null;    // AbortController of the request in flight

  // -- drawing --------------------------------------------------------------------------------

  function blank() {
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, pad.width, pad.height);
    ctx.strokeStyle = "#000";
    ctx.fillStyle = "#000";
    ctx.lineWidth = pad.width / 12; // MNIST-like: about a tenth of the digit's height
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
  }

  function at(e) {
    const r = pad.getBoundingClientRect();
    return { x: (e.clientX - r.left) * (pad.width / r.width), y: (e.clientY - r.top) * (pad.height / r.height) };
  }

  function dot(p) {
    ctx.beginPath();
    ctx.arc(p.x, p.y, ctx.lineWidth / 2, 0, 2 * Math.PI);
    ctx.fill();
  }

  function segment(a, b) {
    ctx.beginPath();
    ctx.moveTo(a.x, a.y);
    ctx.lineTo(b.x, b.y);
    ctx.stroke();
  }

  pad.addEventListener("pointerdown", (e) => {
    if (e.pointerType === "mouse" && e.button !== 0) return;
    e.preventDefault();
    clearTimeout(timer);
    pad.setPointerCapture(e.pointerId);
    const p = at(e);
    stroke = { id: e.pointerId, ...p };
    dot(p);
  });

  pad.addEventListener("pointermove", (e) => {
    if (!stroke || e.pointerId !== stroke.id) return;
    e.preventDefault();
    const events = (e.getCoalescedEvents && e.getCoalescedEvents().length) ? e.getCoalescedEvents() : [e];
    for (const ev of events) {
      const p = at(ev);
      segment(stroke, p);
      stroke.x = p.x;
      stroke.y = p.y;
    }
  });

  function endStroke(e) {
    if (!stroke || e.pointerId !== stroke.id) return;
    stroke = null;
    clearTimeout(timer);
    timer = setTimeout(searchPad, DEBOUNCE_MS);
  }
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);

  function searchPad() {
    pad.toBlob((blob) => {
      if (!blob) return showError("the drawing could not be turned into an image");
      query = { blob, name: "drawing.png" };
      els.hint.textContent = "Draw a digit, or drop an image on the pad.";
      search();
    }, "image/png");
  }

  // -- files: picked or dropped ---------------------------------------------------------------

  function useFile(file) {
    if (!file) return;
    const max = info && info.limits ? info.limits.max_body_bytes - 4096 : Infinity;
    if (file.size > max) return showError(`${file.name} is too large (${(file.size / 2 ** 20).toFixed(1)} MiB; the limit is ${Math.floor(max / 2 ** 20)} MiB)`);
    clearTimeout(timer);
    blank();
    query = { blob: file, name: file.name };
    els.hint.textContent = `Searching with ${file.name}. Draw on the pad to search with a drawing instead.`;
    search();
  }

  els.file.addEventListener("change", () => useFile(els.file.files[0]));

  for (const type of ["dragenter", "dragover"]) {
    document.addEventListener(type, (e) => { e.preventDefault(); els.drop.classList.add("over"); });
  }
  document.addEventListener("dragleave", (e) => { if (!e.relatedTarget) els.drop.classList.remove("over"); });
  document.addEventListener("drop", (e) => {
    e.preventDefault(); // never navigate away to the dropped file
    els.drop.classList.remove("over");
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) useFile(file);
  });

  // -- searching ------------------------------------------------------------------------------

  async function search() {
    if (!query) return;
    const mine = ++seq;
    if (inflight) inflight.abort();
    inflight = new AbortController();
    const params = new URLSearchParams({ top_k: els.topk.value });
    if (els.label.value !== "") params.set("label", els.label.value);
    const form = new FormData();
    form.append("image", query.blob, query.name);
    busy(true);
    try {
      const resp = await fetch(`/api/search?${params}`, { method: "POST", body: form, signal: inflight.signal });
      const body = await resp.json().catch(() => ({ error: `the server answered ${resp.status} ${resp.statusText}` }));
      if (mine !== seq) return;
      if (!resp.ok || body.error) throw new Error(body.error || `the server answered ${resp.status}`);
      show(body);
    } catch (err) {
      if (err.name === "AbortError" || mine !== seq) return;
      showError(err.message || String(err));
    } finally {
      if (mine === seq) busy(false);
    }
  }

  function busy(on) {
    document.body.classList.toggle("busy", on);
    els.results.setAttribute("aria-busy", on ? "true" : "false");
  }

  function labelText(label) {
    const name = info && info.class_names ? info.class_names[String(label)] : undefined;
    return name ? `${label} ${name}` : String(label);
  }

  const MATCH_TEXT = {
    good: "Match: good, the nearest images are close",
    weak: "Match: weak, the nearest images are not very close",
    none: "Match: none, nothing stored looks like this",
  };

  function show(answer) {
    els.error.textContent = "";
    els.input.src = answer.input;
    els.input.alt = `${answer.query} as the model sees it, 28 by 28 pixels`;
    els.input.hidden = false;
    els.inputEmpty.hidden = true;
    els.match.textContent = MATCH_TEXT[answer.match] || "Match: not rated by this server";
    els.match.dataset.match = answer.match || "";

    const items = answer.results.map((r) => {
      const li = document.createElement("li");
      li.className = "hit";
      const img = document.createElement("img");
      img.className = "digit";
      img.src = `/api/points/${r.id}/image.png`;
      img.width = 84;
      img.height = 84;
      img.alt = `stored image ${r.id}`;
      img.loading = "lazy";
      const cap = document.createElement("span");
      cap.className = "cap";
      const lab = document.createElement("span");
      lab.className = "label";
      lab.textContent = labelText(r.label);
      const dist = document.createElement("span");
      dist.className = "distance";
      dist.textContent = `d ${r.distance.toFixed(3)}`;
      const rank = document.createElement("span");
      rank.className = "rank";
      rank.textContent = `#${r.rank}`;
      const line2 = document.createElement("span");
      line2.className = "line";
      line2.append(rank, " · ", dist);
      cap.append("label ", lab, line2);
      const sr = document.createElement("span");
      sr.className = "visually-hidden";
      sr.textContent = `rank ${r.rank}: label ${labelText(r.label)}, distance ${r.distance.toFixed(3)}`;
      cap.setAttribute("aria-hidden", "true");
      li.append(img, cap, sr);
      return li;
    });
    els.results.replaceChildren(...items);
    const filter = els.label.value !== "" ? ` with label ${labelText(els.label.value)}` : "";
    els.summary.textContent = items.length
      ? `${items.length} nearest for ${answer.query}${filter}, nearest first.`
      : `Nothing found for ${answer.query}${filter}.`;
  }

  function showError(message) {
    els.error.textContent = String(message).split(/\s+/).join(" "); // one line
  }

  function reset() {
    clearTimeout(timer);
    seq++;
    if (inflight) inflight.abort();
    busy(false);
    blank();
    stroke = null;
    query = null;
    els.file.value = "";
    els.input.hidden = true;
    els.input.removeAttribute("src");
    els.inputEmpty.hidden = false;
    els.match.textContent = "Match: no query yet";
    els.match.dataset.match = "";
    els.error.textContent = "";
    els.results.replaceChildren();
    els.summary.textContent = "Draw a digit to search.";
    els.hint.textContent = "Draw a digit, or drop an image on the pad.";
  }

  els.clear.addEventListener("click", reset);
  els.label.addEventListener("change", search);
  els.topk.addEventListener("change", search);

  // -- start ----------------------------------------------------------------------------------

  async function loadInfo() {
    try {
      const resp = await fetch("/api/info");
      const body = await resp.json().catch(() => ({}));
      if (!resp.ok) throw new Error(body.error || `the server answered ${resp.status}`);
      info = body;
      for (const label of info.labels) {
        const opt = document.createElement("option");
        opt.value = String(label);
        opt.textContent = labelText(label);
        els.label.append(opt);
      }
      els.info.textContent = `Collection ${info.collection} · encoder ${info.encoder} · ${info.dataset} · ` +
        `${info.points.toLocaleString("en")} images · model ${info.model_id}`;
      document.body.dataset.ready = "true";
    } catch (err) {
      els.info.textContent = "The collection is not available.";
      showError(err.message || String(err));
    }
  }

  blank();
  loadInfo();
})();
