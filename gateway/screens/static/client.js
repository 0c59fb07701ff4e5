// The client area's live updates: the state JSON from /live (server-sent events), or from
// /state every 2 s when the stream fails. Every text goes in with textContent: nothing a
// customer or a node wrote is ever read as markup.
(function () {
  "use strict";
  var root = document.getElementById("client");
  if (!root) { return; }
  var base = root.dataset.base;
  var token = root.dataset.token;
  var query = "?token=" + encodeURIComponent(token);
  var polling = null;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      if (name === "text") { node.textContent = attrs[name]; }
      else if (name === "hidden") { node.hidden = !!attrs[name]; }
      else { node.setAttribute(name, attrs[name]); }
    });
    (children || []).forEach(function (child) { if (child) { node.appendChild(child); } });
    return node;
  }

  function byId(id) { return document.getElementById(id); }

  function replace(list, items) {
    while (list.firstChild) { list.removeChild(list.firstChild); }
    items.forEach(function (item) { list.appendChild(item); });
  }

  function form(action, buttonClass, label, writable) {
    return el("form", { method: "post", action: base + action, "class": "action writes", hidden: !writable }, [
      el("input", { type: "hidden", name: "token", value: token }),
      el("button", { type: "submit", "class": buttonClass, text: label })
    ]);
  }

  function textarea(label, name, required) {
    var area = el("textarea", { name: name, rows: "4", cols: "64" });
    area.required = required;
    return el("label", { text: label }, [el("br"), area]);
  }

  function uploadForm(role) {
    return el("form", { method: "post", action: base + "/ssl/" + role + "/custom", "class": "action custom-upload", "data-role": role }, [
      el("input", { type: "hidden", name: "token", value: token }),
      el("h3", { text: role }),
      textarea("Certificate (PEM)", "certificate", true), el("br"),
      textarea("Private key (PEM)", "private_key", true), el("br"),
      textarea("Chain (PEM, optional)", "chain", false), el("br"),
      el("button", { type: "submit", text: "Upload" })
    ]);
  }

  function seconds(ms) { return ms === null || ms === undefined ? "" : (ms / 1000).toFixed(1) + " s"; }

  function render(state) {
    byId("splash").hidden = state.screen !== "splash";
    byId("error-screen").hidden = state.screen !== "error";
    byId("dashboard").hidden = state.screen !== "dashboard";
    var status = byId("status");
    status.textContent = state.status;
    status.className = "badge " + state.status;
    byId("domain").textContent = state.domain || "Your service";

    var bar = byId("progress-bar");
    bar.max = state.progress.total || 1;
    bar.value = state.progress.done;
    bar.dataset.done = state.progress.done;
    bar.dataset.total = state.progress.total;
    byId("progress-text").textContent = state.progress.done + " of " + state.progress.total + " steps done";

    byId("error-text").textContent = state.error ? state.error.text : "";
    byId("error-detail").textContent = state.error ? state.error.detail : "";
    byId("suspended-notice").hidden = state.status !== "suspended";

    replace(byId("timeline"), state.steps.map(function (step) {
      return el("li", { "data-step": step.step, "data-state": step.state }, [
        el("span", { "class": "badge " + step.state, text: step.state }),
        el("span", { "class": "step-name", text: step.label }),
        el("span", { "class": "when", text: seconds(step.duration_ms) })
      ]);
    }));
    replace(byId("activity"), state.activity.map(function (entry) {
      return el("li", { "data-action": entry.action }, [
        el("time", { datetime: entry.at || "", text: entry.when || "" }),
        document.createTextNode(" " + entry.text)
      ]);
    }));

    var usage = state.usage;
    replace(byId("usage"), !usage ? [] : Object.keys(usage.gauges).map(function (name) {
      var gauge = usage.gauges[name];
      var text = gauge.used + " " + gauge.unit + (gauge.limit ? " of " + gauge.limit + " " + gauge.unit : "");
      var meter = gauge.limit ? el("meter", { min: "0", max: String(gauge.limit), value: String(gauge.used) }) : null;
      return el("tr", { "data-metric": name }, [el("th", { text: gauge.label }), el("td", { text: text }), el("td", {}, [meter])]);
    }));
    byId("usage-collected").textContent = usage && usage.collected_at ? usage.collected_at : "not yet";

    replace(byId("ssl"), state.ssl.map(function (cert) {
      var actions = state.writable ? [form("/ssl/" + cert.role + "/issue", "issue-now", "Issue now", true)] : [];
      if (state.writable && cert.mode === "custom") {
        actions.push(form("/ssl/" + cert.role + "/custom/remove", "remove-custom secondary", "Use automatic SSL", true));
      }
      return el("tr", { "data-role": cert.role, "data-state": cert.state }, [
        el("th", { text: cert.role }),
        el("td", {}, [el("span", { "class": "badge " + cert.state, text: cert.state }), document.createTextNode(" " + (cert.mode || ""))]),
        el("td", { text: cert.not_after ? "valid until " + cert.not_after : "" }),
        el("td", {}, actions)
      ]);
    }));
    var forms = byId("custom-forms");
    var shownRoles = Array.prototype.map.call(forms.children, function (f) { return f.dataset.role; });
    var roles = state.ssl.map(function (cert) { return cert.role; });
    if (shownRoles.join(",") !== roles.join(",")) {  // rebuilt only when the roles change
      replace(forms, roles.map(uploadForm));
    }
    Array.prototype.forEach.call(document.querySelectorAll(".writes"), function (node) {
      node.hidden = !state.writable;
    });
    var sync = byId("sync-now");
    if (sync) { sync.disabled = !state.writable; }
  }

  function flash(text, bad) {
    var node = byId("flash");
    node.textContent = text;
    node.className = bad ? "flash error" : "flash";
    node.hidden = false;
  }

  function poll() {
    fetch(base + "/state" + query, { headers: { Accept: "application/json" } })
      .then(function (reply) { return reply.json().then(function (body) { return [reply.ok, body]; }); })
      .then(function (answer) {
        if (answer[0]) { render(answer[1]); } else { flash(answer[1].error, true); stopPolling(); }
      })
      .catch(function () { /* the gateway is away: the next poll tries again */ });
  }

  function stopPolling() { if (polling !== null) { clearInterval(polling); polling = null; } }

  function startPolling() { if (polling === null) { poll(); polling = setInterval(poll, 2000); } }

  if (window.EventSource) {
    var source = new EventSource(base + "/live" + query);
    source.addEventListener("state", function (event) { stopPolling(); render(JSON.parse(event.data)); });
    source.addEventListener("refused", function (event) {
      source.close();
      stopPolling();
      flash(JSON.parse(event.data).error, true);
    });
    source.onerror = function () { startPolling(); };
  } else {
    startPolling();
  }

  document.addEventListener("submit", function (event) {
    var target = event.target;
    if (!target.classList || !target.classList.contains("action")) { return; }
    event.preventDefault();
    var body = new URLSearchParams(new FormData(target));
    fetch(target.getAttribute("action"), {
      method: "POST",
      headers: { Accept: "application/json", "Content-Type": "application/x-www-form-urlencoded" },
      body: body.toString()
    }).then(function (reply) {
      return reply.json().then(function (answer) {
        if (reply.ok) { flash("Done: the page follows what happens."); target.reset(); }
        else { flash(answer.error, true); }
      });
    }).catch(function () { flash("The request did not go through; please try again.", true); });
  });
})();
