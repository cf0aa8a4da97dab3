// pggan serve: small helpers shared by the pages (no framework, nothing loaded from the internet).
async function getJSON(url) {
  const r = await fetch(url);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}
function fmt(v, digits = 1) { return v === null || v === undefined ? "" : Number(v).toFixed(digits); }
function duration(s) {
  if (s === null || s === undefined) return "";
  s = Math.round(s); const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
  return h ? `${h}h${String(m).padStart(2, "0")}m` : `${m}m${String(s % 60).padStart(2, "0")}s`;
}
// A line chart on a canvas: series [{label, points: [[x, y], ...]}], dashed marks at xs in `marks`.
function chart(canvas, series, marks, xlabel) {
  const ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height, P = 36;
  ctx.clearRect(0, 0, W, H);
  const pts = series.flatMap(s => s.points);
  if (!pts.length) return;
  const xs = pts.map(p => p[0]), ys = pts.map(p => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs) || 1, y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = x => P + (x - x0) / ((x1 - x0) || 1) * (W - 2 * P), sy = y => H - P - (y - y0) / ((y1 - y0) || 1) * (H - 2 * P);
  ctx.strokeStyle = "#999"; ctx.setLineDash([4, 4]);
  for (const m of marks) { ctx.beginPath(); ctx.moveTo(sx(m), P); ctx.lineTo(sx(m), H - P); ctx.stroke(); }
  ctx.setLineDash([]);
  const colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];
  series.forEach((s, i) => {
    ctx.strokeStyle = colors[i % colors.length]; ctx.beginPath();
    s.points.forEach((p, j) => j ? ctx.lineTo(sx(p[0]), sy(p[1])) : ctx.moveTo(sx(p[0]), sy(p[1])));
    ctx.stroke(); ctx.fillStyle = ctx.strokeStyle; ctx.fillText(s.label, P + 4 + 90 * i, 12);
  });
  ctx.fillStyle = "#333";
  ctx.fillText(fmt(y1, 3), 2, P); ctx.fillText(fmt(y0, 3), 2, H - P); ctx.fillText(`${fmt(x0)} .. ${fmt(x1)} ${xlabel}`, W / 2 - 40, H - 8);
}
