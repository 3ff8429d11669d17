// Character-level comparison of OCR texts: CER the way the services compute it, and a diff to highlight.
// Characters are Unicode code points (Array.from), as in Python, so a CJK character or an emoji counts once.

// The characters Python's str.split() removes (str.isspace()); JavaScript's \s is another set
// (it has U+FEFF, lacks U+001C-U+001F and U+0085), so they are listed to match ocrtune_shared.cer.
const WHITESPACE = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/gu;

/** ocrtune_shared.cer.normalize: Unicode NFKC (full-width to half-width), whitespace removed. */
export function normalize(text) {
  return text.normalize("NFKC").replace(WHITESPACE, "");
}

/** Edit distance (insertions, deletions, substitutions, each 1) between two arrays. */
export function levenshtein(a, b) {
  if (a.length < b.length) [a, b] = [b, a];
  let previous = new Uint32Array(b.length + 1);
  let current = new Uint32Array(b.length + 1);
  for (let j = 0; j <= b.length; j++) previous[j] = j;
  for (let i = 1; i <= a.length; i++) {
    current[0] = i;
    const ai = a[i - 1];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1] + (ai === b[j - 1] ? 0 : 1);
      current[j] = Math.min(substitution, previous[j] + 1, current[j - 1] + 1);
    }
    [previous, current] = [current, previous];
  }
  return previous[b.length];
}

/** CER of one prediction against its reference, as ocrtune_shared.cer.character_error_rate for one sample. */
export function cer(prediction, reference) {
  const p = Array.from(normalize(prediction));
  const r = Array.from(normalize(reference));
  const edits = levenshtein(p, r);
  return { edits, referenceChars: r.length, cer: edits / Math.max(r.length, 1) };
}

/**
 * The shortest edit script turning `from` into `to`, character by character:
 * [{op: "equal" | "delete" | "insert", text}], "delete" for characters only in `from`,
 * "insert" for characters only in `to`. Myers' O((N+M)D) algorithm in linear space
 * (the middle-snake bisection), so a page of text against another costs little when they are close.
 */
export function diffChars(from, to) {
  const a = Array.from(from);
  const b = Array.from(to);
  const out = [];
  diffRange(a, 0, a.length, b, 0, b.length, out);
  return out;
}

function push(out, op, chars) {
  if (!chars.length) return;
  const last = out[out.length - 1];
  if (last && last.op === op) last.text += chars.join("");
  else out.push({ op, text: chars.join("") });
}

function diffRange(a, a0, a1, b, b0, b1, out) {
  let prefix = 0;
  while (a0 + prefix < a1 && b0 + prefix < b1 && a[a0 + prefix] === b[b0 + prefix]) prefix++;
  push(out, "equal", a.slice(a0, a0 + prefix));
  a0 += prefix;
  b0 += prefix;
  let suffix = 0;
  while (a1 - suffix > a0 && b1 - suffix > b0 && a[a1 - 1 - suffix] === b[b1 - 1 - suffix]) suffix++;
  const tail = a.slice(a1 - suffix, a1);
  a1 -= suffix;
  b1 -= suffix;
  if (a0 === a1) {
    push(out, "insert", b.slice(b0, b1));
  } else if (b0 === b1) {
    push(out, "delete", a.slice(a0, a1));
  } else {
    const split = middleSnake(a, a0, a1, b, b0, b1);
    if (split === null) {
      push(out, "delete", a.slice(a0, a1));
      push(out, "insert", b.slice(b0, b1));
    } else {
      diffRange(a, a0, split[0], b, b0, split[1], out);
      diffRange(a, split[0], a1, b, split[1], b1, out);
    }
  }
  push(out, "equal", tail);
}

// Forward and reverse searches meet on the middle snake of an optimal path; the point where
// they overlap splits the problem in two (Myers 1986, section 4b). Null: nothing in common.
function middleSnake(a, a0, a1, b, b0, b1) {
  const n = a1 - a0;
  const m = b1 - b0;
  const maxD = Math.ceil((n + m) / 2);
  const offset = maxD;
  const size = 2 * maxD + 2;
  const forward = new Int32Array(size).fill(-1);
  const reverse = new Int32Array(size).fill(-1);
  forward[offset + 1] = 0;
  reverse[offset + 1] = 0;
  const delta = n - m;
  // With an odd delta the forward path meets the reverse one; with an even delta the reverse meets the forward.
  const checkForward = delta % 2 !== 0;
  let k1start = 0;
  let k1end = 0;
  let k2start = 0;
  let k2end = 0;
  for (let d = 0; d < maxD; d++) {
    for (let k1 = -d + k1start; k1 <= d - k1end; k1 += 2) {
      const k1off = offset + k1;
      let x1 = k1 === -d || (k1 !== d && forward[k1off - 1] < forward[k1off + 1]) ? forward[k1off + 1] : forward[k1off - 1] + 1;
      let y1 = x1 - k1;
      while (x1 < n && y1 < m && a[a0 + x1] === b[b0 + y1]) {
        x1++;
        y1++;
      }
      forward[k1off] = x1;
      if (x1 > n) k1end += 2;
      else if (y1 > m) k1start += 2;
      else if (checkForward) {
        const k2off = offset + delta - k1;
        if (k2off >= 0 && k2off < size && reverse[k2off] !== -1 && x1 >= n - reverse[k2off]) return [a0 + x1, b0 + y1];
      }
    }
    for (let k2 = -d + k2start; k2 <= d - k2end; k2 += 2) {
      const k2off = offset + k2;
      let x2 = k2 === -d || (k2 !== d && reverse[k2off - 1] < reverse[k2off + 1]) ? reverse[k2off + 1] : reverse[k2off - 1] + 1;
      let y2 = x2 - k2;
      while (x2 < n && y2 < m && a[a1 - 1 - x2] === b[b1 - 1 - y2]) {
        x2++;
        y2++;
      }
      reverse[k2off] = x2;
      if (x2 > n) k2end += 2;
      else if (y2 > m) k2start += 2;
      else if (!checkForward) {
        const k1off = offset + delta - k2;
        if (k1off >= 0 && k1off < size && forward[k1off] !== -1) {
          const x1 = forward[k1off];
          const y1 = offset + x1 - k1off;
          if (x1 >= n - x2) return [a0 + x1, b0 + y1];
        }
      }
    }
  }
  return null;
}

/**
 * `text` as spans against `pivot`: characters `text` has and `pivot` lacks are marked "ins",
 * characters of `pivot` that `text` lacks are shown struck through as "del".
 */
export function renderDiff(container, pivot, text) {
  container.replaceChildren();
  for (const part of diffChars(pivot, text)) {
    if (part.op === "equal") {
      container.append(document.createTextNode(part.text));
    } else {
      const span = document.createElement(part.op === "insert" ? "ins" : "del");
      span.textContent = part.text;
      span.title = part.op === "insert" ? "not in the text compared against" : "missing here";
      container.append(span);
    }
  }
}
