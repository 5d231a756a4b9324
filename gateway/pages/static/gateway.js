// gateway pages: the few behaviours that need script. No framework, no build step.
// Every REST call sends the hub XSRF token (X-XSRFToken) that the page carries in <body data-xsrf>.
"use strict";

(function () {
  const body = document.body;
  const xsrf = body.dataset.xsrf || "";
  const apiPrefix = (body.dataset.hubPrefix || "/hub/") + "api/";
  const user = body.dataset.user || "";

  function showError(message) {
    const box = document.getElementById("page-error");
    if (!box) { window.alert(message); return; }
    box.textContent = message;
    box.hidden = false;
    box.focus && box.scrollIntoView({ block: "nearest" });
  }

  async function api(method, url, data) {
    const options = { method, credentials: "same-origin", headers: { "X-XSRFToken": xsrf, Accept: "application/json" } };
    if (data !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(data);
    }
    const response = await fetch(url, options);
    const text = await response.text();
    let parsed = null;
    try { parsed = text ? JSON.parse(text) : null; } catch (e) { parsed = null; }
    if (!response.ok) {
      const message = parsed && parsed.message ? parsed.message : `Request failed (${response.status})`;
      throw new Error(message);
    }
    return parsed;
  }

  function serverApiUrl(name) {
    const base = apiPrefix + "users/" + encodeURIComponent(user);
    return name ? base + "/servers/" + encodeURIComponent(name) : base + "/server";
  }

  // ------------------------------------------------------------ home: stop / delete / new named server
  document.querySelectorAll(".js-stop, .js-delete").forEach((button) => {
    button.addEventListener("click", async () => {
      const name = button.dataset.server || "";
      const remove = button.classList.contains("js-delete");
      if (remove && !window.confirm(`Delete server ${name}? Its settings are removed; files stay.`)) return;
      button.disabled = true;
      try {
        await api("DELETE", serverApiUrl(name), remove ? { remove: true } : undefined);
        window.location.reload();
      } catch (err) {
        button.disabled = false;
        showError(err.message);
      }
    });
  });

  const newServer = document.getElementById("new-server");
  if (newServer) {
    newServer.addEventListener("submit", (event) => {
      event.preventDefault();
      const input = document.getElementById("server-name");
      const name = input.value.trim();
      if (!/^[a-z](?:[a-z0-9]|-(?=[a-z0-9])){0,29}$/.test(name)) {
        input.setAttribute("aria-invalid", "true");
        showError("Server names are 1-30 lower-case letters, digits and single dashes, starting with a letter.");
        input.focus();
        return;
      }
      window.location.href = newServer.dataset.spawnBase + encodeURIComponent(name);
    });
  }

  // ------------------------------------------------------------ token page: request, copy, revoke
  const tokenForm = document.getElementById("token-form");
  if (tokenForm) {
    const tokensUrl = tokenForm.dataset.tokensUrl;
    tokenForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const submit = document.getElementById("token-submit");
      const data = { note: document.getElementById("token-note").value };
      const expires = document.getElementById("token-expires").value;
      if (expires) data.expires_in = parseInt(expires, 10);
      const scopes = document.getElementById("token-scopes").value.split(/[\s,]+/).filter(Boolean);
      if (scopes.length) data.scopes = scopes;
      submit.disabled = true;
      try {
        const model = await api("POST", tokensUrl, data);
        document.getElementById("token-value").textContent = model.token;
        document.getElementById("token-result").hidden = false;
        document.getElementById("page-error").hidden = true;
        addTokenRow(model, data.note, scopes);
        tokenForm.reset();
      } catch (err) {
        showError(err.message);
      } finally {
        submit.disabled = false;
      }
    });
    document.getElementById("token-copy").addEventListener("click", async (event) => {
      const value = document.getElementById("token-value").textContent;
      try {
        await navigator.clipboard.writeText(value);
        event.target.textContent = "Copied";
      } catch (err) {
        window.getSelection().selectAllChildren(document.getElementById("token-value"));
      }
    });
    document.querySelectorAll(".js-revoke").forEach(bindRevoke);

    function addTokenRow(model, note, scopes) {
      const row = document.createElement("tr");
      row.dataset.tokenId = model.id;
      const cells = [note || "\u2014", "just now", "never", model.expires_at ? model.expires_at.replace("T", " ").slice(0, 16) + " UTC" : "never",
        scopes.length ? scopes.join(" ") : "all of yours"];
      const labels = ["Note", "Created", "Last used", "Expires", "Scopes"];
      cells.forEach((text, i) => {
        const cell = document.createElement("td");
        cell.textContent = text;
        cell.dataset.label = labels[i];
        if (i === 4) cell.className = "mono";
        row.appendChild(cell);
      });
      const actions = document.createElement("td");
      actions.className = "actions";
      const button = document.createElement("button");
      button.type = "button";
      button.className = "danger small js-revoke";
      button.dataset.tokenId = model.id;
      button.textContent = "Revoke";
      actions.appendChild(button);
      row.appendChild(actions);
      document.querySelector("#token-table tbody").prepend(row);
      document.getElementById("no-tokens").hidden = true;
      bindRevoke(button);
    }

    function bindRevoke(button) {
      button.addEventListener("click", async () => {
        if (!window.confirm("Revoke this token? Programs using it stop working at once.")) return;
        button.disabled = true;
        try {
          await api("DELETE", tokensUrl + "/" + encodeURIComponent(button.dataset.tokenId));
          button.closest("tr").remove();
          if (!document.querySelector("#token-table tbody tr")) document.getElementById("no-tokens").hidden = false;
        } catch (err) {
          button.disabled = false;
          showError(err.message);
        }
      });
    }
  }

  // ------------------------------------------------------------ admin: confirm destructive forms
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });

  // ------------------------------------------------------------ spawn progress (EventSource)
  const progress = document.getElementById("progress");
  if (progress) {
    const bar = document.getElementById("progress-bar");
    const status = document.getElementById("progress-message");
    const log = document.getElementById("progress-log");
    const source = new EventSource(progress.dataset.progressUrl + "?_xsrf=" + encodeURIComponent(xsrf));
    let finished = false;
    source.onmessage = (event) => {
      let data;
      try { data = JSON.parse(event.data); } catch (e) { return; }
      if (typeof data.progress === "number") {
        bar.style.width = Math.max(0, Math.min(100, data.progress)) + "%";
        progress.setAttribute("aria-valuenow", String(data.progress));
      }
      if (data.message) {
        status.textContent = data.message;
        const item = document.createElement("li");
        item.textContent = data.message;
        log.appendChild(item);
      }
      if (data.ready) {
        finished = true;
        source.close();
        window.location.href = progress.dataset.next || data.url;
      } else if (data.failed) {
        finished = true;
        source.close();
        bar.classList.add("failed");
        document.getElementById("progress-failed").hidden = false;
      }
    };
    source.onerror = () => {
      if (finished) return;
      source.close();
      // The stream ended without a ready or failed event: offer to look at the server's state again.
      document.getElementById("progress-lost").hidden = false;
    };
  }
})();
