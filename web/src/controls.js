// Sliders: every expression unit, grouped (brows, eyes, cheeks, mouth, jaw, other), then jaw, eyes and
// head-pose rotations. Each slider writes into the shared state and calls onChange.

const GROUPS = ["brows", "eyes", "cheeks", "mouth", "jaw", "expression"];

/** The slider group of an expression unit by its (ARKit) name; FLAME / procedural components -> "expression". */
export function groupOf(name) {
  const n = name.toLowerCase();
  if (n.startsWith("brow")) return "brows";
  if (n.startsWith("eye")) return "eyes";
  if (n.startsWith("cheek") || n.startsWith("nose")) return "cheeks";
  if (n.startsWith("mouth") || n.startsWith("tongue")) return "mouth";
  if (n.startsWith("jaw")) return "jaw";
  return "expression";
}

function slider(parent, label, lo, hi, get, set) {
  const row = document.createElement("label");
  row.className = "slider";
  const text = document.createElement("span");
  text.textContent = label;
  const input = document.createElement("input");
  Object.assign(input, { type: "range", min: String(lo), max: String(hi), step: String((hi - lo) / 200) });
  input.value = String(get());
  input.oninput = () => set(parseFloat(input.value));
  row.append(text, input);
  parent.appendChild(row);
  return () => { input.value = String(get()); };
}

function section(parent, title, open = false) {
  const d = document.createElement("details");
  d.open = open;
  const s = document.createElement("summary");
  s.textContent = title;
  d.appendChild(s);
  parent.appendChild(d);
  return d;
}

/**
 * Build the sliders into `root`.
 * @param {HTMLElement} root  container.
 * @param {import('./runtime.js').AvatarRuntime} rt  the avatar runtime (expression names, sizes).
 * @param {object} state  {expression (Ne), jaw (3), eyes (6), pose (3) root joint, head (3) object rotation}; radians.
 * @param {object} site  site.json ({expr_range: [lo, hi]}).
 * @returns {{refresh: () => void}} refresh: re-read every slider from the state (after playback or live updates).
 */
export function buildControls(root, rt, state, site, onChange) {
  const refreshers = [];
  const [lo, hi] = site.expr_range || [0, 1];
  const boxes = {};
  for (const g of GROUPS) boxes[g] = null;
  rt.meta.expr_names.forEach((name, k) => {
    const g = groupOf(name);
    if (!boxes[g]) boxes[g] = section(root, g, false);
    refreshers.push(slider(boxes[g], name, lo, hi, () => state.expression[k], (v) => { state.expression[k] = v; onChange(); }));
  });
  const rig = section(root, "jaw, eyes, head pose (radians)", true);
  const deg = Math.PI / 180;
  refreshers.push(slider(rig, "jaw open", -5 * deg, 30 * deg, () => state.jaw[0], (v) => { state.jaw[0] = v; onChange(); }));
  refreshers.push(slider(rig, "jaw sideways", -10 * deg, 10 * deg, () => state.jaw[1], (v) => { state.jaw[1] = v; onChange(); }));
  refreshers.push(slider(rig, "eyes up/down", -25 * deg, 25 * deg, () => state.eyes[0],
    (v) => { state.eyes[0] = state.eyes[3] = v; onChange(); }));
  refreshers.push(slider(rig, "eyes left/right", -35 * deg, 35 * deg, () => state.eyes[1],
    (v) => { state.eyes[1] = state.eyes[4] = v; onChange(); }));
  // Head pose turns the whole avatar (as a tracked camera does); axis-angle components.
  // (an object transform applied every frame: no re-evaluation, so no onChange)
  refreshers.push(slider(rig, "head nod (x)", -40 * deg, 40 * deg, () => state.head[0], (v) => { state.head[0] = v; }));
  refreshers.push(slider(rig, "head turn (y)", -60 * deg, 60 * deg, () => state.head[1], (v) => { state.head[1] = v; }));
  refreshers.push(slider(rig, "head tilt (z)", -40 * deg, 40 * deg, () => state.head[2], (v) => { state.head[2] = v; }));
  const reset = document.createElement("button");
  reset.textContent = "neutral";
  reset.onclick = () => {
    state.expression.fill(0);
    state.jaw = [0, 0, 0]; state.eyes = [0, 0, 0, 0, 0, 0]; state.pose = [0, 0, 0]; state.head = [0, 0, 0];
    refreshers.forEach((r) => r());
    onChange();
  };
  root.appendChild(reset);
  return { refresh: () => refreshers.forEach((r) => r()) };
}
