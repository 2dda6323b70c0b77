// The only script of the pages: refresh the exports table while an export is running.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var table = document.getElementById("export-jobs");
  if (table && table.dataset.refresh === "yes") {
    window.setTimeout(function () { window.location.reload(); }, 1500);
  }
});
