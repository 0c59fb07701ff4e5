// hostwright staff console: live updates without inline scripts (the CSP forbids them).
//
// [data-live-src]: an element whose part [data-target] (an id) follows the server. With
// data-live-event="timeline" the stream's events carry that part's HTML (rendered and escaped
// by the server); without, each "change" event (its data: the views' position) makes the page
// fetch [data-fragment] at that position (one read on the server for every page asking). The
// stream's address carries the position the page was rendered at, so a change made before the
// stream opened (or while it reconnected) is sent at once. When the stream fails, the fragment
// is polled every 2 s instead.
// #task-log[data-stream]: the running step's log lines, appended as text, then the recorded
// log once the step has ended.
(function () {
  "use strict";
  var POLL_MS = 2000;

  function swap(targetId, html) {
    var current = document.getElementById(targetId);
    if (!current) { return; }
    var parsed = new DOMParser().parseFromString(html, "text/html");
    var fresh = parsed.getElementById(targetId);
    if (fresh) { current.replaceWith(document.importNode(fresh, true)); }
  }

  function refetch(box, position) {
    var address = box.dataset.fragment;
    if (position) { address += "&at=" + encodeURIComponent(position); }
    return fetch(address, { credentials: "same-origin", cache: "no-store" })
      .then(function (reply) { return reply.ok ? reply.text() : null; })
      .then(function (html) { if (html !== null) { swap(box.dataset.target, html); } })
      .catch(function () {});
  }

  function poll(box) {
    if (box.dataset.polling) { return; }
    box.dataset.polling = "yes";
    setInterval(function () { refetch(box); }, POLL_MS);
  }

  function follow(box) {
    if (!window.EventSource) { poll(box); return; }
    var source = new EventSource(box.dataset.liveSrc);
    var eventName = box.dataset.liveEvent;
    if (eventName) {
      source.addEventListener(eventName, function (event) { swap(box.dataset.target, event.data); });
    } else {
      source.addEventListener("change", function (event) { refetch(box, event.data); });
    }
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) { poll(box); }
    };
  }

  function streamLog(pre) {
    if (!window.EventSource) { return; }
    var source = new EventSource(pre.dataset.stream);
    source.addEventListener("line", function (event) {
      pre.appendChild(document.createTextNode("\n" + event.data));
      pre.scrollTop = pre.scrollHeight;
    });
    source.addEventListener("ended", function (event) {
      source.close();
      var ended = JSON.parse(event.data);
      pre.textContent = ended.log.join("\n");
      var detail = document.getElementById("task-detail");
      if (detail) { detail.dataset.state = ended.state; }
    });
  }

  document.querySelectorAll("[data-percent]").forEach(function (bar) {
    bar.style.width = Math.min(100, Number(bar.dataset.percent) || 0) + "%";
  });
  document.querySelectorAll("[data-live-src]").forEach(follow);
  document.querySelectorAll("#task-log[data-stream]").forEach(streamLog);
})();
