// The panel's progressive enhancement (the pages work without it): the second confirmation box
// of a card lock shows only for an irreversible reason.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var select = document.getElementById("lock-reason-select");
  var box = document.getElementById("irreversible-box");
  if (!select || !box) { return; }
  function update() {
    var option = select.options[select.selectedIndex];
    var irreversible = option && option.getAttribute("data-irreversible") === "yes";
    box.classList.toggle("hidden", !irreversible);
  }
  select.addEventListener("change", update);
  update();
});
