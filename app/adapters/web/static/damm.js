// The Damm check digit of a kit number, checked as it is typed (the server checks it again).
// Port of app/domain/kits.py: fold the digits through the table; a valid number ends at 0.
(function () {
  "use strict";
  var TABLE = [
    [0, 3, 1, 7, 5, 9, 8, 6, 4, 2], [7, 0, 9, 2, 1, 5, 4, 8, 6, 3],
    [4, 2, 0, 6, 8, 7, 1, 3, 5, 9], [1, 7, 5, 0, 9, 8, 3, 4, 2, 6],
    [6, 1, 2, 3, 0, 4, 5, 9, 7, 8], [3, 6, 7, 4, 2, 0, 9, 5, 8, 1],
    [5, 8, 6, 9, 7, 2, 0, 1, 3, 4], [8, 9, 4, 5, 3, 6, 2, 0, 1, 7],
    [9, 4, 3, 8, 6, 1, 7, 2, 0, 5], [2, 5, 8, 1, 4, 3, 6, 7, 9, 0]
  ];
  var DIGITS = 8;
  function dammValid(digits) {
    var interim = 0;
    for (var i = 0; i < digits.length; i++) { interim = TABLE[interim][digits.charCodeAt(i) - 48]; }
    return interim === 0;
  }
  function check(input, out) {
    var compact = input.value.replace(/[\s-]/g, "");
    out.className = "help";
    input.removeAttribute("aria-invalid");
    if (compact === "") { out.textContent = ""; return; }
    if (!/^[0-9]+$/.test(compact)) { out.textContent = out.dataset.msgChars; out.className = "help bad"; input.setAttribute("aria-invalid", "true"); return; }
    if (compact.length < DIGITS) { out.textContent = out.dataset.msgShort; return; }
    if (compact.length > DIGITS || !dammValid(compact)) {
      out.textContent = out.dataset.msgBad; out.className = "help bad"; input.setAttribute("aria-invalid", "true"); return;
    }
    out.textContent = out.dataset.msgOk; out.className = "help good";
  }
  var inputs = document.querySelectorAll("input[data-damm-check]");
  Array.prototype.forEach.call(inputs, function (input) {
    var out = document.getElementById(input.getAttribute("aria-describedby"));
    if (!out) { return; }
    input.addEventListener("input", function () { check(input, out); });
    if (input.value) { check(input, out); }
  });
  window.iwrsDammValid = dammValid;
})();
