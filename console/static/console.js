// deepwatch console: the only script the pages load (the CSP allows scripts from /static only).
// Progressive: every page works without it.
(function () {
  "use strict";

  // Evidence page: each suspect segment button seeks the video to its start and pauses at its end.
  function wireSegments() {
    var video = document.getElementById("evidence-video");
    if (!video) return;
    var stopAt = null;
    video.addEventListener("timeupdate", function () {
      if (stopAt !== null && video.currentTime >= stopAt) {
        video.pause();
        stopAt = null;
      }
    });
    document.querySelectorAll("button.segment").forEach(function (button) {
      button.addEventListener("click", function () {
        var start = parseFloat(button.dataset.start);
        var end = parseFloat(button.dataset.end);
        if (!isFinite(start)) return;
        stopAt = isFinite(end) && end > start ? end : null;
        video.currentTime = start;
        var playing = video.play();
        if (playing && playing.catch) playing.catch(function () { /* autoplay refused: the seek stands */ });
      });
    });
  }

  // Gallery: "select all" ticks every evidence checkbox of the takedown form.
  function wireSelectAll() {
    var all = document.getElementById("select-all");
    if (!all) return;
    var boxes = function () {
      return document.querySelectorAll('#takedown-select input[name="evidence_ids"]');
    };
    all.addEventListener("change", function () {
      boxes().forEach(function (box) { box.checked = all.checked; });
    });
  }

  // Dashboard: choosing a campaign shows it (the Show button does the same without script).
  function wireAutosubmit() {
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    wireSegments();
    wireSelectAll();
    wireAutosubmit();
  });
})();
