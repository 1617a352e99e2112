/* minichinchilla book: display equations fit the text column.
 *
 * MathJax 3 (CommonHTML) cannot break a long display equation across lines, and an equation
 * with a \tag reserves room for the tag on both sides; in a flex box it then spills out on
 * BOTH sides and its left end is cut off (unreachable even by scrolling). So, once MathJax has
 * typeset the page (and again when the window is resized), every display equation wider than
 * its column is scaled down to fit, to at most MIN_SCALE of its size; one still wider starts at
 * the column's left edge and scrolls sideways (book.css), never cut off. */
(function () {
  "use strict";
  var MIN_SCALE = 0.6;

  function fit() {
    document.querySelectorAll("div.math > mjx-container[display='true']").forEach(function (c) {
      if (!c.dataset.fontSize) c.dataset.fontSize = c.style.fontSize || "";
      c.style.fontSize = c.dataset.fontSize;
      var avail = c.parentElement.clientWidth;
      var need = c.scrollWidth;
      if (need <= avail || avail <= 0) return;
      var scale = Math.max(MIN_SCALE, avail / need) * 0.995;
      var size = parseFloat(getComputedStyle(c).fontSize);
      c.style.fontSize = (size * scale).toFixed(2) + "px";
    });
    document.documentElement.dataset.mathFitted = "1";  // the browser test waits for this
  }

  function whenTypeset() {
    var mj = window.MathJax;
    if (mj && mj.startup && mj.startup.promise) {
      mj.startup.promise.then(fit);
    } else if (mj && mj.Hub && mj.Hub.Queue) {
      mj.Hub.Queue(fit);
    }
  }

  var timer = null;
  window.addEventListener("resize", function () {
    clearTimeout(timer);
    timer = setTimeout(fit, 100);
  });
  if (document.readyState === "complete") whenTypeset();
  else window.addEventListener("load", whenTypeset);
})();
