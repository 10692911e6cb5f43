(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("gallery-data").textContent);
  const slider = document.getElementById("k-slider");
  const shown = document.getElementById("k-value");
  const unmatched = document.getElementById("show-unmatched");
  const svgNS = "http://www.w3.org/2000/svg";
  const names = ["novel", "base", "none"];
  function box(svg, b, css) {
    const r = document.createElementNS(svgNS, "rect");
    r.setAttribute("x", b[0]); r.setAttribute("y", b[1]);
    r.setAttribute("width", b[2]); r.setAttribute("height", b[3]);
    r.setAttribute("class", css);
    svg.appendChild(r);
  }
  function draw() {
    const k = Number(slider.value);
    shown.textContent = String(k);
    for (const figure of document.querySelectorAll("figure.shot")) {
      const item = data[figure.dataset.key];
      const svg = figure.querySelector("svg");
      svg.replaceChildren();
      const top = item.proposals.slice(0, k);
      for (const wanted of [2, 1, 0]) {
        if (wanted === 2 && !unmatched.checked) continue;
        for (const p of top) if (p[4] === wanted) box(svg, p, names[wanted]);
      }
      let found = 0;
      for (const n of item.novel) {
        if (n[4] >= 0 && n[4] < k) found += 1; else box(svg, n, "missed");
      }
      const onBase = top.filter((p) => p[4] === 1).length;
      figure.querySelector("figcaption").textContent = item.file + ": top " + top.length +
        ", " + found + " of " + item.novel.length + " novel objects found, " + onBase +
        " on base objects";
    }
  }
  slider.addEventListener("input", draw);
  unmatched.addEventListener("change", draw);
  draw();
})();
